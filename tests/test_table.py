"""The results table over done, partial and failed runs, its options, formats and plots."""
from __future__ import annotations

import io

import pandas as pd
import pytest

from unetlab.run import jsonfiles, rundir
from unetlab.sweeps.ablation import parse_ablation
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.reports.table import format_table, load_table
from unetlab.run.trainer import train_run
from unetlab.run.worker import work

from conftest import tiny_digits_spec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An ablation folder with two seeds of ``a``, one ``b``, a partial ``p`` and a failed ``bad``."""
    root = tmp_path_factory.mktemp("table") / "abl"
    ablation = parse_ablation({
        "name": "abl", "base": tiny_digits_spec(10), "seeds": [0, 1],
        "variants": {"a": {}, "b": {"train.lr": 2e-3}, "p": {"train.steps": 20},
                     "bad": {"data": {"dataset": "folder", "root": str(root / "missing")}}}})
    for run in ablation.runs:
        if run.seed == 1 and run.variant != "a":
            continue
        run_dir = root / run.name
        jsonfiles.write_json(run_dir / rundir.CONFIG, run.config())
        if run.variant == "p":  # stopped half-way, as a killed worker leaves it
            train_run(run.spec, run_dir, run.framework, seed=run.seed, progress=False,
                      identity=run.identity(), stop_after=10)
        elif run.variant == "bad":
            with pytest.raises(UnetlabError):
                work(run_dir)
        else:
            assert work(run_dir)["status"] == "done"
    return root


def test_one_row_per_run_over_done_partial_and_failed_runs(runs):
    df = load_table(runs)
    assert len(df) == 5
    rows = {(r["variant"], r["seed"]): r for r in df.to_dict("records")}
    done = rows[("a", 0)]
    assert done["status"] == "done" and done["steps"] == 10 and done["ablation"] == "abl"
    assert done["params"] > 0 and done["GFLOPs"] > 0 and done["final loss"] > 0
    assert done["best loss"] <= done["final loss"] and done["train img/s"] > 0 and done["sample img/s"] > 0
    partial = rows[("p", 0)]
    assert partial["status"] == "partial 10/20" and partial["steps"] == 10
    assert partial["final loss"] > 0  # read from metrics.jsonl: there is no summary figure yet
    failed = rows[("bad", 0)]
    assert failed["status"].startswith("failed: UnetlabError: no images")
    assert pd.isna(failed["final loss"])


def test_sort_filter_and_group(runs):
    df = load_table(runs, sort="final loss")
    losses = list(df["final loss"])
    assert losses[:4] == sorted(losses[:4]) and pd.isna(losses[4])
    assert set(load_table(runs, ["variant=a"])["seed"]) == {0, 1}
    assert list(load_table(runs, ["variant=a", "seed=1"])["variant"]) == ["a"]
    assert list(load_table(runs, ["status=failed"])["variant"]) == ["bad"]
    assert list(load_table(runs, ["train.lr=0.002"])["variant"]) == ["b"]  # a resolved spec value
    grouped = load_table(runs, group=True, sort="variant")
    a = grouped[grouped["variant"] == "a"].iloc[0]
    assert a["seeds"] == 2 and a["final loss n"] == 2 and a["status"] == "2 done"
    assert a["final loss ci_low"] < a["final loss mean"] < a["final loss ci_high"]
    assert "[" in format_table(grouped) and "n=2" in format_table(grouped)
    with pytest.raises(UnetlabError, match="unknown column 'nope'"):
        load_table(runs, sort="nope")
    with pytest.raises(UnetlabError, match="expected KEY=VALUE"):
        load_table(runs, ["variant"])


def test_formats(runs):
    df = load_table(runs)
    terminal = format_table(df)
    assert "partial 10/20" in terminal and "failed: UnetlabError" in terminal
    assert "ablation" not in terminal.splitlines()[0]  # one ablation: no column for it
    assert format_table(df, "markdown").splitlines()[1].startswith("|--")
    csv = pd.read_csv(io.StringIO(format_table(df, "csv")))
    assert len(csv) == 5 and {"variant", "final loss", "status"} <= set(csv.columns)
    assert "\\begin{tabular}" in format_table(df, "latex")


def test_table_command_prints_and_plots(runs, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["table", str(runs), "--plots", str(plots), "--sort", "best_loss"]) == 0
    out = capsys.readouterr().out
    assert "partial 10/20" in out and f"plots: {plots}" in out
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["abl-frameworks.png", "abl-loss-steps.png", "abl-loss-time.png"]
    assert all((plots / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert main(["table", str(runs), "--format", "csv", "--group", "--no-plots"]) == 0
    assert capsys.readouterr().out.startswith("ablation,variant,grid,framework,seeds,")


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"unetlab table: error: {tmp_path}: no runs here")
    assert main(["table", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_torch_vs_jittor_overlay(runs, tmp_path):
    """Curves of the same variant in both frameworks get an overlay plot."""
    import shutil

    from unetlab.reports.plots import write_plots

    src = runs / "a-torch-s0"
    dst = tmp_path / "abl" / "a-jittor-s0"
    shutil.copytree(src, dst)
    config = jsonfiles.read_json(dst / rundir.CONFIG)
    config["run"]["framework"] = "jittor"
    jsonfiles.write_json(dst / rundir.CONFIG, config)
    written = write_plots([src, dst], tmp_path / "plots")
    assert [p.name for p in written] == ["abl-loss-steps.png", "abl-loss-time.png", "abl-torch-vs-jittor.png"]


def test_table_of_a_bench_results_file(tmp_path, capsys):
    """``unetlab table FILE.json`` shows benchmark rows (as ``unetlab bench --out`` writes them),
    filtered and sorted like run tables."""
    import json

    from unetlab.bench import BenchCase, measure
    from conftest import TINY_MODEL

    row = measure(dict(TINY_MODEL), BenchCase("torch", "fp32", 2), steps=1, warmup=1)
    other = dict(row, framework="jittor", train_img_s=row["train_img_s"] / 2)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"meta": {"card": "cpu"}, "rows": [row, other]}))
    assert main(["table", str(path), "--filter", "framework=jittor", "--format", "csv"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split(",")[:4] == ["framework", "precision", "batch", "compile"]
    assert len(out) == 2 and out[1].startswith("jittor,fp32,2,off")
    assert float(out[1].split(",")[out[0].split(",").index("train img/s")]) == pytest.approx(other["train_img_s"])
    path.write_text("[]")
    assert main(["table", str(path)]) == 2
    assert "not a benchmark results file" in capsys.readouterr().err


def test_score_columns_hold_the_ci_and_extra_metrics_or_stay_empty(tmp_path):
    from study_runs import fake_run

    root = tmp_path / "abl"
    scored = fake_run(root, "a", "torch", fid=2.0)
    summary = rundir.read_json(scored / rundir.SUMMARY)
    entry = {"value": 0.5, "se": 0.05, "ci_low": 0.4, "ci_high": 0.6}
    summary["fid"].update({"name": "FD-digits", "mode": "digits-net", "se": 0.2, "ci_low": 1.6, "ci_high": 2.4,
                           "bootstrap": 200, "metrics": {"kid": {**entry, "value": 0.01, "se": 0.002},
                                                         **{m: entry for m in ("precision", "recall", "density",
                                                                               "coverage")}}})
    rundir.write_json(scored / rundir.SUMMARY, summary)
    fake_run(root, "b", "torch", fid=3.0)  # an older record: no CI, no extra metrics
    df = load_table(root).set_index("variant")
    assert df.loc["a", ["FID", "FID se", "KID", "KID se", "precision", "coverage"]].tolist() == [
        2.0, 0.2, 0.01, 0.002, 0.5, 0.5]
    assert df.loc["b", ["FID se", "KID", "recall", "density"]].isna().all()
    text = format_table(load_table(root, sort="kid"))
    assert "FD-digits/FD-small se" in text.splitlines()[0]  # the score column and its SE, by their real name
    from unetlab.stats.inference import lower_is_better

    assert lower_is_better("FD-digits") and lower_is_better("FD-shapes") and not lower_is_better("coverage")
