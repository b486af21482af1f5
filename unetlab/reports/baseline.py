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

import numpy as np
import pandas as pd

from ..errors import UnetlabError
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


def compare_to_baseline(df: pd.DataFrame, baseline: str, metrics=None, alpha: float = 0.05,
                        level: float = 0.95) -> pd.DataFrame:
    """One row per variant other than ``baseline`` x metric, within each ablation, grid point and
    framework (columns: :data:`COLUMNS`).

    Paired by seed where at least two seeds ran in both (exact sign-flip test up to
    ``inference.EXACT_MAX_PAIRS`` pairs, paired t above); Welch's test otherwise.  ``p holm`` is
    adjusted over every row returned; ``verdict`` is ``better``/``worse``/``undecided`` at
    ``alpha`` on that adjusted p-value, knowing each metric's direction.  ``seeds needed``: the
    seed pairs at which a paired t-test at ``alpha`` detects the observed difference with 80%
    power, and never fewer than the exact test needs to reach ``alpha`` after Holm's factor."""
    variants = sorted(set(df["variant"].dropna().astype(str)))
    if baseline not in variants:
        raise UnetlabError(f"--vs {baseline!r}: no such variant (variants: {', '.join(variants) or 'none'})")
    if not 0 < alpha < 1:
        raise UnetlabError(f"--alpha {alpha}: must lie between 0 and 1")
    columns = resolve_metrics(df, metrics)
    done = _done(df)
    keys = ["ablation", "grid", "framework"]
    rows = []
    for ident, part in done.groupby(keys, sort=False, dropna=False):
        base = part[part["variant"] == baseline]
        if base.empty:
            continue
        for variant, other in part[part["variant"] != baseline].groupby("variant", sort=True):
            for metric in columns:
                row = dict(zip(keys, ident), variant=variant, metric=metric)
                row.update(compare_runs(base, other, metric, level))
                rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    out["p holm"] = inference.holm(out["p"].to_numpy(dtype=float))
    records = out.to_dict("records")
    out["verdict"] = [inference.verdict(r["diff"], r["p holm"], r["direction"] == "lower", alpha) for r in records]
    tested = int(out["p"].notna().sum())
    floor = inference.min_deciding_pairs(alpha, tested)  # the exact test's own minimum, Holm's factor included
    out["seeds needed"] = [max(inference.seeds_needed(r["diff"], r["sd"], alpha), floor)
                           if r["test"] in (inference.SIGN_FLIP, inference.PAIRED_T) else math.nan for r in records]
    out["note"] = ["; ".join(filter(None, [r["note"], inference.decision_note(r["n"], r["test"], alpha, tested)]))
                   for r in records]
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
