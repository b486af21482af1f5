"""A run's lock: one writer per run folder, on this host and across hosts.

On this host the lock is an ``flock`` of ``.lock``; across hosts (a runs folder on shared storage)
it is the holder record in that file (host, pids, command, generation) plus its heartbeat (the
file's mtime): a holder on another host holds the run while its heartbeat is fresh, and the record
is checked and rewritten under an exclusive mutex (``.lock.taking/``).  A sweep holds the lock and
passes it to its worker (``UNETLAB_LOCK_FD``); a worker whose sweep died is an orphan.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnetlabError
from ..files import remove_stale_temps, try_flock, unflock
from .layout import CONFIG, CONFIG_DIGEST, EMA, GRID, LAST, METRICS, SUMMARY

LOCK, TAKING = ".lock", ".lock.taking"
#: Environment variable naming the lock's file descriptor a worker inherits from its sweep.
LOCK_FD_ENV = "UNETLAB_LOCK_FD"
#: Environment variable: seconds after which a holder on another host whose heartbeat stopped
#: is taken to be dead (its run may then be taken over); default :data:`STALE_AFTER_S`.
STALE_ENV = "UNETLAB_STALE_AFTER_S"
STALE_AFTER_S = 300.0
#: Environment variable: seconds a worker started by a cluster task waits for the run's lock (e.g.
#: until the heartbeat of the task's previous incarnation, on a node that died, goes stale).
LOCK_WAIT_ENV = "UNETLAB_LOCK_WAIT_S"


class RunBusy(UnetlabError):
    """Another process holds the run's lock."""



def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



def command_name() -> str:
    """How this process was started, for lock files and events (e.g. ``unetlab train``)."""
    argv = [os.path.basename(a) for a in sys.argv[:2]]
    if argv and argv[0] in ("unetlab", "cli.py", "__main__.py") and len(argv) > 1:
        return f"unetlab {argv[1]}"
    return " ".join(argv) or "python"



@dataclass
class RunLock:
    """The held lock of one run folder (an open, ``flock``-ed ``.lock`` file)."""

    run_dir: Path
    file: object
    command: str
    depth: int = 1
    owned: bool = True  # False: inherited from a sweep, released by it
    generation: int = 0
    _beating: object = None  # threading.Event that stops the heartbeat thread

    def note(self, pids: list[int]) -> None:
        """Record who holds the lock (this host, ``pids``, the command, the generation) for other
        processes, on this host or another, to read; no pids: released."""
        f = self.file
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pids": list(pids), "command": self.command,
                            "gen": self.generation}) + "\n")
        f.flush()

    def start_heartbeat(self, every_s: float | None = None) -> None:
        """Touch the lock file every ``every_s`` seconds while held, so that other hosts see a
        live holder (a stale heartbeat lets them take the run over)."""
        every_s = every_s or max(0.2, min(30.0, stale_after_s() / 5))
        self._beating = stop = threading.Event()
        path = self.run_dir / LOCK

        def beat():
            while not stop.wait(every_s):
                with contextlib.suppress(OSError):
                    os.utime(path)

        threading.Thread(target=beat, name=f"heartbeat {self.run_dir.name}", daemon=True).start()

    def release(self) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        _held.pop(_key(self.run_dir), None)
        if self._beating is not None:
            self._beating.set()
        if self.owned:
            self.note([])
            unflock(self.file)

    def fileno(self) -> int:
        return self.file.fileno()



_held: dict[str, RunLock] = {}



def _key(run_dir: Path) -> str:
    return str(Path(run_dir).resolve())



def stale_after_s() -> float:
    """Seconds without a heartbeat after which another host's holder counts as dead."""
    text = os.environ.get(STALE_ENV, "")
    try:
        return float(text) if text else STALE_AFTER_S
    except ValueError:
        raise UnetlabError(f"{STALE_ENV}: expected seconds, got {text!r}") from None



def heartbeat_age(run_dir: Path) -> float | None:
    """Seconds since the lock file's holder last showed life (None: no lock file)."""
    try:
        return max(0.0, time.time() - (Path(run_dir) / LOCK).stat().st_mtime)
    except OSError:
        return None



def _held_elsewhere(info: dict | None, run_dir: Path) -> bool:
    """Whether ``info`` names a holder on another host whose heartbeat is fresh."""
    if not info or not info.get("pids") or info.get("host") == socket.gethostname():
        return False
    age = heartbeat_age(run_dir)
    return age is not None and age < stale_after_s()



@contextlib.contextmanager
def _taking(run_dir: Path):
    """Yield True while this process alone, on any host, reads and rewrites the holder record.

    The mutex is a folder created exclusively (atomic on local disks and on NFS), held for the
    few milliseconds of one check-and-write and removed after, so of two processes taking over the
    same stale holder at once one wins and the other then sees the winner's fresh record.  A
    mutex left by a process killed in those milliseconds is cleared after a minute.
    """
    mutex = run_dir / TAKING
    try:
        mutex.mkdir()
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - mutex.stat().st_mtime > 60:
                mutex.rmdir()
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            mutex.rmdir()



def try_lock(run_dir: Path, command: str | None = None) -> RunLock | None:
    """The run's lock, taken without waiting (re-entrant in one process); None when another holds it.

    On this host the lock is an ``flock``; across hosts (a runs folder on shared storage) it is
    the holder record plus its heartbeat: a holder on another host holds the run while its
    heartbeat is fresh (see :func:`stale_after_s`), and the record is checked and rewritten
    under an exclusive mutex (:func:`_taking`), so only one process ever wins it.
    Taking it removes temporary files that a process killed while writing left behind.
    """
    run_dir = Path(run_dir)
    held = _held.get(_key(run_dir))
    if held is not None:
        held.depth += 1
        return held
    run_dir.mkdir(parents=True, exist_ok=True)
    existed = (run_dir / LOCK).is_file()
    f = try_flock(run_dir / LOCK)
    if f is None:
        return None
    with _taking(run_dir) as alone:
        info = _record(run_dir) if alone else None
        torn = existed and info is None and (heartbeat_age(run_dir) or 0.0) < 5.0  # mid-write elsewhere
        if not alone or torn or _held_elsewhere(info, run_dir):
            unflock(f)
            return None
        lock = RunLock(run_dir, f, command or command_name(), generation=(info or {}).get("gen", 0) + 1)
        lock.note([os.getpid()])
    lock.start_heartbeat()
    _held[_key(run_dir)] = lock
    remove_stale_temps(run_dir, [CONFIG, CONFIG_DIGEST, METRICS, SUMMARY, GRID])
    remove_stale_temps(run_dir / "checkpoints", [Path(LAST).name, Path(EMA).name])
    return lock



def adopt_lock(run_dir: Path, fd: int, command: str | None = None) -> RunLock:
    """Use the lock a sweep holds for this process (its inherited descriptor ``fd``)."""
    lock = RunLock(Path(run_dir), os.fdopen(fd, "a+", closefd=False), command or command_name(), owned=False)
    _held[_key(run_dir)] = lock
    return lock



def _record(run_dir: Path) -> dict | None:
    """The lock file's record as written (pids empty once released), None when there is none."""
    try:
        text = (Path(run_dir) / LOCK).read_text().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        info = json.loads(text)
        if isinstance(info, dict) and isinstance(info.get("pids"), list):
            return info
    except ValueError:
        pass
    try:  # older lock files: the pids only
        return {"host": socket.gethostname(), "pids": [int(p) for p in text.split()], "command": "?"}
    except ValueError:
        return None



def holder(run_dir: Path) -> dict | None:
    """Who the run's lock file names: ``{"host", "pids", "command", "gen"}``, or None when nobody."""
    info = _record(run_dir)
    return info if info and info.get("pids") else None



def holders(run_dir: Path) -> list[int]:
    """Live processes (on this host) named in the run's lock file; empty when nobody runs it."""
    info = holder(run_dir)
    if not info:
        return []
    if info.get("host") != socket.gethostname():  # another host's processes: alive while they beat
        return list(info["pids"]) if _held_elsewhere(info, run_dir) else []
    return [p for p in info["pids"] if _alive(p)]



def held_by(run_dir: Path) -> str:
    """``host:pid`` of the process that holds the run (the last pid: the worker), '' when none."""
    info = holder(run_dir)
    live = holders(run_dir)
    return f"{info['host']}:{live[-1]}" if info and live else ""



def describe_holder(run_dir: Path) -> str:
    """``unetlab train (pid 123 on host h)``: who holds the lock, in words."""
    info = holder(run_dir) or {}
    pids = info.get("pids") or []
    return (f"{info.get('command', '?')} (pid {' '.join(map(str, pids)) or '?'} "
            f"on host {info.get('host', '?')})")



def orphaned(run_dir: Path) -> bool:
    """Whether the lock is held by a worker whose sweep (the first pid) died on this host."""
    info = holder(run_dir)
    if not info or info.get("host") != socket.gethostname() or len(info["pids"]) < 2:
        return False
    first, rest = info["pids"][0], info["pids"][1:]
    return not _alive(first) and any(_alive(p) for p in rest)



def lock(run_dir: Path, command: str | None = None, wait_s: float = 0.0) -> RunLock:
    """The run's lock, waiting up to ``wait_s`` seconds; :class:`RunBusy` (one line) if still held."""
    deadline = time.monotonic() + wait_s
    while True:
        held = try_lock(run_dir, command)
        if held is not None:
            return held
        if time.monotonic() >= deadline:
            raise RunBusy(f"{run_dir}: in use by {describe_holder(run_dir)}; "
                          f"wait for it to end, or use another run folder")
        time.sleep(0.1)



@contextlib.contextmanager
def hold(run_dir: Path, command: str | None = None, wait_s: float = 0.0):
    """Hold the run's lock for the ``with`` block (re-entrant; inherited locks count as held)."""
    held = lock(run_dir, command, wait_s)
    try:
        yield held
    finally:
        held.release()
