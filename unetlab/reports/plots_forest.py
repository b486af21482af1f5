"""The forest plot of a ``--vs`` comparison: per variant and metric, the mean difference from the
baseline with its confidence interval, a zero line, and the verdict as the colour."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .plots import save_figure

COLOURS = {"better": "tab:green", "worse": "tab:red", "undecided": "tab:gray"}


def forest_plot(comparison: pd.DataFrame, path: Path, baseline: str, score: str = "FID") -> Path | None:
    """Write the forest plot of ``comparison`` (``reports.baseline.compare_to_baseline``) to ``path``:
    one panel per metric; None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = comparison[comparison["diff"].notna()]
    if rows.empty:
        return None
    metrics = list(dict.fromkeys(rows["metric"]))
    height = max(2.0, 0.35 * rows.groupby("metric").size().max() + 1.2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), height), dpi=110, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = rows[rows["metric"] == metric].reset_index(drop=True)
        labels = [_label(r, part) for r in part.to_dict("records")]
        for y, r in enumerate(part.to_dict("records")):
            colour = COLOURS.get(r["verdict"], "black")
            if pd.notna(r["ci_low"]):
                ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=colour, lw=2)
            ax.plot([r["diff"]], [y], "o", color=colour)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(range(len(part)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(len(part) - 0.5, -0.5)
        name = score if metric == "FID" else metric
        ax.set_title(f"{name} - {baseline} ({part['direction'].iloc[0]} is better)", fontsize=9)
        ax.set_xlabel("difference, 95% CI", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.tick_params(axis="x", labelsize=7)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, path, rect=(0, 0.08, 1, 1))


def _label(row: dict, part: pd.DataFrame) -> str:
    label = str(row["variant"])
    if part["framework"].nunique() > 1:
        label += f" ({row['framework']})"
    if part["grid"].astype(str).nunique() > 1:
        label += f" [{row['grid']}]"
    return label + f" n={row['n']}"
