"""Adaptive seeds: run an ablation in rounds until every comparison with its baseline is decided.

For each framework with ``seeds: {min, max, until: decided}`` and each grid point, every variant
other than the baseline is compared with the baseline seed by seed.  Round 1 runs seeds
0..min-1 of every variant (and every run of the frameworks with fixed seeds).  After each round
the stopping rule (:func:`unetlab.stats.sequential.decide`) looks at each open comparison's n
paired differences; round k+1 runs seed n of the variants still undecided and of their
baselines.  The rounds end when every comparison is decided or at ``max``.

Each round is one :func:`unetlab.sweeps.sweep.run_sweep` call, so it runs on whatever engine the sweep
has (this machine's pool, Slurm, Ray).  The decisions are a function of the finished runs' own
records (their ``summary.json``), so a rerun of a killed adaptive sweep replays the rounds from
the run folders -- the finished runs are skipped -- and goes on where it stopped.  The rounds'
looks are written to ``RUNS/<ablation>/adaptive.jsonl`` (rewritten whole and atomically after
each round).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..run import jsonfiles, rundir
from ..run.layout import ADAPTIVE_AUDIT
from .ablation import Ablation, Run
from ..errors import UnetlabError
from ..files import atomic_write_text
from .seed_plan import AdaptiveSeeds
from ..stats.sequential import Look, decide

AUDIT = ADAPTIVE_AUDIT


@dataclass(frozen=True)
class Comparison:
    """One variant against the baseline, in one framework at one grid point."""

    framework: str
    grid: str  # the grid point's label ("" without a grid)
    variant: str
    baseline: str
    plan: AdaptiveSeeds

    @property
    def label(self) -> str:
        where = "/".join(x for x in (self.framework, self.grid) if x)
        return f"{self.variant} vs {self.baseline} ({where})"


def comparisons(ablation: Ablation) -> list[Comparison]:
    """Every variant-vs-baseline comparison of the frameworks with adaptive seeds."""
    out, seen = [], set()
    for run in ablation.runs:
        plan = ablation.adaptive.get(run.framework)
        key = (run.framework, run.grid_label, run.variant)
        if plan is None or run.variant == ablation.baseline or key in seen:
            continue
        seen.add(key)
        out.append(Comparison(run.framework, run.grid_label, run.variant, ablation.baseline, plan))
    return out


def _index(ablation: Ablation) -> dict:
    return {(r.framework, r.grid_label, r.variant, r.seed): r for r in ablation.runs}


def first_round(ablation: Ablation) -> list[Run]:
    """Round 1: seeds 0..min-1 of the adaptive frameworks, every run of the fixed ones."""
    plans = ablation.adaptive
    return [r for r in ablation.runs if r.framework not in plans or r.seed < plans[r.framework].min]


def round_runs(ablation: Ablation, number: int, open_: list[Comparison]) -> list[Run]:
    """The runs of round ``number`` (from 1) for the comparisons still open."""
    if number == 1:
        return first_round(ablation)
    index, runs = _index(ablation), {}
    for c in open_:
        seed = c.plan.min + number - 2
        for variant in (c.baseline, c.variant):
            run = index[(c.framework, c.grid, variant, seed)]
            runs[run.name] = run
    return list(runs.values())


def metric(run_dir: Path, decide_on: str) -> float | None:
    """The decision metric of a finished run (lower is better); None when it is not done."""
    state = rundir.read_state(run_dir)
    if state.status != rundir.Status.DONE:
        return None
    summary = state.summary or {}
    value = (summary.get("fid") or {}).get("value") if decide_on == "score" else summary.get("final_loss")
    if value is None:
        raise UnetlabError(f"{run_dir}: finished without a {decide_on} to decide on")
    return float(value)


def look(ablation: Ablation, root: Path, c: Comparison, n: int) -> Look:
    """The stopping rule on the first ``n`` seeds of comparison ``c``."""
    index, diffs = _index(ablation), []
    for seed in range(n):
        pair = [metric(Path(root) / index[(c.framework, c.grid, v, seed)].name, ablation.decide_on)
                for v in (c.variant, c.baseline)]
        diffs.append(pair[0] - pair[1])
    return decide(diffs, c.plan.min, c.plan.max, c.plan.alpha, c.plan.spending)


def _describe(c: Comparison, result: Look) -> str:
    if result.verdict != "undecided":
        return f"{c.label}: {result.verdict} (p {result.p:.3g} <= {result.level:.3g}), stops"
    if result.final:
        needed = f"; about {result.seeds_needed} seeds would be needed" if result.seeds_needed else ""
        return f"{c.label}: undecided at max {result.n} seeds (p {result.p:.3g}){needed}"
    return f"{c.label}: undecided (p {result.p:.3g} > {result.level:.3g}), continues"


def run_adaptive(ablation: Ablation, root: Path, sweep, echo=print) -> dict:
    """Run ``ablation`` in rounds; ``sweep(sub_ablation)`` runs one round's runs (skipping done ones).

    Returns {comparison label: its final :class:`Look` as a record}.  A round whose runs did not
    all finish (failed, or running elsewhere) stops the rounds with a one-line error."""
    root = Path(root)
    open_ = comparisons(ablation)
    records, final, number = [], {}, 1
    while True:
        runs = round_runs(ablation, number, open_)
        if not runs:
            break
        todo = [r for r in runs if rundir.run_status(root / r.name) != rundir.Status.DONE]
        if todo:
            echo(f"round {number}: {len(todo)} of its {len(runs)} runs to train")
            sweep(dataclasses.replace(ablation, runs=tuple(runs)))
        unfinished = [r.name for r in runs if rundir.run_status(root / r.name) != rundir.Status.DONE]
        if unfinished:
            raise UnetlabError(f"round {number}: {len(unfinished)} run(s) did not finish ({', '.join(unfinished)}); "
                               f"the rounds need them -- see the table, fix or delete them, and rerun")
        still = []
        for c in open_:
            result = look(ablation, root, c, c.plan.min + number - 1)
            records.append({"round": number, "framework": c.framework, "grid": c.grid, "variant": c.variant,
                            "baseline": c.baseline, "metric": ablation.decide_on, **result.as_record()})
            echo(f"round {number}, n={result.n}: {_describe(c, result)}")
            if result.final:
                final[c.label] = records[-1]
            else:
                still.append(c)
        write_audit(root, records)
        open_ = still
        if not open_:
            break
        number += 1
    return final


def write_audit(root: Path, records: list[dict]) -> None:
    """``RUNS/<ablation>/adaptive.jsonl``: one record per look, rewritten whole and atomically."""
    if records:
        Path(root).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(root) / AUDIT, "".join(json.dumps(r) + "\n" for r in records))


def read_audit(root: Path) -> list[dict]:
    """The looks recorded by the last adaptive sweep of ``root``."""
    return jsonfiles.read_jsonl(Path(root) / AUDIT)
