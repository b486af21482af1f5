"""Adaptive seeds: the ablation keys, the rounds, their audit trail and resuming."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unetlab.run import rundir
from unetlab.sweeps.ablation import parse_ablation
from unetlab.sweeps.adaptive import AUDIT, comparisons, first_round, read_audit, run_adaptive
from unetlab.errors import UnetlabError
from unetlab.sweeps.seed_plan import AdaptiveSeeds

from conftest import tiny_digits_spec

ADAPTIVE = {"min": 3, "max": 8, "until": "decided"}


def ablation(**top) -> dict:
    raw = {"name": "t", "base": tiny_digits_spec(),
           "variants": {"base": {}, "worse": {"train.lr": 2e-3}, "same": {"train.lr": 1e-3}},
           "seeds": dict(ADAPTIVE)}
    raw.update(top)
    return raw


def error(raw) -> str:
    with pytest.raises(UnetlabError) as exc:
        parse_ablation(raw)
    assert "\n" not in str(exc.value)
    return str(exc.value)


# -- the ablation keys ------------------------------------------------------------------------

def test_adaptive_seeds_expand_to_max_and_default_to_the_first_variant_and_final_loss():
    a = parse_ablation(ablation())
    assert a.adaptive == {"torch": AdaptiveSeeds(3, 8)}
    assert (a.baseline, a.decide_on, len(a.runs)) == ("base", "final_loss", 3 * 8)
    assert [c.variant for c in comparisons(a)] == ["worse", "same"]
    assert sorted({r.seed for r in first_round(a)}) == [0, 1, 2]
    scored = tiny_digits_spec()
    scored["eval"] = {"fid_samples": 16, "reference": "dataset"}
    assert parse_ablation(ablation(base=scored, baseline="same")).decide_on == "score"
    assert parse_ablation(ablation(base=scored, baseline="same")).baseline == "same"
    plain = parse_ablation(ablation(seeds=[0, 1]))
    assert plain.adaptive == {} and len(plain.runs) == 6


def test_seeds_per_framework():
    a = parse_ablation(ablation(frameworks=["torch", "jittor"], seeds={"torch": ADAPTIVE, "jittor": [0]}))
    assert a.adaptive == {"torch": AdaptiveSeeds(3, 8)} and a.seed_plans["jittor"] == [0]
    assert {(r.framework, r.seed) for r in first_round(a)} == {("torch", 0), ("torch", 1), ("torch", 2), ("jittor", 0)}
    assert {c.framework for c in comparisons(a)} == {"torch"}


@pytest.mark.parametrize("seeds, message", [
    ({"min": 3, "max": 8}, "seeds: adaptive seeds need until (e.g. {min: 3, max: 10, until: decided})"),
    ({"min": 3, "max": 8, "until": "tired"}, "seeds.until: expected 'decided'"),
    ({"min": 3, "max": 8, "until": "decided", "maxx": 9}, "seeds.maxx: unknown key (adaptive seeds take: min, max,"),
    ({"min": 1, "max": 8, "until": "decided"}, "seeds.min: expected an int from 2 to 20, got 1"),
    ({"min": 5, "max": 4, "until": "decided"}, "seeds.max: expected an int from 5 to 20, got 4"),
    ({"min": 3, "max": 21, "until": "decided"}, "seeds.max: expected an int from 3 to 20, got 21"),
    ({"min": 3, "max": 5, "until": "decided"}, "seeds.max: with at most 5 seeds the exact sign-flip test can never"),
    ({"min": 3, "max": 8, "until": "decided", "alpha": 0}, "seeds.alpha: expected a false-positive rate in (0, 0.5]"),
    ({"min": 3, "max": 8, "until": "decided", "spending": "linear"}, "seeds.spending: unknown spending function"),
    ({"torch": [0], "tensorflow": [0]}, "seeds.tensorflow: not a framework of this ablation (frameworks: torch;"),
    ({"torch": {"min": 3}}, "seeds.torch: adaptive seeds need max"),
])
def test_bad_seeds_are_one_line_errors(seeds, message):
    assert error(ablation(seeds=seeds)).startswith(message)


def test_bad_baseline_decide_on_and_per_framework_seeds():
    assert error(ablation(baseline="nope")) == "baseline: 'nope' is not a variant (variants: base, worse, same)"
    assert error(ablation(decide_on="fid")).startswith("decide_on: expected one of score, final_loss")
    assert error(ablation(decide_on="score")).startswith("decide_on: score, but base scores nothing")
    assert error(ablation(frameworks=["torch", "jittor"], seeds={"torch": [0]})).startswith(
        "seeds.jittor: missing (seeds given per framework name every framework: torch, jittor)")


def test_dry_run_shows_round_1_and_the_most_runs(tmp_path, capsys):
    from unetlab.cli import main

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(ablation()))
    assert main(["ablate", str(path), "--runs", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ablation t: 9 runs in ")
    assert "worse-torch-s2" in out and "worse-torch-s3" not in out
    assert "against 'base' on final_loss; at most 24 runs in all" in out
    assert not (tmp_path / "runs").exists()


# -- the rounds, on runs finished by a stand-in sweep --------------------------------------------

#: final loss of (variant, seed): "worse" is worse on every seed; "same" is noise around the baseline
LOSS = {"base": lambda s: 1.0 + 0.1 * s, "worse": lambda s: 1.5 + 0.1 * s,
        "same": lambda s: 1.0 + 0.1 * s + (0.05 if s % 2 else -0.05)}


class FakeSweep:
    """Finishes each run of a round with its LOSS; can stop (like a kill) after some rounds."""

    def __init__(self, root: Path, stop_after: int | None = None):
        self.root, self.stop_after, self.trained, self.rounds = root, stop_after, [], 0

    def __call__(self, round_ablation):
        if self.stop_after is not None and self.rounds == self.stop_after:
            run = round_ablation.runs[0]  # one run of the round finishes before the kill
            self._finish(run)
            raise KeyboardInterrupt
        self.rounds += 1
        for run in round_ablation.runs:
            if rundir.run_status(self.root / run.name) != rundir.Status.DONE:
                self._finish(run)

    def _finish(self, run):
        d = self.root / run.name
        rundir.write_config(d, run.config())
        rundir.write_summary(d, {"status": "done", "final_loss": LOSS[run.variant](run.seed)})
        self.trained.append(run.name)


def _folders(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()}


def test_runs_stop_per_variant_as_the_rule_says(tmp_path, capsys):
    a = parse_ablation(ablation())
    lines = []
    final = run_adaptive(a, tmp_path, FakeSweep(tmp_path), echo=lines.append)
    worse, same = final["worse vs base (torch)"], final["same vs base (torch)"]
    assert (worse["verdict"], worse["n"], worse["p"]) == ("worse", 6, pytest.approx(2 / 64))
    assert (same["verdict"], same["n"], same["final"]) == ("undecided", 8, True)
    assert same["seeds_needed"] is None  # a zero mean difference: no number of seeds shows it
    expected = ({f"base-torch-s{s}" for s in range(8)} | {f"same-torch-s{s}" for s in range(8)}
                | {f"worse-torch-s{s}" for s in range(6)})
    assert _folders(tmp_path) == expected
    assert "round 4, n=6: worse vs base (torch): worse (p 0.0312 <= 0.0414), stops" in lines
    from unetlab.commands.ablate_adaptive import print_adaptive_plan

    print_adaptive_plan(a, tmp_path)  # --status: the later rounds' runs too
    out = capsys.readouterr().out
    assert "same-torch-s7" in out and "worse-torch-s5" in out and "worse-torch-s6" not in out
    assert any(line.startswith("round 3, n=5: same vs base (torch): undecided (p ") for line in lines)
    audit = read_audit(tmp_path)
    assert [(r["round"], r["variant"]) for r in audit][:3] == [(1, "worse"), (1, "same"), (2, "worse")]
    assert len(audit) == 4 * 2 + 2  # rounds 1-4 look at both, rounds 5-6 at "same" only
    assert all(set(r) >= {"round", "n", "p", "level", "verdict", "mean_diff"} for r in audit)


def test_a_killed_adaptive_sweep_replays_its_rounds_and_ends_as_an_uninterrupted_one(tmp_path):
    a = parse_ablation(ablation())
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run_adaptive(a, whole, FakeSweep(whole), echo=lambda line: None)
    with pytest.raises(KeyboardInterrupt):
        run_adaptive(a, resumed, FakeSweep(resumed, stop_after=2), echo=lambda line: None)
    assert (resumed / "base-torch-s3").is_dir() and not (resumed / "base-torch-s5").exists()
    again = FakeSweep(resumed)
    run_adaptive(a, resumed, again, echo=lambda line: None)
    assert "base-torch-s0" not in again.trained and "base-torch-s3" not in again.trained  # done: not rerun
    assert _folders(resumed) == _folders(whole)
    assert (resumed / AUDIT).read_text() == (whole / AUDIT).read_text()


def test_a_round_with_a_failed_run_stops_with_one_line(tmp_path):
    a = parse_ablation(ablation())

    def failing(round_ablation):
        for run in round_ablation.runs:
            rundir.write_config(tmp_path / run.name, run.config())
            rundir.write_summary(tmp_path / run.name, {"status": "failed", "reason": "NaN"})

    with pytest.raises(UnetlabError, match=r"^round 1: 9 run\(s\) did not finish \(base-torch-s0, "):
        run_adaptive(a, tmp_path, failing, echo=lambda line: None)


# -- a real adaptive ablation, killed and rerun ---------------------------------------------------

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
REAL_SEEDS = {"min": 3, "max": 7, "until": "decided"}


def _ablate(path: Path, runs: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unetlab.cli", "ablate", str(path), "--runs", str(runs), "--jobs", "2",
           "--no-progress", "--no-plots"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)


@pytest.mark.slow
def test_a_real_adaptive_ablation_killed_in_round_2_ends_as_the_rule_says(tmp_path):
    from conftest import wait_for

    path = tmp_path / "t.yaml"  # "lazy" barely trains (worse on every seed); "same" is the baseline again
    path.write_text(yaml.safe_dump({
        "name": "t", "base": tiny_digits_spec(10, lr=3e-3), "seeds": REAL_SEEDS,
        "variants": {"base": {}, "lazy": {"train.lr": 1e-7}, "same": {}}}))
    runs = tmp_path / "runs"
    proc = _ablate(path, runs)
    wait_for(lambda: (runs / "t" / "base-torch-s3").is_dir(), proc, what="a round-2 run folder")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not (runs / "t" / "base-torch-s6").exists()
    rerun = _ablate(path, runs)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    expected = ({f"base-torch-s{s}" for s in range(7)} | {f"same-torch-s{s}" for s in range(7)}
                | {f"lazy-torch-s{s}" for s in range(6)})
    folders = {p.name for p in (runs / "t").iterdir() if p.is_dir() and p.name != "plots"}
    assert folders == expected
    assert all(rundir.run_status(runs / "t" / name) == rundir.Status.DONE for name in expected)
    final = {r["variant"]: r for r in read_audit(runs / "t") if r["final"]}
    assert (final["lazy"]["verdict"], final["lazy"]["n"]) == ("worse", 6)
    assert (final["same"]["verdict"], final["same"]["n"], final["same"]["mean_diff"]) == ("undecided", 7, 0.0)
    assert "round 4, n=6: lazy vs base (torch): worse" in out, out
    audit = (runs / "t" / AUDIT).read_text()
    again = _ablate(path, runs)  # everything done: the rounds replay from the records, nothing trains
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "to train" not in out, out
    assert (runs / "t" / AUDIT).read_text() == audit
