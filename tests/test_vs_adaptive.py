"""``table --vs`` on an ablation decided by adaptive seeds: the stopping rule's verdict stands on the
metric it decided on (a fixed-sample test after an adaptive stop would not keep its error rate)."""
from __future__ import annotations

import io
import json
import math

import pandas as pd

from unetlab.cli import main
from unetlab.reports.baseline import SEQUENTIAL
from unetlab.run.layout import ADAPTIVE_AUDIT

from study_runs import fake_run


def _ablation(root):
    for seed in range(6):
        fake_run(root, "base", "torch", seed=seed, loss=0.2 + 0.01 * seed, fid=0.1 + 0.01 * seed)
        fake_run(root, "other", "torch", seed=seed, loss=0.2 + 0.01 * seed + 0.001 * (-1) ** seed,
                 fid=0.05 + 0.01 * seed)
    return root


def _vs(capsys, root, *metrics) -> pd.DataFrame:
    args = ["table", str(root), "--vs", "base", "--format", "csv", "--no-plots"]
    for metric in metrics:
        args += ["--metric", metric]
    assert main(args) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("metric")


def test_the_stopping_rules_verdict_replaces_the_fixed_test_on_its_metric(tmp_path, capsys):
    root = _ablation(tmp_path / "abl")
    fixed = _vs(capsys, root, "fd-small")
    assert fixed.loc["FD-small", "verdict"] == "better"  # 6 pairs, all lower: exact p = 2/64
    assert fixed.loc["FD-small", "p"] == 2 / 64

    looks = [{"round": r, "framework": "torch", "grid": "", "variant": "other", "baseline": "base",
              "metric": "score", "n": n, "mean_diff": -0.05, "sd_diff": 0.0, "p": 2 / 2 ** n, "level": 0.02,
              "verdict": "undecided", "final": n == 6, "seeds_needed": 9 if n == 6 else None}
             for r, n in enumerate(range(3, 7), start=1)]
    (root / ADAPTIVE_AUDIT).write_text("".join(json.dumps(look) + "\n" for look in looks))
    out = _vs(capsys, root, "fd-small", "final loss")
    row = out.loc["FD-small"]
    assert row["test"] == SEQUENTIAL and row["verdict"] == "undecided" and row["p"] == 2 / 64
    assert math.isnan(row["p holm"]) and row["seeds needed"] == 9
    assert "adaptive seeds: undecided at the last seed (n=6)" in row["note"]
    # the other metric keeps the fixed test, adjusted over the fixed rows alone
    assert out.loc["final loss", "test"] == "exact sign-flip"
    assert out.loc["final loss", "p holm"] == out.loc["final loss", "p"]


def test_a_comparison_still_running_says_so(tmp_path, capsys):
    root = _ablation(tmp_path / "abl")
    look = {"round": 1, "framework": "torch", "grid": "", "variant": "other", "baseline": "base",
            "metric": "final_loss", "n": 3, "mean_diff": 0.0, "sd_diff": 0.001, "p": 1.0, "level": 0.0,
            "verdict": "undecided", "final": False, "seeds_needed": None}
    (root / ADAPTIVE_AUDIT).write_text(json.dumps(look) + "\n")
    row = _vs(capsys, root, "final loss").loc["final loss"]
    assert row["test"] == SEQUENTIAL and row["verdict"] == "undecided"
    assert "still running (n=3)" in row["note"]
