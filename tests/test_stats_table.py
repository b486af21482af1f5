"""``unetlab table --group`` intervals and ``--vs`` comparisons on synthetic run folders, recomputed
with scipy; the HTML report's statistics sections and the seed-band curves."""
from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unetlab.run import rundir
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.reports.baseline import compare_to_baseline
from unetlab.stats.inference import seeds_needed
from unetlab.reports.table import load_table

from study_runs import fake_run

SEEDS = range(10)


def _with_se(run_dir, se):
    summary = rundir.read_json(run_dir / rundir.SUMMARY)
    summary["fid"]["se"] = se
    rundir.write_json(run_dir / rundir.SUMMARY, summary)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """10 seeds of a baseline ``base``, an A/A twin ``same``, ``fast`` (lower loss and score, far
    fewer img/s), and ``lone`` (3 seeds that share none with the others)."""
    root = tmp_path_factory.mktemp("stats") / "abl"
    rng = np.random.default_rng(0)
    for seed in SEEDS:
        seed_effect = rng.normal(0, 0.01)
        for variant, shift in (("base", 0.0), ("same", 0.0), ("fast", -0.05)):
            run = fake_run(root, variant, "torch", seed=seed, loss=0.2 + seed_effect + shift + rng.normal(0, 0.003),
                           img_s=100.0 * (1 + 4 * shift) + rng.normal(0, 0.5),
                           fid=0.1 + seed_effect + shift + rng.normal(0, 0.003))
            _with_se(run, 0.002)
    for seed in (100, 101, 102):
        fake_run(root, "lone", "torch", seed=seed, loss=0.3 + rng.normal(0, 0.01), fid=0.2 + rng.normal(0, 0.01))
    return root


def _csv(capsys, *args) -> pd.DataFrame:
    assert main(["table", *map(str, args), "--format", "csv", "--no-plots"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=True)


def test_vs_calls_an_aa_pair_undecided_and_a_large_effect_by_its_sign(ablation, capsys):
    out = _csv(capsys, ablation, "--vs", "base").set_index(["variant", "metric"])
    for metric in ("final loss", "FD-small", "train img/s"):
        assert out.loc[("same", metric), "verdict"] == "undecided"
    assert out.loc[("fast", "final loss"), "verdict"] == "better" and out.loc[("fast", "final loss"), "diff"] < 0
    assert out.loc[("fast", "FD-small"), "verdict"] == "better"
    assert out.loc[("fast", "train img/s"), "verdict"] == "worse" and out.loc[("fast", "train img/s"), "diff"] < 0
    assert set(out["test"]) == {"exact sign-flip", "Welch t"}


def test_vs_csv_numbers_recomputed_with_scipy(ablation, capsys):
    out = _csv(capsys, ablation, "--vs", "base", "--metric", "final loss", "--metric", "fd-small")
    runs = load_table(ablation)
    for row in out.to_dict("records"):
        column = "FID" if row["metric"] == "FD-small" else row["metric"]
        values = {v: runs[runs["variant"] == v].set_index("seed")[column] for v in ("base", row["variant"])}
        if row["test"] == "Welch t":
            ref = stats.ttest_ind(values[row["variant"]], values["base"], equal_var=False)
            assert row["p"] == pytest.approx(ref.pvalue, abs=1e-9)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval()), abs=1e-9)
            assert "no seed partners" in row["note"] and math.isnan(row["seeds needed"])
            continue
        d = (values[row["variant"]] - values["base"]).dropna().to_numpy()
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert row["n"] == len(d) == 10
        assert (row["diff"], row["ci_low"], row["ci_high"]) == pytest.approx(
            (d.mean(), d.mean() - half, d.mean() + half), abs=1e-9)
        ref = stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                     n_resamples=10 ** 6)
        assert row["p"] == pytest.approx(ref.pvalue, abs=1e-9)
        floor = next(k for k in range(1, 64) if len(out) * 2 / 2 ** k < 0.05)  # 6 rows: 8 pairs
        assert row["seeds needed"] == max(seeds_needed(d.mean(), d.std(ddof=1)), floor)
    # Holm over the rows shown, by a plain loop
    m = len(out)
    order = out["p"].sort_values(kind="stable").index
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * out.loc[i, "p"]))
        assert out.loc[i, "p holm"] == pytest.approx(running, abs=1e-12)


def test_evaluation_noise_against_seed_noise(ablation):
    out = compare_to_baseline(load_table(ablation), "base", ["FID", "final loss"])
    score = out[(out["variant"] == "fast") & (out["metric"] == "FID")].iloc[0]
    assert score["eval sd"] == pytest.approx(math.sqrt(2 * 0.002 ** 2))
    assert score["seed sd"] == pytest.approx(math.sqrt(max(0.0, score["sd"] ** 2 - score["eval sd"] ** 2)))
    assert score["noise"] == ("seeds" if score["seed sd"] >= score["eval sd"] else "evaluation")
    loss = out[(out["variant"] == "fast") & (out["metric"] == "final loss")].iloc[0]
    assert loss["noise"] == "" and math.isnan(loss["eval sd"])  # no se for losses: unknown
    lone = out[(out["variant"] == "lone") & (out["metric"] == "FID")].iloc[0]
    assert lone["noise"] == ""  # its runs have no se
    df = load_table(ablation)
    df.loc[(df["variant"] == "fast") & (df["seed"] == 3), "FID se"] = math.nan  # one run without se
    again = compare_to_baseline(df, "base", ["FID"])
    assert again[again["variant"] == "fast"].iloc[0]["noise"] == ""
    assert again[again["variant"] == "same"].iloc[0]["noise"] in ("seeds", "evaluation")


def test_three_seeds_say_the_exact_test_cannot_decide(ablation, capsys):
    assert main(["table", str(ablation), "--vs", "base", "--filter", "seed=1", "--no-plots"]) == 0
    # one seed: nothing to test
    assert "too few runs" in capsys.readouterr().out
    df = load_table(ablation)
    out = compare_to_baseline(df[df["seed"].isin([0, 1, 2])], "base", ["final loss"])
    fast = out[out["variant"] == "fast"].iloc[0]
    assert fast["p"] == 0.25 and fast["verdict"] == "undecided"
    assert "n=3: the exact test cannot decide below 7 seeds among 2 comparisons" in fast["note"]


def test_unknown_baseline_and_bad_alpha_are_one_line_errors(ablation, capsys):
    assert main(["table", str(ablation), "--vs", "nope", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "unetlab table: error: --vs 'nope': no such variant (variants: base, fast, lone, same)"
    assert main(["table", str(ablation), "--vs", "base", "--alpha", "2", "--no-plots"]) == 2
    assert "--alpha 2.0: must lie between 0 and 1" in capsys.readouterr().err
    with pytest.raises(UnetlabError, match="unknown column 'nope'"):
        compare_to_baseline(load_table(ablation), "base", ["nope"])


def test_group_csv_and_json_hold_separate_numbers(ablation, capsys):
    out = _csv(capsys, ablation, "--group").set_index("variant")
    runs = load_table(ablation)
    for variant in ("base", "lone"):
        loss = runs[runs["variant"] == variant]["final loss"].to_numpy()
        low, high = stats.t.interval(0.95, len(loss) - 1, loc=loss.mean(), scale=stats.sem(loss))
        row = out.loc[variant]
        assert (row["final loss mean"], row["final loss ci_low"], row["final loss ci_high"]) == pytest.approx(
            (loss.mean(), low, high), abs=1e-9)
        assert row["final loss n"] == len(loss)
    assert {"FD-small mean", "FD-small se mean", "train img/s ci_high"} <= set(out.columns)
    assert main(["table", str(ablation), "--group", "--format", "json", "--no-plots"]) == 0
    rows = json.loads(capsys.readouterr().out)
    base = next(r for r in rows if r["variant"] == "base")
    assert base["final loss n"] == 10 and isinstance(base["final loss ci_low"], float)
    assert main(["table", str(ablation), "--group", "--no-plots", "--sort", "final loss"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.search(r"0\.1\d{3} \[0\.1\d{3}, 0\.1\d{3}\] n=10", lines[2]) and lines[2].startswith("fast")


@pytest.mark.slow  # plots of 33 runs
def test_vs_terminal_and_forest_plot(ablation, tmp_path, capsys):
    assert main(["table", str(ablation), "--vs", "base", "--group", "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "n=10" in out  # the grouped table first
    assert "exact sign-flip" in out and "better" in out and "worse" in out and "Welch t" in out
    forest = tmp_path / "abl-vs-base.png"
    assert f"plot: {forest}" in out and forest.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "abl-loss-seeds.png").is_file()


@pytest.mark.slow  # plots and sample grids of 33 runs
def test_html_report_with_group_and_vs(ablation, tmp_path, capsys):
    page = tmp_path / "r.html"
    assert main(["table", str(ablation), "--group", "--vs", "base", "--no-plots", "--format", "csv",
                 "--html", str(page)]) == 0
    text = page.read_text()
    assert "Results: mean [95% CI] n over seeds" in text and "Against base: paired by seed" in text
    assert re.search(r"<td>0\.\d{4} \[0\.\d{4}, 0\.\d{4}\] n=10</td>", text)
    assert 'alt="forest plot against base"' in text and "exact sign-flip" in text
    assert "abl-loss-seeds" in text  # the seed-band curves


def test_seed_band_is_the_t_interval_at_shared_steps():
    from unetlab.reports.plots_seeds import seed_band

    curves = [{1: 1.0, 2: 2.0, 3: 5.0}, {1: 3.0, 2: 4.0}, {1: 2.0, 2: 3.0, 4: 0.0}]
    steps, mean, low, high = seed_band(curves)
    assert list(steps) == [1, 2] and list(mean) == [2.0, 3.0]
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert list(high - mean) == pytest.approx([half, half]) and list(mean - low) == pytest.approx([half, half])
    steps, mean, low, high = seed_band(curves[:1])
    assert list(low) == list(mean) == list(high) == [1.0, 2.0, 5.0]


def test_each_framework_and_grid_point_is_compared_on_its_own(tmp_path):
    root = tmp_path / "abl"
    for seed in range(6):
        for framework, offset in (("torch", 0.0), ("jittor", 1.0)):
            for variant, shift in (("x", 0.0), ("y", 0.01 * (seed + 1))):
                for grid in ("lr=1", "lr=2"):
                    run = fake_run(root / grid, variant, framework, seed=seed, loss=0.1 + offset + shift)
                    config = rundir.read_json(run / rundir.CONFIG)
                    config["run"].update(ablation="abl", grid_label=grid)
                    rundir.write_json(run / rundir.CONFIG, config)
    out = compare_to_baseline(load_table(root), "x", ["final loss"])
    assert sorted(zip(out["framework"], out["grid"])) == sorted(
        (f, g) for f in ("torch", "jittor") for g in ("lr=1", "lr=2"))
    # the frameworks' offset of 1.0 cancels: each compares y with x of its own framework
    assert list(out["diff"]) == pytest.approx([0.035] * 4)
    assert list(out["p"]) == pytest.approx([2 / 2 ** 6] * 4) and set(out["verdict"]) == {"undecided"}
    assert set(out["note"]) == {"n=6: the exact test cannot decide below 8 seeds among 4 comparisons"}
