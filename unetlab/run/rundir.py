"""A run folder's state and summary: its config (and the digest that tells a hand edit), its
status (one :class:`Status`, read by :func:`read_state`), its events, and every write of its summary.

:func:`write_summary` never turns a finished run into an unfinished one.  The folder's file names
are in :mod:`.layout`, its lock in :mod:`.runlock`, its checkpoints in :mod:`.checkpoints`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import UnetlabError
from ..files import atomic_write_bytes
from ..spec.run import configs_match
from .jsonfiles import _jsonable, append_jsonl, read_json, read_jsonl, write_json
from .layout import (  # noqa: F401 (the run folder's names, used as rundir.CONFIG etc.)
    CONFIG, CONFIG_DIGEST, EMA, EVENTS, GRID, LAST, METRICS, STOP_REQUEST, SUMMARY,
)
from .runlock import _held, _key, command_name, holders


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
    """Write ``config`` into a new run folder; raise :class:`ConfigChanged` if it holds another run
    (a run that failed before its first step, with no checkpoint, is replaced: see
    :func:`failed_before_first_step`; its summary goes, an event records the replacement)."""
    state = read_state(run_dir)
    if state.status in (Status.CORRUPT, Status.CHANGED):
        raise ConfigChanged(f"{run_dir}: {state.reason}; use another run folder or delete this one")
    if state.config is None:
        write_config(run_dir, config)
    elif not configs_match(state.config, config):
        if failed_before_first_step(run_dir, state):
            record_event(run_dir, "config replaced", reason=f"the run failed before its first step: {state.reason}")
            (Path(run_dir) / SUMMARY).unlink(missing_ok=True)
            write_config(run_dir, config)
            return
        raise ConfigChanged(f"{run_dir}: holds a run with a different config; "
                            f"use another run folder or delete this one")


def failed_before_first_step(run_dir: Path, state: "RunState") -> bool:
    """True for a run that failed before its first step and holds no checkpoint: nothing of it
    is worth keeping, so its folder may take a corrected config."""
    return state.status == Status.FAILED and state.step < 1 and not (Path(run_dir) / LAST).is_file()



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
