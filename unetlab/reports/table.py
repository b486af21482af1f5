"""The results table: one row per run folder (or per group of seeds), as a pandas DataFrame.

Rows come from each run's config.json, summary.json and metrics.jsonl, so running,
interrupted and failed runs show what they have so far.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UnetlabError
from ..metrics.fid import protocol
from ..run import jsonfiles, rundir
from ..run.rundir import Status
from ..run.trainer import summarize

ID_COLUMNS = ["ablation", "variant", "grid", "framework", "seed"]
NUMBER_COLUMNS = ["params", "GFLOPs", "steps", "final loss", "best loss", "train img/s", "sample img/s",
                  "peak mem MiB", "FID", "best score", "first step s"]
COLUMNS = ID_COLUMNS + NUMBER_COLUMNS + ["FID protocol", "status"]
_DIGITS = {"params": 0, "GFLOPs": 3, "steps": 0, "final loss": 4, "best loss": 4, "train img/s": 1,
           "sample img/s": 1, "peak mem MiB": 0, "FID": 3, "best score": 3, "first step s": 1}


def find_runs(root: Path) -> list[Path]:
    """Run folders (holding config.json) at or below ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise UnetlabError(f"{root}: no such folder")
    if (root / rundir.CONFIG).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(rundir.CONFIG) if "plots" not in p.relative_to(root).parts)


def run_row(run_dir: Path) -> dict:
    """One run's row; a run without figures yet reads its metrics so far."""
    run_dir = Path(run_dir)
    state = rundir.read_state(run_dir)
    config = state.config or {}
    run = config.get("run", {})
    summary, records = state.summary, state.records
    figures = summarize(run_dir, config.get("spec", {}), run.get("framework", "?"))
    fid = summary.get("fid") if isinstance(summary.get("fid"), dict) else {}
    status = str(state.status)
    if state.status in (Status.PARTIAL, Status.RUNNING, Status.INTERRUPTED, Status.PRUNED):
        total = ((config.get("spec") or {}).get("train") or {}).get("steps")
        status += f" {state.step}/{total}" if total else ""
    if state.reason:
        status += f": {state.reason}"
    mem = summary.get("peak_mem", figures["peak_mem"])
    return {
        "ablation": run.get("ablation", run_dir.parent.name), "variant": run.get("variant", run_dir.name),
        "grid": run.get("grid_label", ""), "framework": run.get("framework"), "seed": run.get("seed"),
        "params": summary.get("params"), "GFLOPs": summary.get("gflops"),
        "steps": summary.get("step") if state.status == Status.DONE else state.step,
        "final loss": figures["final_loss"], "best loss": figures["best_loss"],
        "train img/s": figures["train_img_s"], "sample img/s": summary.get("sample_img_s"),
        "peak mem MiB": mem / 2**20 if mem else None, "FID": fid.get("value"),
        "FID protocol": protocol(fid) if fid else "", "status": status, "path": str(run_dir),
        "best score": _best_score(records, fid),
        "first step s": summary.get("first_step_s"),  # compilation included; off the time axis
        **trial_columns(run),
    }


def trial_columns(run: dict) -> dict:
    """A search trial's number and sampled values (a column per dotted key); nothing for other runs."""
    if run.get("trial") is None:
        return {}
    params = run.get("params") if isinstance(run.get("params"), dict) else {}
    return {"trial": run["trial"], **{key: _param_text(value) for key, value in params.items()}}


def _param_text(value):
    """A sampled value as a cell: numbers as they are, a block choice as ``multihead(heads=4)``."""
    if isinstance(value, dict):
        options = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '')}({options})" if options else str(value.get("name", value))
    return value


def _best_score(records: list[dict], fid: dict):
    """The lowest score of a run scored during training (eval.every), the final one included."""
    scores = [r["fid"] for r in records if r.get("fid") is not None]
    return min(scores + ([fid["value"]] if fid.get("value") is not None else [])) if scores else None


def load_table(root: Path, filters: list[str] = (), sort: str | None = None, group: bool = False) -> pd.DataFrame:
    """The table of the runs under ``root``: filtered (``key=value``), grouped over seeds, sorted."""
    runs = find_runs(root)
    if not runs:
        raise UnetlabError(f"{root}: no runs here (no run folder with a {rundir.CONFIG} at or below it)")
    rows = [run_row(r) for r in runs]
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in COLUMNS and k != "path"))
    at = COLUMNS.index("grid") + 1  # a search's trial number and sampled values follow the grid
    df = pd.DataFrame(rows, columns=COLUMNS[:at] + extra + COLUMNS[at:] + ["path"])
    for item in filters:
        df = _filter(df, item)
    return arrange(df, sort, group)


#: Columns of a benchmark results file (``unetlab bench --out``, benchmarks/results/*.json).
BENCH_COLUMNS = {"net": "net", "framework": "framework", "precision": "precision", "batch": "batch",
                 "compile": "compile", "channels_last": "channels last", "device": "device",
                 "train_img_s": "train img/s", "sample_img_s": "sample img/s", "train_tflop_s": "train TFLOP/s",
                 "peak_gib": "peak GiB", "held_gib": "held GiB", "first_step_s": "first step s", "run": "run", "error": "error"}


def load_bench_table(path: Path, filters: list[str] = ()) -> pd.DataFrame:
    """Benchmark rows from a JSON file: a list of rows, or ``{"rows": [...]}`` with metadata."""
    path = Path(path)
    data = jsonfiles.read_json(path)  # None when the file is not JSON
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UnetlabError(f"{path}: not a benchmark results file (expected a list of rows, or {{'rows': [...]}})")
    df = pd.DataFrame(rows)
    df = df[[c for c in BENCH_COLUMNS if c in df.columns]].rename(columns=BENCH_COLUMNS)
    for item in filters:
        df = _filter(df, item)
    return df


def arrange(df: pd.DataFrame, sort: str | None = None, group: bool = False) -> pd.DataFrame:
    """``df`` grouped over seeds (``group``) and sorted by column ``sort``."""
    if group:
        df = group_seeds(df)
    if sort:
        df = _sort(df, sort)
    return df.reset_index(drop=True)


_ALIASES = {"fd-small": "FID", "fd": "FID", "score": "FID", "fid/fd-small": "FID", "protocol": "FID protocol",
            "peak mem": "peak mem MiB", "memory": "peak mem MiB", "gflops": "GFLOPs"}


def _column(df: pd.DataFrame, name: str) -> str:
    name = _ALIASES.get(name.lower(), name)
    for col in df.columns:
        if col.lower() == name.lower() or col.lower().replace(" ", "_") == name.lower():
            return col
    raise UnetlabError(f"unknown column {name!r} (columns: {', '.join(c for c in df.columns if c != 'path')})")


def objective_column(name: str) -> str:
    """The numeric table column a search objective names (``final_loss``, ``fid``, ``fd_small``...)."""
    for candidate in (name, name.replace("_", "-")):
        try:
            column = _column(pd.DataFrame(columns=NUMBER_COLUMNS), candidate)
        except UnetlabError:
            continue
        return column
    raise UnetlabError(f"{name!r} is not a numeric column of the table (columns: "
                       f"{', '.join(c.lower().replace(' ', '_') for c in NUMBER_COLUMNS)}; fd_small is FID's)")


def _matches(value, wanted: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return wanted.lower() in ("", "none", "null")
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9)
    except (TypeError, ValueError):
        text = str(value)
        return text == wanted or text.split(":")[0].split(" ")[0] == wanted


def _spec_value(run_dir: str, dotted: str):
    node = (jsonfiles.read_json(Path(run_dir) / rundir.CONFIG) or {}).get("spec", {})
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _filter(df: pd.DataFrame, item: str) -> pd.DataFrame:
    """Rows whose column (or, for a dotted key like ``train.lr``, resolved spec value) matches."""
    key, sep, wanted = item.partition("=")
    key, wanted = key.strip(), wanted.strip()
    if not sep or not key:
        raise UnetlabError(f"--filter {item!r}: expected KEY=VALUE, e.g. variant=no_attn or train.lr=0.0002")
    if "." in key and key.split(".")[0] in ("model", "diffusion", "data", "train", "sample", "eval"):
        values = [_spec_value(p, key) for p in df["path"]]
    else:
        values = df[_column(df, key)]
    return df[[_matches(v, wanted) for v in values]]


def _sort(df: pd.DataFrame, name: str) -> pd.DataFrame:
    col = _column(df, name)
    key = (lambda s: s.map(_leading_number)) if df[col].dtype == object else None
    return df.sort_values(col, key=key, na_position="last", kind="stable")


def _leading_number(value):
    """The mean of ``mean ± std (n=k)`` cells (so grouped tables sort numerically)."""
    if isinstance(value, str) and ("±" in value or "(n=" in value):
        try:
            return float(value.split("±")[0].split("(n=")[0])
        except ValueError:
            return value
    return value


def group_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ablation/variant/grid/framework: ``mean ± std (n=k)`` of the numbers over seeds
    (std: sample standard deviation; n: the seeds that have the number)."""
    keys = ["ablation", "variant", "grid"] + (["trial"] if "trial" in df.columns else []) + ["framework"]
    rows = []
    for ident, part in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, ident))
        row["seeds"] = len(part)
        for col in NUMBER_COLUMNS:
            values = pd.to_numeric(part[col], errors="coerce").dropna()
            if values.empty:
                row[col] = None
            elif len(part) == 1:
                row[col] = _fmt(values.iloc[0], col)
            elif len(values) == 1:
                row[col] = f"{_fmt(values.iloc[0], col)} (n=1)"
            else:
                row[col] = f"{_fmt(values.mean(), col)} ± {_fmt(values.std(ddof=1), col)} (n={len(values)})"
        protocols = sorted(set(part["FID protocol"]) - {""})
        row["FID protocol"] = ", ".join(protocols)
        statuses = part["status"].map(lambda s: str(s).split(":")[0].split(" ")[0])
        row["status"] = ", ".join(f"{n} {s}" for s, n in statuses.value_counts().items())
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + ["seeds"] + NUMBER_COLUMNS + ["FID protocol", "status"])


def _fmt(value, col: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    digits = _DIGITS.get(col)
    if digits is None or not isinstance(value, (int, float, np.number)):
        return str(value)
    if col == "params":
        return f"{value / 1e6:.2f}M"
    if col == "GFLOPs":
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _fmt_param(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def score_header(df: pd.DataFrame) -> str:
    """``FID``, ``FD-small`` or ``FID/FD-small``: what the score column holds (never FD-small as FID)."""
    names = {p.split(" ")[0] for cell in df.get("FID protocol", []) for p in str(cell).split(", ") if p}
    return "/".join(sorted(names)) if names else "FID"


def format_table(df: pd.DataFrame, fmt: str = "terminal") -> str:
    """The table as text: terminal or markdown (tabulate), csv or latex (pandas)."""
    df = df.drop(columns=["path"], errors="ignore")
    header = score_header(df)
    if fmt == "csv":
        return df.rename(columns={"FID": header, "FID protocol": "protocol"}).to_csv(index=False)
    shown = df.copy()
    for col in shown.columns:
        if col in _DIGITS:
            shown[col] = [v if isinstance(v, str) else _fmt(v, col) for v in shown[col]]
        elif col == "trial" or "." in col:  # a search's trial number and sampled values
            shown[col] = [_fmt_param(v) for v in shown[col]]
    shown = shown.fillna("").rename(columns={"FID": header, "FID protocol": "protocol"})
    if fmt in ("terminal", "markdown"):
        keep = [c for c in shown.columns if c in ("variant", "status") or (shown[c].astype(str) != "").any()]
        if "ablation" in keep and shown["ablation"].nunique() == 1:
            keep.remove("ablation")
        from tabulate import tabulate
        return tabulate(shown[keep], headers="keys", showindex=False, disable_numparse=True,
                        tablefmt="simple" if fmt == "terminal" else "github")
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    raise UnetlabError(f"unknown format {fmt!r} (formats: terminal, markdown, csv, latex)")
