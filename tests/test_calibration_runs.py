"""Calibration on real training runs, read through ``table --vs``: an A/A ablation (two identical
variants) comes out undecided -- paired by common random numbers, and with the twin's randomness
drawn apart (``train.crn: false``) -- and a large known effect (10 against 60 training steps) comes
out ``better`` with the right sign."""
from __future__ import annotations

import pytest

from conftest import tiny_digits_spec
from local_runs import run_here
from unetlab.reports.baseline import compare_to_baseline
from unetlab.reports.table import load_table
from unetlab.sweeps.ablation import parse_ablation

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

#: 7 seeds: with Holm over the 3 comparisons the exact test can reach 5 % from 7 pairs on
SEEDS = list(range(7))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration") / "cal"
    spec = tiny_digits_spec(steps=10)
    spec["eval"] = {"fid_samples": 0}
    ablation = parse_ablation({
        "name": "cal", "base": spec, "seeds": SEEDS,
        "variants": {"base": {}, "twin": {}, "twin_unpaired": {"train.crn": False}, "long": {"train.steps": 60}},
    }, "cal")
    run_here(ablation, root)
    table = load_table(root)
    assert len(table) == 4 * len(SEEDS) and set(table["status"]) == {"done"}
    return compare_to_baseline(table, "base", ["final loss"]).set_index("variant")


def test_identical_variants_paired_by_seed_differ_by_nothing_and_stay_undecided(comparison):
    twin = comparison.loc["twin"]
    assert twin["n"] == len(SEEDS) and twin["diff"] == 0.0
    assert twin["p"] == 1.0 and twin["verdict"] == "undecided"


def test_identical_variants_with_their_own_randomness_stay_undecided(comparison):
    twin = comparison.loc["twin_unpaired"]
    assert twin["n"] == len(SEEDS) and twin["diff"] != 0.0  # the streams really were drawn apart
    assert twin["ci_low"] < 0 < twin["ci_high"] and twin["verdict"] == "undecided"


def test_six_times_the_training_comes_out_better_with_its_sign(comparison):
    long = comparison.loc["long"]
    assert long["diff"] < 0 and long["ci_high"] < 0  # a lower final loss, the whole interval below 0
    assert long["test"] == "exact sign-flip" and long["p"] == 2 / 2 ** len(SEEDS)
    assert long["p holm"] <= 0.05 and long["verdict"] == "better"
