"""The run folder: its files, its lock, its status and every write of its summary.

Layout (every write is atomic: a temporary file renamed into place, see :mod:`unetlab.files`)::

    config.json          the resolved spec plus the run's identity (framework, seed, ...)
    .config.sha256       digest of config.json as written (a later hand edit shows as ``changed``)
    metrics.jsonl        one JSON record per logged step
    summary.json         status, reason, figures (written only by :func:`write_summary`)
    events.jsonl         refused or failed reruns of a finished run, one record each
    checkpoints/last.npz model, EMA and optimizer state at the last checkpoint (resumable)
    checkpoints/ema.npz  EMA weights at the end (framework-neutral: loads in either framework)
    samples.png          a grid of samples from the EMA weights
    .lock                flock-ed by the one process that writes the run (host, pids, command,
                         generation); its mtime is the holder's heartbeat
    .lock.taking/        exists only while a process takes the lock (a cross-host mutex)
    stop-request         written by a search to prune the run: the trainer stops at its next log step

This module owns a run's life: :func:`hold` takes the lock (``train``, ``sample``, ``fid``
and sweeps all do), :func:`read_state` says what the run is (one :class:`Status`) and
:func:`write_summary` never turns a finished run into an unfinished one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..files import atomic_write_bytes, remove_stale_temps, try_flock, unflock  # noqa: F401 (re-exported)

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"
LAST, EMA, GRID = "checkpoints/last.npz", "checkpoints/ema.npz", "samples.png"
EVENTS, LOCK, CONFIG_DIGEST = "events.jsonl", ".lock", ".config.sha256"
#: A file whose presence asks the trainer to stop at its next log step, checkpointed, as ``pruned``
#: (a search writes it; its text is the reason).
STOP_REQUEST = "stop-request"
#: Environment variable naming the lock's file descriptor a worker inherits from its sweep.
LOCK_FD_ENV = "UNETLAB_LOCK_FD"
TAKING = ".lock.taking"
#: Environment variable: seconds after which a holder on another host whose heartbeat stopped
#: is taken to be dead (its run may then be taken over); default :data:`STALE_AFTER_S`.
STALE_ENV = "UNETLAB_STALE_AFTER_S"
STALE_AFTER_S = 300.0

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
    from ..weights import load_checkpoint

    return load_checkpoint(path)


def split_prefix(arrays: dict, prefix: str) -> dict:
    """``{name: array}`` for the keys ``prefix/name``."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def with_prefix(prefix: str, arrays: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


# -- the config --------------------------------------------------------------------------------

class ConfigChanged(UnetlabError):
    """The run folder holds a run with another config."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_config(run_dir: Path, config: dict) -> None:
    """Write the run's ``config.json`` and the digest that later tells a hand edit."""
    data = (json.dumps(config, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()
    # the digest first: a kill between the two leaves no config, so both are written again
    atomic_write_bytes(Path(run_dir) / CONFIG_DIGEST, (_digest(data) + "\n").encode())
    atomic_write_bytes(Path(run_dir) / CONFIG, data)


def claim_config(run_dir: Path, config: dict) -> None:
    """Write ``config`` into a new run folder; raise :class:`ConfigChanged` if it holds another run."""
    from ..spec.run import configs_match

    state = read_state(run_dir)
    if state.status in (Status.CORRUPT, Status.CHANGED):
        raise ConfigChanged(f"{run_dir}: {state.reason}; use another run folder or delete this one")
    if state.config is None:
        write_config(run_dir, config)
    elif not configs_match(state.config, config):
        raise ConfigChanged(f"{run_dir}: holds a run with a different config; "
                            f"use another run folder or delete this one")


# -- the lock ----------------------------------------------------------------------------------

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
        import threading

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


# -- the status --------------------------------------------------------------------------------

class Status(str, Enum):
    """What a run folder holds."""

    NEW = "new"                  # nothing yet
    RUNNING = "running"          # its lock is held by a live process
    PARTIAL = "partial"          # started, stopped before its budget; resumable
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM (checkpointed); resumable
    FAILED = "failed"            # a failure is recorded (reason in the summary)
    DONE = "done"                # trained and evaluated
    PRUNED = "pruned"            # stopped early by a search's pruner (checkpointed; final like done)
    CHANGED = "changed"          # config.json differs from the run's (edited by hand, or the ablation changed)
    CORRUPT = "corrupt"          # config.json is unreadable

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


#: Statuses a sweep runs (or resumes).
RUNNABLE = (Status.NEW, Status.PARTIAL, Status.INTERRUPTED, Status.FAILED)


@dataclass
class RunState:
    """A run folder read once: its status, the reason when there is one, and its files' contents."""

    status: Status
    reason: str = ""
    step: int = 0
    summary: dict = field(default_factory=dict)
    config: dict | None = None
    records: list = field(default_factory=list)


def _read_config(run_dir: Path) -> tuple[dict | None, str]:
    path = run_dir / CONFIG
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"{CONFIG}: unreadable ({exc.strerror})"
    try:
        config = json.loads(data.decode("utf8"))
    except ValueError as exc:
        return None, f"{CONFIG}: not valid JSON ({str(exc).splitlines()[0]})"
    if not isinstance(config, dict) or not isinstance(config.get("spec"), dict) \
            or not isinstance(config.get("run"), dict):
        return None, f"{CONFIG}: not a run config (expected 'spec' and 'run' sections)"
    try:
        recorded = (run_dir / CONFIG_DIGEST).read_text().strip()
    except OSError:
        recorded = ""
    if recorded and recorded != _digest(data):
        return config, f"{CONFIG} was edited after the run was written"
    return config, ""


def read_state(run_dir: Path) -> RunState:
    """The run folder's status (one :class:`Status`), reason, step and contents."""
    run_dir = Path(run_dir)
    config, problem = _read_config(run_dir)
    summary = read_json(run_dir / SUMMARY)
    summary = summary if isinstance(summary, dict) else {}
    records = read_jsonl(run_dir / METRICS)
    step = records[-1].get("step", 0) if records else 0
    said = summary.get("status")
    if problem:
        status = Status.CORRUPT if config is None else Status.CHANGED
        return RunState(status, problem, step, summary, config, records)
    if said in (Status.DONE, Status.PRUNED):
        return RunState(Status(said), summary.get("reason", "") if said == Status.PRUNED else "",
                        summary.get("step", step), summary, config, records)
    if _key(run_dir) not in _held and holders(run_dir):  # held by another process
        return RunState(Status.RUNNING, "", step, summary, config, records)
    reason = summary.get("reason", "")
    if said in (Status.FAILED, Status.INTERRUPTED):
        return RunState(Status(said), reason, step, summary, config, records)
    if summary or records or (run_dir / LAST).is_file():
        return RunState(Status.PARTIAL, "", step, summary, config, records)
    return RunState(Status.NEW, "", 0, summary, config, records)


def request_stop(run_dir: Path, reason: str) -> None:
    """Ask the run's trainer, wherever it runs, to stop at its next log step as ``pruned``."""
    atomic_write_bytes(Path(run_dir) / STOP_REQUEST, (reason.strip() + "\n").encode())


def stop_requested(run_dir: Path) -> str | None:
    """The reason of a stop request in the run folder, or None when there is none."""
    try:
        return (Path(run_dir) / STOP_REQUEST).read_text().strip() or "stop requested"
    except FileNotFoundError:
        return None


def run_status(run_dir: Path) -> Status:
    """The run folder's :class:`Status`."""
    return read_state(run_dir).status


def last_step(run_dir: Path) -> int:
    """The step of the last metrics record (0 when none)."""
    records = read_jsonl(Path(run_dir) / METRICS)
    return records[-1].get("step", 0) if records else 0


# -- the summary -------------------------------------------------------------------------------

def record_event(run_dir: Path, event: str, **detail) -> None:
    """Append a record of something that happened to the run (e.g. a refused rerun) to events.jsonl."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, "command": command_name(),
              "host": socket.gethostname(), "pid": os.getpid(), **detail}
    with contextlib.suppress(OSError):  # the record is a courtesy; never fail on it
        append_jsonl(Path(run_dir) / EVENTS, [record])


def write_summary(run_dir: Path, summary: dict, reopen: bool = False) -> bool:
    """Write ``summary.json`` -- the only way it is written.  False when refused.

    A finished (``done``) run is never downgraded: a summary that is not ``done`` goes to
    ``events.jsonl`` instead.  A ``done`` summary over a ``done`` one keeps the figures the new
    one lacks (e.g. a FID written by ``unetlab fid``).  ``reopen`` is for the one process that
    just trained the run and now evaluates it (under its lock): the run is not done until then.
    """
    run_dir = Path(run_dir)
    old = read_json(run_dir / SUMMARY)
    old = old if isinstance(old, dict) else {}
    if old.get("status") == Status.DONE and not reopen:
        if summary.get("status") != Status.DONE:
            record_event(run_dir, "summary refused", status=str(summary.get("status")),
                         reason=summary.get("reason", ""), step=summary.get("step"))
            return False
        summary = {**old, **summary}
    write_json(run_dir / SUMMARY, {k: (str(v) if isinstance(v, Status) else v) for k, v in summary.items()})
    return True


def update_summary(run_dir: Path, **fields) -> dict:
    """Add ``fields`` to the summary (keeping its status); returns the summary written."""
    old = read_json(Path(run_dir) / SUMMARY)
    summary = {**(old if isinstance(old, dict) else {}), **fields}
    write_summary(run_dir, summary)
    return summary
