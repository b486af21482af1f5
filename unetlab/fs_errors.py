"""File-system problems as one-line errors: a read-only folder, a full disk, an unreadable file."""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UnetlabError

_HINTS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
}


def describe_os_error(exc: OSError) -> str:
    """``PATH: what went wrong`` for an OSError, in one line."""
    what = _HINTS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what += " (free some space and rerun)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what += " (the folder is not writable here)" if paths else ""
    return f"{' -> '.join(paths)}: {what}" if paths else what


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and make sure files can be written in it -- before any work
    whose result would be lost; otherwise a one-line error naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".unetlab-probe-"):
            pass
    except OSError as exc:
        if exc.filename and Path(exc.filename).name.startswith(".unetlab-probe-"):
            exc.filename = str(folder)  # name the folder, not the probe file
        raise UnetlabError(f"{what} {describe_os_error(exc)}") from None
    return folder


@contextmanager
def naming(path: str | os.PathLike):
    """An OSError raised inside (a full disk while writing, say) names ``path`` if it named nothing."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
