"""Every variant against a baseline variant, metric by metric, paired by seed.

:func:`compare_to_baseline` takes the per-run results table (``table.load_table``, one row per
run) and returns one row per (ablation, grid point, framework, variant, metric): the mean
difference variant - baseline over the seeds both ran, its confidence interval, the test's
p-value, Holm's adjusted p-value across all rows returned, the verdict and the seeds a decision
would need.  Only finished (``done``) runs count: a partial run's figures are not comparable.

Evaluation noise: where the table has ``<metric> se`` (a score's bootstrap standard error over
generated samples), the row also splits the spread of the differences into evaluation noise and
seed noise.  The test needs no correction for it: each run's score already carries its own
evaluation error, so the spread of the paired differences across seeds contains it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UnetlabError
from ..run.jsonfiles import read_jsonl
from ..run.layout import ADAPTIVE_AUDIT
from ..stats import inference
from .table import _column

#: the columns a comparison row holds, in order
COLUMNS = ["ablation", "grid", "framework", "variant", "metric", "direction", "n", "baseline mean", "mean",
           "diff", "ci_low", "ci_high", "sd", "test", "p", "p holm", "verdict", "seeds needed",
           "seed sd", "eval sd", "noise", "note"]
DEFAULT_METRICS = ("final loss", "FID", "train img/s")


def _done(df: pd.DataFrame) -> pd.DataFrame:
    status = df["status"].astype(str).map(lambda s: s.split(":")[0].split(" ")[0])
    return df[status == "done"]


def resolve_metrics(df: pd.DataFrame, metrics=None) -> list[str]:
    """The table columns ``metrics`` name (aliases like ``fd-small`` allowed); by default final
    loss, the score (where any run has one) and train img/s."""
    if not metrics:
        return [m for m in DEFAULT_METRICS if m in df.columns and pd.to_numeric(df[m], errors="coerce").notna().any()]
    out = []
    for name in metrics:
        column = _column(df, name)
        inference.lower_is_better(column)  # a clear error for a column with no direction
        out.append(column)
    return list(dict.fromkeys(out))


#: The table column each adaptive ablation's ``decide_on`` names.
DECIDED_COLUMN = {"score": "FID", "final_loss": "final loss"}
#: The ``test`` of a row decided by adaptive seeds' stopping rule.
SEQUENTIAL = "sequential sign-flip"


def adaptive_looks(df: pd.DataFrame) -> dict:
    """The last look of every comparison that adaptive seeds decided (or are deciding), read from
    the ``adaptive.jsonl`` of each ablation folder holding the table's runs:
    ``{(folder, grid, framework, variant, column, baseline): look record}``."""
    looks = {}
    for folder in sorted({Path(p).parent for p in df["path"]}):
        for record in read_jsonl(folder / ADAPTIVE_AUDIT):
            column = DECIDED_COLUMN.get(record.get("metric"))
            if column is not None:  # a later look of a comparison replaces its earlier ones
                looks[(str(folder), record.get("grid", ""), record.get("framework"), record.get("variant"),
                       column, record.get("baseline"))] = record
    return looks


def _sequential_row(row: dict, look: dict) -> dict:
    """``row`` with the stopping rule's test, p and verdict: its looks control their own error,
    so the row takes no part in Holm's adjustment."""
    decided = look.get("final") and look.get("verdict") != "undecided"
    state = (f"decided at n={look['n']}" if decided else
             f"undecided at the last seed (n={look['n']})" if look.get("final") else
             f"still running (n={look['n']})")
    return {**row, "test": SEQUENTIAL, "p": look.get("p"), "p holm": math.nan, "verdict": look.get("verdict"),
            "seeds needed": look.get("seeds_needed") or math.nan,
            "note": f"adaptive seeds: {state}; p against the look's level {look.get('level', math.nan):.3g}"}


def compare_to_baseline(df: pd.DataFrame, baseline: str, metrics=None, alpha: float = 0.05,
                        level: float = 0.95) -> pd.DataFrame:
    """One row per variant other than ``baseline`` x metric, within each ablation, grid point and
    framework (columns: :data:`COLUMNS`).

    Paired by seed where at least two seeds ran in both (exact sign-flip test up to
    ``inference.EXACT_MAX_PAIRS`` pairs, paired t above); Welch's test otherwise.  ``p holm`` is
    adjusted over every row returned; ``verdict`` is ``better``/``worse``/``undecided`` at
    ``alpha`` on that adjusted p-value, knowing each metric's direction.  ``seeds needed``: the
    seed pairs at which a paired t-test at ``alpha`` detects the observed difference with 80%
    power, and never fewer than the exact test needs to reach ``alpha`` after Holm's factor.

    A comparison that adaptive seeds decided (the ablation folder's ``adaptive.jsonl``) takes the
    stopping rule's test, p-value and verdict on the metric it was decided on: a fixed-sample test
    after an adaptive stop would not keep its stated error rate."""
    variants = sorted(set(df["variant"].dropna().astype(str)))
    if baseline not in variants:
        raise UnetlabError(f"--vs {baseline!r}: no such variant (variants: {', '.join(variants) or 'none'})")
    if not 0 < alpha < 1:
        raise UnetlabError(f"--alpha {alpha}: must lie between 0 and 1")
    columns = resolve_metrics(df, metrics)
    done = _done(df)
    keys = ["ablation", "grid", "framework"]
    looks = adaptive_looks(done) if len(done) else {}
    rows, sequential = [], {}
    for ident, part in done.groupby(keys, sort=False, dropna=False):
        base = part[part["variant"] == baseline]
        if base.empty:
            continue
        for variant, other in part[part["variant"] != baseline].groupby("variant", sort=True):
            for metric in columns:
                row = dict(zip(keys, ident), variant=variant, metric=metric)
                row.update(compare_runs(base, other, metric, level))
                folder = str(Path(other["path"].iloc[0]).parent)
                look = looks.get((folder, "" if pd.isna(ident[1]) else str(ident[1]), ident[2], variant, metric, baseline))
                if look is not None:
                    sequential[len(rows)] = look
                rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    fixed = out["p"].to_numpy(dtype=float).copy()
    fixed[list(sequential)] = math.nan  # the stopping rule's rows keep their own error rate
    out["p holm"] = inference.holm(fixed)
    records = out.to_dict("records")
    out["verdict"] = [inference.verdict(r["diff"], r["p holm"], r["direction"] == "lower", alpha) for r in records]
    tested = int(np.isfinite(fixed).sum())
    floor = inference.min_deciding_pairs(alpha, tested)  # the exact test's own minimum, Holm's factor included
    out["seeds needed"] = [max(inference.seeds_needed(r["diff"], r["sd"], alpha), floor)
                           if r["test"] in (inference.SIGN_FLIP, inference.PAIRED_T) else math.nan for r in records]
    out["note"] = ["; ".join(filter(None, [r["note"], inference.decision_note(r["n"], r["test"], alpha, tested)]))
                   for r in records]
    for i, look in sequential.items():
        out.loc[i] = pd.Series(_sequential_row(out.loc[i].to_dict(), look))
    return out


def _by_seed(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    values = pd.DataFrame({"seed": runs["seed"], "value": pd.to_numeric(runs[metric], errors="coerce")})
    se_col = f"{metric} se"
    values["se"] = pd.to_numeric(runs[se_col], errors="coerce") if se_col in runs else math.nan
    return values.dropna(subset=["value"]).groupby("seed").mean()  # a seed run twice: its mean


def compare_runs(base: pd.DataFrame, other: pd.DataFrame, metric: str, level: float = 0.95) -> dict:
    """The comparison of one variant's runs with the baseline's on ``metric`` (before Holm)."""
    a, b = _by_seed(base, metric), _by_seed(other, metric)
    paired = a.join(b, how="inner", lsuffix=" a", rsuffix=" b")
    row = {"direction": "lower" if inference.lower_is_better(metric) else "higher",
           "baseline mean": a["value"].mean() if len(a) else math.nan,
           "mean": b["value"].mean() if len(b) else math.nan, "note": ""}
    unpaired = len(a) + len(b) - 2 * len(paired)
    if len(paired) >= 2:
        diffs = (paired["value b"] - paired["value a"]).to_numpy()
        ci = inference.mean_ci(diffs, level)
        test = inference.sign_flip_test(diffs)
        sd = float(np.std(diffs, ddof=1))
        eval_var = (paired["se a"] ** 2 + paired["se b"] ** 2).mean(skipna=False)  # one unknown: unknown
        if unpaired:
            row["note"] = f"{unpaired} runs without a seed partner left out"
    elif len(a) >= 2 and len(b) >= 2:
        ci = inference.welch_ci(a["value"], b["value"], level)
        test = inference.welch_test(a["value"], b["value"])
        sd = math.sqrt(a["value"].var(ddof=1) + b["value"].var(ddof=1))
        eval_var = (a["se"] ** 2).mean(skipna=False) + (b["se"] ** 2).mean(skipna=False)
        row["note"] = "no seed partners: unpaired"
    else:
        ci = inference.MeanCI(row["mean"] - row["baseline mean"], math.nan, math.nan, min(len(a), len(b)))
        test, sd, eval_var = inference.TestResult(math.nan, "none"), math.nan, math.nan
        row["note"] = "too few runs to test (2 per side needed)"
    row.update({"n": ci.n, "diff": ci.mean, "ci_low": ci.ci_low, "ci_high": ci.ci_high, "sd": sd,
                "test": test.method, "p": test.p})
    row.update(noise_split(sd, eval_var))
    return row


def noise_split(sd: float, eval_var: float) -> dict:
    """The spread of one difference split into evaluation noise (``eval sd``: the root mean of
    se_a^2 + se_b^2) and seed noise (``seed sd``: what the observed spread leaves, sqrt(max(0,
    sd^2 - eval^2))), and which is larger.  Both shrink as 1/sqrt(n) in the mean difference, so
    the comparison holds for the mean too.  Unknown evaluation noise leaves all three empty."""
    if eval_var is None or math.isnan(eval_var) or sd is None or math.isnan(sd):
        return {"seed sd": math.nan, "eval sd": math.nan, "noise": ""}
    eval_sd = math.sqrt(eval_var)
    seed_sd = math.sqrt(max(0.0, sd ** 2 - eval_var))
    return {"seed sd": seed_sd, "eval sd": eval_sd, "noise": "seeds" if seed_sd >= eval_sd else "evaluation"}
