"""A run's checkpoints: ``.npz`` arrays written atomically and read back completely, with a
one-line error naming a missing or corrupt file, and the weights a run folder offers to sample from."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..files import atomic_write_bytes
from ..readers import read_npz
from ..weights import check_finite
from .layout import EMA, LAST
from .rundir import Status, run_status


def save_arrays(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())



def load_arrays(path: Path) -> dict:
    """The arrays of an ``.npz`` checkpoint, read completely; a missing, unreadable, truncated or
    corrupt file is a one-line error naming it and the other checkpoints beside it."""
    return read_npz(path, "checkpoint", _other_checkpoints)


def split_prefix(arrays: dict, prefix: str) -> dict:
    """``{name: array}`` for the keys ``prefix/name``."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}



def with_prefix(prefix: str, arrays: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def _other_checkpoints(path: Path) -> str:
    """``; other checkpoints here: ...`` naming the readable-looking siblings of ``path``."""
    try:
        others = sorted((p for p in path.parent.glob("*.npz") if p != path and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return ""
    if not others:
        return "; no other checkpoint in its folder"
    return "; other checkpoints here (newest first): " + ", ".join(str(p) for p in others)


def run_weights(run_dir, ema: bool = True) -> tuple:
    """``(path, arrays)``: the weights of a run folder to sample from.

    ``ema``: the final EMA weights (``checkpoints/ema.npz``; a done run without it is refused),
    else the EMA inside the resumable checkpoint of a run still training; otherwise the model's
    own last weights.  Weights holding NaN or infinity are refused, naming the tensor.
    """
    run_dir = Path(run_dir)
    if ema and (run_dir / EMA).is_file():
        return run_dir / EMA, check_finite(load_arrays(run_dir / EMA), run_dir / EMA)
    if ema and run_status(run_dir) == Status.DONE:
        raise UnetlabError(f"{run_dir / EMA}: missing, though the run is done (it holds the final EMA "
                           f"weights); sample the last training weights explicitly with --no-ema")
    path = run_dir / LAST
    if not path.is_file():
        wanted = f"{EMA} and {LAST}" if ema else LAST
        raise UnetlabError(f"{run_dir}: no weights yet ({wanted} missing)")
    return path, check_finite(split_prefix(load_arrays(path), "ema" if ema else "model"), path)
