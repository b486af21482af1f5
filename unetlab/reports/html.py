"""``unetlab table RUNS --html FILE``: one self-contained HTML report of an ablation.

The file holds the results table (and the framework comparison where both frameworks ran),
the loss plots, every run's sample grid (upscaled, nearest neighbour) and its config and
measuring protocol.  Images are embedded as ``data:`` URIs, so it opens in a browser with no
server and can be mailed as one file.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
from pathlib import Path
import tempfile

from ..errors import UnetlabError
from ..files import atomic_write_bytes
from ..run import jsonfiles, rundir
from .compare import compare_frameworks, format_comparison
from .html_stats import comparison_html, grouped_html
from .plots import write_plots
from .plots_frameworks import write_framework_plots
from .plots_seeds import write_seed_plots
from .table import _DIGITS, _fmt, format_table, load_table

#: sample grids are shown at least this wide (pixels), enlarged by a whole factor
GRID_WIDTH = 512

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
img { image-rendering: pixelated; margin: 4px; }
.runs { display: flex; flex-wrap: wrap; gap: 1.5em; }
.run { border: 1px solid #ddd; padding: 0.5em; }
pre { font-size: 12px; max-height: 30em; overflow: auto; background: #f7f7f7; padding: 0.5em; }
"""

#: marks the page once every image has decoded (headless checks read it from the DOM)
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var shown = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-shown', shown);
});
"""


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def upscaled_png(path: Path, width: int = GRID_WIDTH) -> bytes:
    """The PNG at ``path`` enlarged by the whole factor that makes it at least ``width`` wide
    (nearest neighbour: every pixel stays a sharp square)."""
    from PIL import Image

    image = Image.open(path)
    factor = max(1, -(-width // image.width))
    image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _img(data: bytes, alt: str) -> str:
    return f'<img src="{png_data_uri(data)}" alt="{html.escape(alt)}">'


def _run_section(run_dir: Path, row: dict) -> str:
    config = jsonfiles.read_json(run_dir / rundir.CONFIG) or {}
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY) or {}
    title = html.escape(run_dir.name)
    grid = run_dir / rundir.GRID
    picture = _img(upscaled_png(grid), f"samples of {run_dir.name}") if grid.is_file() else "<p>no samples yet</p>"
    facts = {"status": row.get("status"), "device": summary.get("device"),
             "first step s (compilation included)": summary.get("first_step_s"),
             "protocol": row.get("FID protocol") or "no score"}
    items = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in facts.items() if v is not None)
    spec = html.escape(json.dumps(config, indent=1, sort_keys=True))
    return (f'<div class="run"><h3>{title}</h3>{picture}<ul>{items}</ul>'
            f"<details><summary>config</summary><pre>{spec}</pre></details></div>")


def _plots(run_dirs: list[Path], group: bool = False) -> list[tuple[str, bytes]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(write_plots(run_dirs, Path(tmp)))
        paths += write_framework_plots(run_dirs, Path(tmp))
        if group:
            paths += write_seed_plots(run_dirs, Path(tmp))
        for path in paths:
            out.append((path.stem, path.read_bytes()))
    return out


def render_report(root: Path, filters=(), group: bool = False, vs: str | None = None, metrics=(),
                  alpha: float = 0.05) -> str:
    """The report of the runs under ``root`` as one HTML string: grouped over seeds (means, 95%
    intervals, n) with ``group``, and with ``vs`` the comparison with that baseline variant and
    its forest plot."""
    df = load_table(root, list(filters))
    run_dirs = [Path(p) for p in df["path"]]
    if group:
        shown = grouped_html(df)
    else:
        shown = _csv_to_html_table(format_table(df, "csv"), numbers=True)
    parts = [f"<h1>unetlab report: {html.escape(str(root))}</h1>",
             f"<p>{len(df)} runs, written {datetime.datetime.now():%Y-%m-%d %H:%M}.</p>",
             "<h2>Results" + (": mean [95% CI] n over seeds" if group else "") + "</h2>", shown]
    if vs:
        parts += comparison_html(df, vs, metrics, alpha, _img)
    if set(df["framework"]) >= {"torch", "jittor"}:
        try:
            ratios = compare_frameworks(df)
            parts += ["<h2>Jittor / PyTorch</h2>", _csv_to_html_table(format_comparison(ratios, "csv"))]
        except UnetlabError:  # no variant ran in both: no comparison section
            pass
    plots = _plots(run_dirs, group)
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [_img(data, name) for name, data in plots]
    parts.append("<h2>Runs: samples, protocol, config</h2><div class=\"runs\">")
    parts += [_run_section(d, row) for d, row in zip(run_dirs, df.to_dict("records"))]
    parts.append("</div>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>unetlab report</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script></body></html>\n")


def _csv_to_html_table(csv_text: str, numbers: bool = False) -> str:
    """A CSV table as an HTML table (numbers rounded as the terminal table rounds them)."""
    import pandas as pd

    df = pd.read_csv(io.StringIO(csv_text), keep_default_na=False, dtype=str)
    if numbers:
        for col in df.columns:
            digits_of = "FID" if col == "FID" or col.startswith(("FD-", "FID/")) else col
            if digits_of in _DIGITS:
                df[col] = [_fmt(float(v), digits_of) if v != "" else "" for v in df[col]]
    keep = [c for c in df.columns if (df[c].astype(str) != "").any() or c in ("variant", "status")]
    return df[keep].to_html(index=False, escape=True, classes="results", border=0)


def write_report(root: Path, path: Path, filters=(), **options) -> Path:
    """Write the report of the runs under ``root`` to ``path`` (``options``: :func:`render_report`'s);
    returns ``path``."""
    atomic_write_bytes(Path(path), render_report(Path(root), filters, **options).encode("utf-8"))
    return Path(path)
