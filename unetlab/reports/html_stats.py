"""The statistics sections of the HTML report: the table grouped over seeds with intervals, and
the comparison with a baseline variant with its forest plot."""
from __future__ import annotations

import html
import tempfile
from pathlib import Path

import pandas as pd

from .baseline import compare_to_baseline
from .baseline_table import readable
from .plots_forest import forest_plot
from .table import _score_names, group_seeds, grouped_cells, score_header


def grouped_html(df: pd.DataFrame) -> str:
    """The per-run table ``df`` grouped over seeds, cells ``mean [lo, hi] n=k``, as an HTML table."""
    shown = grouped_cells(group_seeds(df)).fillna("")
    shown = shown.rename(columns=_score_names(shown.columns, score_header(df)))
    keep = [c for c in shown.columns if (shown[c].astype(str) != "").any() or c in ("variant", "status")]
    return shown[keep].to_html(index=False, escape=True, classes="results", border=0)


def comparison_html(df: pd.DataFrame, baseline: str, metrics, alpha: float, img) -> list[str]:
    """The ``--vs`` section: heading, comparison table and forest plot (``img(png_bytes, alt)``
    embeds it)."""
    result = compare_to_baseline(df, baseline, list(metrics), alpha)
    parts = [f"<h2>Against {html.escape(baseline)}: paired by seed</h2>",
             f"<p>Difference = variant - {html.escape(baseline)}; verdicts at alpha {alpha:g} on Holm-adjusted "
             "p-values (see docs/statistics.md).</p>"]
    if result.empty:
        return parts + ["<p>No variant ran beside the baseline.</p>"]
    score = score_header(df)
    parts.append(readable(result, score).to_html(index=False, escape=True, classes="results", border=0))
    with tempfile.TemporaryDirectory() as tmp:
        path = forest_plot(result, Path(tmp) / "forest.png", baseline, score)
        if path:
            parts.append(img(path.read_bytes(), f"forest plot against {baseline}"))
    return parts
