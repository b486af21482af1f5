"""The framework comparison in numbers: per variant, Jittor's figures over PyTorch's.

From the results table (``table.load_table``): for each ablation/variant/grid point that ran
in both frameworks, the ratio jittor / torch of final loss, train img/s, sample img/s, peak
memory and FID over the seeds that ran in both (averaged first): a framework with more seeds
(e.g. adaptive PyTorch seeds against one Jittor seed) is compared on the shared seeds only.
A ratio above 1 means Jittor's figure is larger.
"""
from __future__ import annotations

import pandas as pd

from ..errors import UnetlabError

#: the table's columns compared, and the ratio column each gives
RATIOS = {"final loss": "final loss J/T", "train img/s": "train img/s J/T", "sample img/s": "sample img/s J/T",
          "peak mem MiB": "peak mem J/T", "FID": "FID J/T"}
KEYS = ["ablation", "variant", "grid"]
COMPARABLE = ("framework",)


def compare_frameworks(df: pd.DataFrame, numerator: str = "jittor", denominator: str = "torch") -> pd.DataFrame:
    """One row per variant that ran in both frameworks: the seeds both ran, then the J/T ratios
    over those seeds (None where either side lacks the figure)."""
    rows = []
    for ident, part in df.groupby(KEYS, sort=False, dropna=False):
        means = {}
        shared = set(part.loc[part["framework"] == numerator, "seed"])
        shared &= set(part.loc[part["framework"] == denominator, "seed"])
        part = part[part["seed"].isin(shared)]  # seed-paired: extra seeds on one side would skew the ratios
        for framework in (numerator, denominator):
            runs = part[part["framework"] == framework]
            if runs.empty:
                break
            means[framework] = {col: pd.to_numeric(runs[col], errors="coerce").mean() for col in RATIOS}
        else:
            row = dict(zip(KEYS, ident))
            row["seeds"] = len(shared)
            for col, name in RATIOS.items():
                top, bottom = means[numerator][col], means[denominator][col]
                row[name] = top / bottom if pd.notna(top) and pd.notna(bottom) and bottom != 0 else None
            rows.append(row)
    if not rows:
        raise UnetlabError(f"--compare framework: no variant ran in both {denominator} and {numerator}")
    return pd.DataFrame(rows, columns=KEYS + ["seeds"] + list(RATIOS.values()))


def compare(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """The comparison table ``--compare BY`` asks for."""
    if by != "framework":
        raise UnetlabError(f"--compare {by!r}: unknown comparison (valid: {', '.join(COMPARABLE)})")
    return compare_frameworks(df)


def format_comparison(df: pd.DataFrame, fmt: str = "terminal") -> str:
    """The comparison as text: ratios with 3 decimals (json: the numbers as they are)."""
    if fmt == "json":
        return df.to_json(orient="records", indent=1) + "\n"
    shown = df.copy()
    for name in RATIOS.values():
        shown[name] = [f"{v:.3f}" if v is not None and pd.notna(v) else "" for v in shown[name]]
    if "ablation" in shown and shown["ablation"].nunique() == 1:
        shown = shown.drop(columns=["ablation"])
    if (shown["grid"].astype(str) == "").all():
        shown = shown.drop(columns=["grid"])
    if fmt == "csv":
        return shown.to_csv(index=False)
    if fmt == "latex":
        return shown.to_latex(index=False)
    from tabulate import tabulate
    return tabulate(shown, headers="keys", showindex=False, disable_numparse=True,
                    tablefmt="github" if fmt == "markdown" else "simple")
