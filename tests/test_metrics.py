"""Distances between feature sets (Frechet, KID, PRDC) against independent implementations, and
the bootstrap CI over generated samples."""
from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest
from scipy import linalg

import unetlab.metrics as metrics
from unetlab.errors import UnetlabError
from unetlab.metrics.bootstrap import KIDParts, interval, score_features


def feature_sets(seed=0, n_real=300, n_fake=200, d=16, shift=0.3):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    real = rng.normal(size=(n_real, d)) @ mix
    fake = rng.normal(size=(n_fake, d)) @ (mix * 1.2) + shift
    return real, fake


def test_frechet_distance_matches_a_direct_sqrtm_computation():
    real, fake = feature_sets()
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    direct = np.sum((mu_r - mu_f) ** 2) + np.trace(s_r + s_f - 2 * linalg.sqrtm(s_r @ s_f).real)
    assert metrics.frechet_distance(real, fake) == pytest.approx(direct, rel=1e-8)
    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)


def test_kid_matches_a_naive_double_loop_over_pairs():
    real, fake = feature_sets(n_real=40, n_fake=30, d=5)
    d = real.shape[1]

    def k(x, y):
        return (float(np.dot(x, y)) / d + 1.0) ** 3

    def naive_mmd2(x, y):
        m = len(x)
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        return xx + yy - 2 * xy

    # one subset as large as the smaller set: drawn the way kid() draws, then checked pair by pair
    rng = np.random.default_rng(3)
    values = []
    for _ in range(4):
        x = real[rng.choice(len(real), 30, replace=False)]
        y = fake[rng.choice(len(fake), 30, replace=False)]
        values.append(naive_mmd2(x, y))
    got = metrics.kid(real, fake, subsets=4, subset_size=1000, seed=3)
    assert got.mean == pytest.approx(np.mean(values), rel=1e-10)
    assert got.std == pytest.approx(np.std(values), rel=1e-8)
    mean, std = got  # unpacks as (mean, std)
    assert std > 0 and mean > 0


def test_prdc_matches_the_prdc_package():
    from prdc import compute_prdc

    for seed, k in ((0, 5), (1, 3)):
        real, fake = feature_sets(seed, n_real=150, n_fake=120, d=8)
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints the set sizes
            expected = compute_prdc(real, fake, k)
        got = metrics.prdc(real, fake, k=k)
        assert set(got) == {"precision", "recall", "density", "coverage"}
        for name in got:
            assert got[name] == pytest.approx(float(expected[name]), abs=1e-12), name


def test_metrics_refuse_bad_feature_arrays_in_one_line():
    real, fake = feature_sets()
    for call, text in ((lambda: metrics.frechet_distance(real[:1], fake), "at least 2"),
                       (lambda: metrics.kid(real, fake[:, :, None]), "(N, D) array"),
                       (lambda: metrics.frechet_distance(real, fake[:, :3]), "feature sizes differ"),
                       (lambda: metrics.prdc(real, fake[:5]), "k=5 neighbours")):
        with pytest.raises(UnetlabError, match=text.replace("(", r"\(").replace(")", r"\)")) as exc:
            call()
        assert "\n" not in str(exc.value)


def test_kid_resample_estimator_is_the_u_statistic_over_distinct_vectors():
    real, fake = feature_sets(n_real=50, n_fake=25, d=4)
    parts = KIDParts(real, fake)
    kernel = metrics.distances.polynomial_kernel
    index = np.array([0, 0, 3, 5, 5, 5, 7])
    y = fake[index]
    pairs = [(i, j) for i, j in itertools.product(range(len(index)), repeat=2) if index[i] != index[j]]
    k_yy = kernel(y, y)
    k_xx = kernel(real, real)
    expected = ((k_xx.sum() - np.trace(k_xx)) / (50 * 49) + np.mean([k_yy[i, j] for i, j in pairs])
                - 2 * kernel(real, y).mean())
    assert parts.mmd2(index) == pytest.approx(expected, rel=1e-10)


def test_score_record_values_are_the_public_functions_values():
    real, fake = feature_sets(n_real=400, n_fake=100)
    record = score_features(real, fake, bootstrap=50, seed=2)
    assert record["value"] == pytest.approx(metrics.frechet_distance(real, fake), rel=1e-10)
    assert record["metrics"]["kid"]["value"] == metrics.kid(real, fake, seed=2).mean
    # PRDC against as many real vectors as there are fakes (a seeded subset)
    sub = real[np.sort(np.random.default_rng([2, 9]).choice(400, 100, replace=False))]
    for name, value in metrics.prdc(sub, fake).items():
        assert record["metrics"][name]["value"] == value
    assert record["bootstrap"] == 50
    assert score_features(real, fake, bootstrap=50, seed=2) == record  # seeded: the same record again


def test_bootstrap_ci_contains_the_value_and_shrinks_with_more_samples():
    widths = []
    for n in (80, 640):
        real, fake = feature_sets(seed=4, n_real=1000, n_fake=n, d=8)
        record = score_features(real, fake, bootstrap=100, seed=0)
        assert record["ci_low"] <= record["value"] <= record["ci_high"] and record["se"] > 0
        for name, m in record["metrics"].items():
            assert m["ci_low"] <= m["value"] <= m["ci_high"], name
        widths.append((record["ci_high"] - record["ci_low"], record["se"], record["metrics"]["kid"]["se"]))
    (w_small, se_small, kid_small), (w_large, se_large, kid_large) = widths
    assert w_large < w_small / 2 and se_large < se_small / 2 and kid_large < kid_small / 2


def test_no_bootstrap_gives_no_interval_and_stats_alone_give_fid_only():
    real, fake = feature_sets()
    record = score_features(real, fake, bootstrap=0)
    assert record["se"] is None and record["ci_low"] is None and record["bootstrap"] == 0
    alone = score_features(None, fake, bootstrap=10, real_stats=(real.mean(0), np.cov(real, rowvar=False)))
    assert alone["metrics"] == {} and alone["value"] == pytest.approx(record["value"])
    assert interval([1.0, 2.0, 3.0], 10.0, (0.0, 10.5))["ci_high"] == 10.5  # clipped to the score's range
