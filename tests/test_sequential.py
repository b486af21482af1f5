"""The group-sequential stopping rule on synthetic differences (fast: numpy only)."""
import numpy as np
import pytest
from scipy import stats

from unetlab.stats.sequential import (decide, look_levels, seeds_needed, sign_flip_pvalues, simulate,
                                      spent_alpha, usable_size)

ALPHA, MARGIN = 0.05, 0.065


def test_sign_flip_pvalue_is_the_exact_permutation_test():
    rng = np.random.default_rng(1)
    for n in (2, 3, 6, 9):
        d = rng.standard_normal(n) + 0.4
        reference = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                           alternative="two-sided").pvalue
        assert sign_flip_pvalues(d) == pytest.approx(reference)
    assert sign_flip_pvalues([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)  # the smallest p at 3 seeds
    assert sign_flip_pvalues(np.ones(6)) == pytest.approx(2 / 64)


def test_the_looks_spend_at_most_alpha_and_carry_what_they_cannot_use():
    for spending in ("pocock", "obrien-fleming"):
        for lo, hi in ((2, 10), (3, 6), (4, 20)):
            levels = look_levels(lo, hi, ALPHA, spending)
            assert list(levels) == list(range(lo, hi + 1))
            assert sum(usable_size(v, n) for n, v in levels.items()) <= ALPHA + 1e-12
            assert spent_alpha(1.0, ALPHA, spending) == pytest.approx(ALPHA)
    levels = look_levels(3, 10, ALPHA, "pocock")
    assert usable_size(levels[5], 5) == 0 and levels[6] > levels[5]  # below 6 seeds nothing can be rejected


def test_a_a_false_positive_rate_stays_at_alpha_and_naive_repeated_testing_exceeds_it():
    for spending in ("pocock", "obrien-fleming"):
        result = simulate(0.0, draws=2000, min_n=2, max_n=12, alpha=ALPHA, spending=spending, seed=7)
        assert result["decided"] <= MARGIN
    naive = simulate(0.0, draws=2000, min_n=2, max_n=12, alpha=ALPHA, spending=None, seed=7)
    assert naive["decided"] > 0.08  # why the correction is needed: about twice alpha


def test_a_large_effect_is_decided_early_with_the_right_sign():
    worse = simulate(2.0, draws=1000, min_n=3, max_n=12, seed=3)
    better = simulate(-2.0, draws=1000, min_n=3, max_n=12, seed=4)
    assert worse["worse"] > 0.9 and worse["better"] == 0 and worse["mean_seeds"] < 9
    assert better["better"] > 0.9 and better["worse"] == 0


def test_decide_reports_each_look():
    look = decide([-1.0, -1.2, -0.9, -1.1, -1.05, -0.95], 3, 10)
    assert (look.verdict, look.final, look.n) == ("better", True, 6)
    assert look.p == pytest.approx(2 / 64) and look.p <= look.level
    early = decide([-1.0, -1.2, -0.9], 3, 10)
    assert (early.verdict, early.final) == ("undecided", False)
    rng = np.random.default_rng(0)
    d = 0.1 + rng.standard_normal(10)
    last = decide(d, 3, 10)
    assert (last.verdict, last.final) == ("undecided", True)
    assert last.seeds_needed == seeds_needed(d) > 10
    with pytest.raises(ValueError):
        decide([1.0, 2.0], 3, 10)


def test_seeds_needed_is_the_normal_approximation():
    d = np.array([0.5, 1.5, 0.2, 1.8])
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert seeds_needed(d) == int(np.ceil((z * d.std(ddof=1) / d.mean()) ** 2))
    assert seeds_needed([1.0, 1.0]) is None and seeds_needed([0.3]) is None
