"""The ``--vs`` comparison as text: terminal and markdown cells, csv and json numbers."""
from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from ..errors import UnetlabError


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}"


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _seeds(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "never (no effect)" if math.isinf(value) else str(int(value))


def readable(df: pd.DataFrame, score: str = "FID") -> pd.DataFrame:
    """Cells for people: ``diff [lo, hi]``, rounded p-values, the score's real name."""
    rows = []
    for r in df.to_dict("records"):
        interval = f" [{_num(r['ci_low'], 3)}, {_num(r['ci_high'], 3)}]" if pd.notna(r["ci_low"]) else ""
        rows.append({"ablation": r["ablation"], "grid": r["grid"], "framework": r["framework"],
                     "variant": r["variant"],
                     "metric": (score if r["metric"] == "FID" else r["metric"]) + f" ({r['direction']} better)",
                     "n": r["n"], "baseline": _num(r["baseline mean"]), "variant mean": _num(r["mean"]),
                     "diff [95% CI]": _num(r["diff"], 3) + interval, "test": r["test"], "p": _p(r["p"]),
                     "p holm": _p(r["p holm"]), "verdict": r["verdict"], "seeds needed": _seeds(r["seeds needed"]),
                     "seed sd": _num(r["seed sd"], 3), "eval sd": _num(r["eval sd"], 3), "noise": r["noise"],
                     "note": r["note"]})
    shown = pd.DataFrame(rows)
    drop = [c for c in ("ablation", "grid", "framework") if c in shown and shown[c].astype(str).nunique() <= 1]
    drop += [c for c in ("seed sd", "eval sd", "noise", "note") if c in shown and (shown[c] == "").all()]
    return shown.drop(columns=drop)


def format_vs(df: pd.DataFrame, fmt: str = "terminal", score: str = "FID", level: float = 0.95) -> str:
    """The comparison (``reports.baseline.compare_to_baseline``) as text; csv and json keep numbers."""
    if fmt in ("csv", "json"):
        named = df.assign(metric=[score if m == "FID" else m for m in df["metric"]])
        return named.to_csv(index=False) if fmt == "csv" else named.to_json(orient="records", indent=1) + "\n"
    if df.empty:
        return "no variant ran beside the baseline (same ablation, grid point and framework, status done)"
    shown = readable(df, score).rename(columns={"diff [95% CI]": f"diff [{level:.0%} CI]"})
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    if fmt not in ("terminal", "markdown"):
        raise UnetlabError(f"unknown format {fmt!r} (formats: terminal, markdown, csv, json, latex)")
    return tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                    tablefmt="simple" if fmt == "terminal" else "github")
