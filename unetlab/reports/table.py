"""The results table: one row per run folder (or per group of seeds), as a pandas DataFrame.

Rows come from each run's config.json, summary.json and metrics.jsonl, so running,
interrupted and failed runs show what they have so far.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UnetlabError
from ..metrics.fid import protocol
from ..run import jsonfiles, rundir
from ..run.rundir import Status
from ..run.trainer import summarize
from ..spec.loading import parse_yaml
from ..stats.inference import mean_ci

#: The first part of a ``--filter`` key that is a path into each run's spec.
SPEC_SECTIONS = ("model", "diffusion", "data", "train", "sample", "eval", "resources")
ID_COLUMNS = ["ablation", "variant", "grid", "framework", "seed"]
NUMBER_COLUMNS = ["params", "GFLOPs", "steps", "final loss", "best loss", "train img/s", "sample img/s",
                  "peak mem MiB", "FID", "FID se", "KID", "KID se", "precision", "recall", "density", "coverage",
                  "best score", "first step s"]
COLUMNS = ID_COLUMNS + NUMBER_COLUMNS + ["FID protocol", "status"]
_DIGITS = {"params": 0, "GFLOPs": 3, "steps": 0, "final loss": 4, "best loss": 4, "train img/s": 1,
           "sample img/s": 1, "peak mem MiB": 0, "FID": 3, "FID se": 3, "KID": 4, "KID se": 4, "precision": 3,
           "recall": 3, "density": 3, "coverage": 3, "best score": 3, "first step s": 1}


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
        "peak mem MiB": mem / 2**20 if mem else None, "FID": fid.get("value"), "FID se": fid.get("se"),
        "FID protocol": protocol(fid) if fid else "", "status": status, "path": str(run_dir),
        "best score": _best_score(records, fid),
        "first step s": summary.get("first_step_s"),  # compilation included; off the time axis
        **score_columns(fid),
        **trial_columns(run),
    }


def score_columns(fid: dict) -> dict:
    """The score's bootstrap SE and the extra metrics of a run's score record (None when absent)."""
    metrics = fid.get("metrics") if isinstance(fid.get("metrics"), dict) else {}

    def entry(name: str, key: str = "value"):
        return (metrics.get(name) or {}).get(key) if isinstance(metrics.get(name), dict) else None

    return {"FID se": fid.get("se"), "KID": entry("kid"), "KID se": entry("kid", "se"),
            **{name: entry(name) for name in ("precision", "recall", "density", "coverage")}}


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
    if filters and df.empty:
        raise UnetlabError(f"no run matches --filter {' --filter '.join(filters)} (of {len(rows)} run(s) "
                           f"under {root})")
    return arrange(df, sort, group)


#: Columns of a benchmark results file (``unetlab bench --out``, benchmarks/results/*.json).
BENCH_COLUMNS = {"date": "date", "net": "net", "framework": "framework", "precision": "precision", "batch": "batch",
                 "compile": "compile", "channels_last": "channels last", "conv": "conv", "device": "device",
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


_ALIASES = {"fd-small": "FID", "fd-digits": "FID", "fd-shapes": "FID", "fd": "FID", "score": "FID",
            "fid/fd-small": "FID", "protocol": "FID protocol",
            "peak mem": "peak mem MiB", "memory": "peak mem MiB", "gflops": "GFLOPs"}


def _column(df: pd.DataFrame, name: str) -> str:
    name = _ALIASES.get(name.lower(), name)
    for wanted in (name, f"{name} mean"):  # a grouped table holds '<col> mean'
        for col in df.columns:
            if col.lower() == wanted.lower() or col.lower().replace(" ", "_") == wanted.lower().replace(" ", "_"):
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


def _matches(value, wanted) -> bool:
    """Whether a cell or spec value equals ``wanted`` (a YAML value: ``false``, ``1e-3``, ``[8]``, text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return wanted is None or (isinstance(wanted, str) and wanted.lower() in ("", "none", "null"))
    if isinstance(wanted, bool) or isinstance(value, (bool, np.bool_)):
        return isinstance(wanted, bool) and isinstance(value, (bool, np.bool_)) and bool(value) == wanted
    if isinstance(wanted, (int, float)):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(wanted, (list, dict)):
        return json.loads(json.dumps(value, default=list)) == wanted
    text, wanted = str(value), str(wanted)
    return text == wanted or text.split(":")[0].split(" ")[0] == wanted


def filter_value(text: str):
    """``--filter``'s VALUE read as YAML (``false``, ``1e-3``, ``[8]``), else as the text itself."""
    text = text.strip()
    try:
        value = parse_yaml(text) if text else ""
    except UnetlabError:
        return text
    if isinstance(value, bool) and text.lower() not in ("true", "false"):
        return text  # YAML 1.1's yes/no/on/off: a variant called "no" is meant
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 as text; a number is meant
            return float(text)
        except ValueError:
            return value
    return value


_MISSING = object()


def _spec_value(run_dir: str, dotted: str):
    node = (jsonfiles.read_json(Path(run_dir) / rundir.CONFIG) or {}).get("spec", {})
    for key in dotted.split("."):
        node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
    return node


def _filter(df: pd.DataFrame, item: str) -> pd.DataFrame:
    """Rows whose column (or, for a dotted key like ``train.lr``, resolved spec value) matches."""
    key, sep, wanted = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UnetlabError(f"--filter {item!r}: expected KEY=VALUE, e.g. variant=no_attn or train.lr=0.0002")
    text, wanted = wanted.strip(), filter_value(wanted)
    if "." in key and key.split(".")[0] in SPEC_SECTIONS and "path" in df.columns:
        values = [_spec_value(p, key) for p in df["path"]]
        if values and all(v is _MISSING for v in values):
            raise UnetlabError(f"--filter {item!r}: {key} is not a key of these runs' specs "
                               f"(e.g. train.lr, model.mid_attention, model.blocks.attention.name)")
        values = [None if v is _MISSING else v for v in values]
    else:
        try:
            values = df[_column(df, key)]
        except UnetlabError as exc:
            raise UnetlabError(f"--filter {item!r}: {key!r} is neither a column nor a spec path "
                               f"(SECTION.KEY, SECTION one of {', '.join(SPEC_SECTIONS)}); "
                               f"{str(exc).split('(', 1)[-1].rstrip(')')}") from None
    return df[[_matches(v, wanted) or (isinstance(v, str) and _matches(v, text)) for v in values]]


def _sort(df: pd.DataFrame, name: str) -> pd.DataFrame:
    col = _column(df, name)
    key = (lambda s: s.map(_leading_number)) if df[col].dtype == object else None
    return df.sort_values(col, key=key, na_position="last", kind="stable")


def _leading_number(value):
    """The mean of ``mean [lo, hi] n=k`` cells (so tables of such cells sort numerically)."""
    if isinstance(value, str) and " n=" in value:
        try:
            return float(value.split("[")[0].split(" n=")[0])
        except ValueError:
            return value
    return value


#: the numbers of a grouped table, for each column ``<col> mean`` etc. (see :func:`group_seeds`)
GROUP_STATS = ("mean", "ci_low", "ci_high", "n")


def group_seeds(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per ablation/variant/grid/framework, and for each number over its seeds the columns
    ``<col> mean``, ``<col> ci_low``, ``<col> ci_high`` (Student-t ``level`` interval; empty for
    one seed) and ``<col> n`` (the seeds that have the number)."""
    keys = ["ablation", "variant", "grid"] + (["trial"] if "trial" in df.columns else []) + ["framework"]
    numbers = NUMBER_COLUMNS
    rows = []
    for ident, part in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, ident))
        row["seeds"] = len(part)
        for col in numbers:
            ci = mean_ci(pd.to_numeric(part[col], errors="coerce").dropna(), level)
            row.update({f"{col} {name}": value for name, value in zip(GROUP_STATS, ci)})
        protocols = sorted(set(part["FID protocol"]) - {""})
        row["FID protocol"] = ", ".join(protocols)
        statuses = part["status"].map(lambda s: str(s).split(":")[0].split(" ")[0])
        row["status"] = ", ".join(f"{n} {s}" for s, n in statuses.value_counts().items())
        rows.append(row)
    stats = [f"{col} {name}" for col in numbers for name in GROUP_STATS]
    return pd.DataFrame(rows, columns=keys + ["seeds"] + stats + ["FID protocol", "status"])


def grouped_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A grouped table's numbers as one text column each: ``mean [ci_low, ci_high] n=k``."""
    out = df.copy()
    for col in [c[:-len(" mean")] for c in df.columns if c.endswith(" mean")]:
        parts = [f"{col} {name}" for name in GROUP_STATS]
        if not all(p in df.columns for p in parts):
            continue
        at = list(out.columns).index(parts[0])
        cells = [_ci_cell(*values, col) for values in df[parts].itertuples(index=False)]
        out = out.drop(columns=parts)
        out.insert(at, col, cells)
    return out


def _ci_cell(mean, low, high, n, col: str) -> str:
    if n is None or pd.isna(n) or n == 0:
        return ""
    text = _fmt(mean, col)
    if pd.notna(low) and low != high:  # no interval for a number all seeds share
        text += f" [{_fmt(low, col)}, {_fmt(high, col)}]"
    return f"{text} n={int(n)}"


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


def _score_names(columns, header: str) -> dict:
    """Column renames that show the score's real name (``FID se`` -> ``FD-small se`` ...)."""
    names = {"FID protocol": "protocol"}
    for col in columns:
        if col == "FID" or col.startswith("FID "):
            names[col] = header + col[len("FID"):]
    names["FID protocol"] = "protocol"
    return names


def format_table(df: pd.DataFrame, fmt: str = "terminal") -> str:
    """The table as text: terminal or markdown (tabulate), csv, json (records) or latex (pandas).
    A grouped table's csv and json keep ``<col> mean/ci_low/ci_high/n`` as separate numbers;
    the other formats show ``mean [lo, hi] n=k``."""
    df = df.drop(columns=["path"], errors="ignore")
    header = score_header(df)
    if fmt == "csv":
        return df.rename(columns=_score_names(df.columns, header)).to_csv(index=False)
    if fmt == "json":
        return df.rename(columns=_score_names(df.columns, header)).to_json(orient="records", indent=1) + "\n"
    shown = grouped_cells(df)
    for col in shown.columns:
        if col in _DIGITS:
            shown[col] = [v if isinstance(v, str) else _fmt(v, col) for v in shown[col]]
        elif col.endswith(" n") or col == "seeds":
            shown[col] = [_fmt_param(v) for v in shown[col]]
        elif col == "trial" or "." in col:  # a search's trial number and sampled values
            shown[col] = [_fmt_param(v) for v in shown[col]]
    shown = shown.fillna("").rename(columns=_score_names(shown.columns, header))
    if fmt in ("terminal", "markdown"):
        keep = [c for c in shown.columns if c in ("variant", "status") or (shown[c].astype(str) != "").any()]
        if "ablation" in keep and shown["ablation"].nunique() == 1:
            keep.remove("ablation")
        from tabulate import tabulate
        return tabulate(shown[keep], headers="keys", showindex=False, disable_numparse=True,
                        tablefmt="simple" if fmt == "terminal" else "github")
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    raise UnetlabError(f"unknown format {fmt!r} (formats: terminal, markdown, csv, json, latex)")
