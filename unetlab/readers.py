"""Reading the files a run leaves -- JSON, JSON lines, ``.npz`` -- with one-line errors.

Every reader here names the file and what is wrong with it (missing, unreadable, truncated, not
JSON, a field of the wrong type), as a :class:`~unetlab.errors.UnetlabError`, so that a damaged
file never surfaces as a traceback from json, zipfile or numpy.
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import UnetlabError


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UnetlabError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UnetlabError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise UnetlabError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def read_json(path, what: str = "JSON file", expect: type | None = dict) -> Any:
    """The JSON value in ``path`` (a mapping unless ``expect`` says otherwise)."""
    path = Path(path)
    data = _read_bytes(path, what)
    try:
        value = json.loads(data.decode("utf8"))
    except UnicodeDecodeError:
        raise UnetlabError(f"{path}: the {what} is not UTF-8 text") from None
    except ValueError as exc:
        raise UnetlabError(f"{path}: the {what} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if expect is not None and not isinstance(value, expect):
        raise UnetlabError(f"{path}: the {what} holds {type(value).__name__}, not a JSON "
                           f"{'object' if expect is dict else expect.__name__}")
    return value


def read_run_config(run_dir) -> dict:
    """A run folder's ``config.json``, which must hold a ``spec`` and a ``run`` mapping."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise UnetlabError(f"{run_dir}: not a run folder (no config.json)")
    config = read_json(path, "run config")
    for key in ("spec", "run"):
        if not isinstance(config.get(key), dict):
            raise UnetlabError(f"{path}: not a run config (its '{key}' mapping is missing); "
                               f"the file was edited or written by something else")
    return config


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_record_numbers(record: dict, numbers, where: str) -> dict:
    """``record`` when each of its ``numbers`` fields is a number or null, else a one-line error."""
    for key in numbers:
        value = record.get(key)
        if value is not None and not (_is_number(value) and not (isinstance(value, float) and math.isnan(value))):
            raise UnetlabError(f"{where}: {key} is {value!r}, not a number")
    return record


def read_records(path, numbers=(), torn_ok: bool = True) -> list[dict]:
    """The JSON objects of a JSON-lines file, one a line (none when the file is missing).

    The last line may be torn (a kill mid-write) and is then left out; a torn or non-object line
    elsewhere, or a ``numbers`` field that is neither a number nor null, is an error naming the
    file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = _read_bytes(path, "JSON-lines file").decode("utf8", errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {i}"
        try:
            record = json.loads(line)
        except ValueError:
            if torn_ok and i == len(lines):
                break
            raise UnetlabError(f"{where}: not a JSON record (a damaged line)") from None
        if not isinstance(record, dict):
            raise UnetlabError(f"{where}: not a JSON object, got {type(record).__name__}")
        out.append(check_record_numbers(record, numbers, where))
    return out


def read_npz(path, what: str = "archive", hint: Callable[[Path], str] = lambda p: "") -> dict:
    """``{name: array}`` of an ``.npz`` file, read completely; a missing, unreadable, truncated or
    corrupt file is a one-line error naming it (``hint(path)`` is appended, e.g. alternatives)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single array, not an .npz archive")
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UnetlabError(f"{path}: no such {what}") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise UnetlabError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, KeyError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickled" in detail:  # numpy's word for "neither an .npz nor an .npy file"
            detail = "not an .npz archive"
        raise UnetlabError(f"{path}: truncated or corrupt {what} ({detail}){hint(path)}") from None


def read_npz_array(path, key: str, what: str = "archive") -> np.ndarray:
    """One named array of an ``.npz`` file (its absence is an error naming the file and the key)."""
    arrays = read_npz(path, what)
    if key not in arrays:
        raise UnetlabError(f"{path}: the {what} has no '{key}' array (it has: {', '.join(arrays) or 'none'})")
    return arrays[key]
