"""Small JSON and JSON-lines file helpers: atomic writes, reads that tolerate a missing file or a
line torn by a kill, appends flushed to disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes
from ..readers import read_records


def write_json(path: Path, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())



def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")



def read_json(path: Path, default=None):
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError:
        return default



def read_jsonl(path: Path) -> list[dict]:
    """Records (JSON objects) of a JSON-lines file; a torn line (from a kill mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().decode("utf8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out



def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append records (one JSON line each), flushed to disk."""
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())



#: Fields of a metrics record that hold a number (or null).
METRIC_NUMBERS = ("step", "loss", "trailing_loss", "lr", "grad_norm", "step_time", "img_s", "peak_mem",
                  "elapsed", "fid")


def read_metrics(path: Path) -> list[dict]:
    """A run's metrics records; a torn last line (a kill mid-write) is left out, and any other
    damage -- a broken line, a loss that is not a number -- is a one-line error naming the line."""
    return read_records(path, METRIC_NUMBERS)


def keep_records_until(path: Path, step: int) -> None:
    """Drop metric records after ``step`` (they will be recomputed by a resumed run), and a torn
    last line left by a kill."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_bytes(Path(path), "".join(json.dumps(r) + "\n" for r in kept).encode())
