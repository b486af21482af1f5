"""One run's protocol, the same for every engine (the local pool, Slurm, Ray) and the search.

1. :func:`lock_run` takes the run's lock without waiting, or waits for a killed sweep's orphaned
   worker to checkpoint and exit;
2. :func:`admit`, under that lock, says whether the run may train (done, corrupt, hand-changed, or
   holding another config: not) and writes its ``config.json`` when it has none;
3. :func:`start_worker` starts ``python -m unetlab.run.worker RUN_DIR`` (the working folder off
   ``sys.path``) after the ``worker.log`` header, passing the lock on or letting the worker take it;
4. :func:`finish_summary` makes the summary say how the worker ended (it may have died without a
   word), and :func:`report_outcome` says it in one line and names the outcome.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import socket
import subprocess
import time

from . import jsonfiles, rundir, runlock
from ..errors import UnetlabError
from ..spec.run import configs_match
from .launch import python_module, safe_env
from .rundir import Status, last_step

LOG = "worker.log"
#: Seconds a sweep waits for an orphaned worker (its sweep was killed) to checkpoint and exit.
ORPHAN_WAIT_S = 120.0
#: Outcomes a run can have in a sweep.
OUTCOMES = ("done", "failed", "skipped-done", "elsewhere", "interrupted", "submitted")


def lock_run(run_dir: Path, command: str, say):
    """The run's lock without waiting, or -- when an orphaned worker of a killed sweep holds it --
    after waiting (up to :data:`ORPHAN_WAIT_S`) for that worker to checkpoint and exit; None
    when the run is held by a live process."""
    lock = runlock.try_lock(run_dir, command)
    if lock is None and runlock.orphaned(run_dir):
        say(f"{Path(run_dir).name}: waiting (up to {ORPHAN_WAIT_S:.0f} s) for the worker of a killed sweep, "
            f"{runlock.describe_holder(run_dir)}, to checkpoint and exit")
        try:
            lock = runlock.lock(run_dir, command, wait_s=ORPHAN_WAIT_S)
        except UnetlabError:
            lock = None
    return lock


def config_conflict(run_dir: Path, config: dict) -> bool:
    """Whether the run folder holds a run with a config other than ``config`` (a run that failed
    before its first step does not count: its folder takes the new config)."""
    state = rundir.read_state(run_dir)
    return (state.config is not None and not configs_match(state.config, config)
            and not rundir.failed_before_first_step(run_dir, state))


def admit(name: str, config: dict, run_dir: Path, state, say) -> str | None:
    """Under the run's lock: None when the run may train (its ``config.json`` written if it had
    none), else its outcome -- ``skipped-done``, or ``failed`` (said why) for a corrupt or
    hand-changed folder or one holding another config."""
    if state.status == Status.DONE:  # finished by another process just before we locked it
        return "skipped-done"
    if state.status in (Status.CORRUPT, Status.CHANGED):
        say(f"{name}: failed: {run_dir}: {state.reason}; delete the folder to rerun it")
        return "failed"
    if config_conflict(run_dir, config):
        say(f"{name}: failed: {run_dir} holds a run with a different config "
            f"(the ablation changed); delete the folder to rerun it")
        return "failed"
    rundir.claim_config(run_dir, config)  # written if none, replaced if it failed before step 1
    return None


def start_worker(run_dir: Path, env: dict | None = None, where: str = "", lock=None) -> subprocess.Popen:
    """Start the run's worker after a ``worker.log`` header (time, host, ``where``).

    ``lock``: the run's lock, held here and passed on to the worker (a local sweep); None: the
    worker takes the lock itself, waiting until a holder whose heartbeat stopped counts as gone
    (a cluster task, whose previous incarnation may have died on another node).
    """
    run_dir = Path(run_dir)
    env = safe_env({**os.environ, **(env or {})})
    if lock is None:
        env.setdefault(runlock.LOCK_WAIT_ENV, str(runlock.stale_after_s() + 30))
        env.pop(runlock.LOCK_FD_ENV, None)
    else:
        env[runlock.LOCK_FD_ENV] = str(lock.fileno())
    with open(run_dir / LOG, "ab") as log:
        log.write(f"\n=== worker started {time.strftime('%Y-%m-%d %H:%M:%S')} on host "
                  f"{socket.gethostname()}{where} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(python_module("unetlab.run.worker", str(run_dir)), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                pass_fds=() if lock is None else (lock.fileno(),),
                                start_new_session=lock is not None)
    if lock is not None:
        lock.note([os.getpid(), proc.pid])
    return proc


def describe_exit(rc: int) -> str:
    """A worker's exit status in words (``exit code 1``, ``signal SIGKILL``)."""
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


def finish_summary(run_dir: Path, status: str, reason: str) -> dict:
    """Make sure the summary states how the worker ended (it may have died without a word)."""
    summary = jsonfiles.read_json(Path(run_dir) / rundir.SUMMARY) or {}
    if summary.get("status") not in (Status.DONE, Status.FAILED, Status.INTERRUPTED, Status.PRUNED):
        summary = {**summary, "status": status, "reason": reason, "step": last_step(run_dir)}
        rundir.write_summary(run_dir, summary)
    return summary


def report_outcome(name: str, summary: dict, say, took_s: float | None = None) -> str:
    """Say how the run ended in one line; its outcome (``done`` or ``failed``)."""
    status = summary.get("status")
    took = f" in {took_s:.0f} s" if took_s is not None else ""
    if status == "done":
        loss = summary.get("final_loss")
        fid = summary.get("fid") or {}
        extra = f", {fid['name']} {fid['value']:.4g}" if fid.get("value") is not None else ""
        say(f"{name}: done{took}, loss {loss:.4f}{extra}" if loss is not None else f"{name}: done{took}")
        return "done"
    say(f"{name}: {status}: {summary.get('reason', '?')}")
    return "failed"
