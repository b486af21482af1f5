"""The run folder: resolved config, metrics, summary, checkpoints and samples.

Layout (every write is atomic: a temporary file renamed into place)::

    config.json          the resolved spec plus the run's identity (framework, seed, ...)
    metrics.jsonl        one JSON record per logged step
    summary.json         status (running | partial | done | failed | interrupted), reason, figures
    checkpoints/last.npz model, EMA and optimizer state at the last checkpoint (resumable)
    checkpoints/ema.npz  EMA weights at the end (framework-neutral: loads in either framework)
    samples.png          a grid of samples from the EMA weights
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
LAST, EMA, GRID = "checkpoints/last.npz", "checkpoints/ema.npz", "samples.png"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk says which file it could not write
        raise


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
    """Records of a JSON-lines file; a torn last line (from a kill mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def append_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r, default=_jsonable) + "\n")
        f.flush()
        os.fsync(f.fileno())


def keep_records_until(path: Path, step: int) -> None:
    """Drop metric records after ``step`` (they will be recomputed by a resumed run)."""
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_bytes(Path(path), "".join(json.dumps(r) + "\n" for r in kept).encode())


def save_arrays(path: Path, arrays: dict) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict:
    """The arrays of an ``.npz`` checkpoint; a missing, unreadable, truncated or corrupt file is a
    one-line error naming it and the other checkpoints beside it."""
    from .weights import load_checkpoint

    return load_checkpoint(path)


def split_prefix(arrays: dict, prefix: str) -> dict:
    """``{name: array}`` for the keys ``prefix/name``."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def with_prefix(prefix: str, arrays: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}
