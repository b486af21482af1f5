"""Writing files safely: atomic replacement with ordinary permissions, and ``flock`` locks.

Every file unetlab writes goes through :func:`atomic_write_bytes` (or :func:`atomic_write_text`):
the data lands in a hidden temporary file ``.NAME.XXXX`` beside the target, is flushed to disk
and renamed over it, so a reader or a kill never sees half a file.  The file gets the mode an
ordinary ``open()`` would give it (0666 less the umask, so usually 0644), not ``mkstemp``'s 0600.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path


def temp_prefix(path: Path) -> str:
    """The name prefix of the temporary files written on the way to ``path``."""
    return f".{Path(path).name}."


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one step (readers see the old or the new file, never a part)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk says which file it could not write
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf8"))


@contextlib.contextmanager
def atomic_dir(target: Path):
    """Build a folder in a temporary sibling (yielded) and rename it to ``target`` at the end.

    If another process created ``target`` meanwhile, its copy stays and this one is dropped.
    """
    import shutil

    target = Path(target)
    tmp = target.with_name(f"{temp_prefix(target)}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its folder is equivalent
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(folder: Path, names) -> list[Path]:
    """Delete temporary files left in ``folder`` by writes of ``names`` that were killed midway.

    Only safe while no other process writes these files (e.g. under the folder's lock).
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    prefixes = tuple(temp_prefix(n) for n in names)
    for p in folder.iterdir():
        if p.name.startswith(prefixes) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def try_flock(path: Path, mode: str = "a+"):
    """``path`` opened and exclusively ``flock``-ed without waiting; None when another process holds it."""
    f = open(path, mode)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def unflock(f) -> None:
    """Release and close a file from :func:`try_flock` or :func:`flocked`."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


@contextlib.contextmanager
def flocked(path: Path, mode: str = "a+"):
    """Hold an exclusive ``flock`` on ``path`` (waiting for it) for the ``with`` block."""
    f = open(path, mode)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield f
    finally:
        unflock(f)
