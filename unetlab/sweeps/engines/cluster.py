"""What the cluster engines share: picking the runs to submit, a task's body, and the wait.

Framework-neutral and scheduler-neutral: :func:`prepare` decides, under each run's lock, which
runs still need to train and writes their ``config.json``; :func:`run_task` is what a task on any
node does (start ``python -m unetlab.run.worker RUN_DIR`` and return the run's summary);
:func:`watch` shows the runs' steps until every run has ended or its task is gone.
"""
from __future__ import annotations

from pathlib import Path
import signal
import subprocess
import time

from ...run import jsonfiles, rundir, runlock
from ...run.protocol import LOG, admit, report_outcome, start_worker
from ...run.rundir import Status

#: Seconds between two looks at the run folders while waiting.
POLL_S = 1.0


def prepare(ablation, root: Path, say) -> tuple[list, dict]:
    """The runs to submit, and the outcome of the others (skipped-done, elsewhere, failed)."""
    todo, outcome = [], {}
    for run in ablation.runs:
        run_dir = Path(root) / run.name
        if rundir.run_status(run_dir) == Status.DONE:
            outcome[run.name] = "skipped-done"
            continue
        lock = runlock.try_lock(run_dir, "unetlab ablate")
        if lock is None:
            say(f"{run.name}: running elsewhere, {runlock.describe_holder(run_dir)}; skipped")
            outcome[run.name] = "elsewhere"
            continue
        try:
            refused = admit(run.name, run.config(), run_dir, rundir.read_state(run_dir), say)
            if refused:
                outcome[run.name] = refused
            else:
                todo.append(run)
        finally:
            lock.release()
    return todo, outcome


def run_task(run_dir: str, env: dict | None = None, where: str = "") -> dict:
    """A task's body on any node: run the run's worker (it takes the run's lock, waiting until a
    holder whose heartbeat stopped counts as gone) and return its summary.  A stop signal this process gets (preemption, requeue) is passed on to the worker,
    which checkpoints; run again, the task resumes."""
    run_dir = Path(run_dir)
    proc = start_worker(run_dir, env, where)
    task_process.append(proc)
    forward = _forward_to(proc, signal.SIGUSR1)
    try:
        rc = proc.wait()
    finally:
        task_process.remove(proc)
        forward()
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY) or {}
    if rc == 2 and summary.get("status") != Status.DONE:  # refused: e.g. held by another task
        return {"status": "elsewhere", "reason": f"the worker refused the run; see {run_dir / LOG}"}
    return summary


def _forward_to(proc, signum):
    """Pass ``signum`` this process gets on to ``proc`` (e.g. Slurm's ``--signal=USR1@N``, which may
    reach the task's main process only); returns the undo."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signum, lambda *_: proc.poll() is None and proc.send_signal(signum))
    return lambda: signal.signal(signum, previous)


#: The worker a task is waiting for (so that a checkpoint request can reach it).
task_process: list = []


def stop_worker(timeout_s: float = 120.0) -> None:
    """Ask the running task's worker to checkpoint and stop (SIGUSR1), and wait for it."""
    for proc in list(task_process):
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()


def watch(names: list[str], root: Path, active, progress: bool, say, title: str) -> dict:
    """Wait until every run in ``names`` is done or failed, or ``active()`` (the names whose tasks
    are still queued or running) no longer holds it; show the runs' steps meanwhile.
    Returns run name -> done | failed | interrupted."""
    from tqdm.auto import tqdm

    root = Path(root)
    outcome: dict[str, str] = {}
    bar = tqdm(total=len(names), disable=None if progress else True, unit="run", desc=title,
               dynamic_ncols=True)
    tell = say if bar.disable else tqdm.write
    try:
        while len(outcome) < len(names):
            live = active()
            shown = []
            for name in names:
                if name in outcome:
                    continue
                run_dir = root / name
                state = rundir.read_state(run_dir)
                if state.status in (Status.DONE, Status.FAILED) or name not in live:
                    outcome[name] = _ended(name, run_dir, state, tell)
                    bar.update(1)
                elif state.status == Status.RUNNING or state.step:
                    shown.append(f"{name} step {state.step}")
            if not bar.disable:
                bar.set_postfix_str(" | ".join(shown), refresh=True)
            if len(outcome) < len(names):
                time.sleep(POLL_S)
    finally:
        bar.close()
    return outcome


def _ended(name: str, run_dir: Path, state, tell) -> str:
    if state.status in (Status.DONE, Status.FAILED):
        return report_outcome(name, {**state.summary, "status": str(state.status),
                                     "reason": state.reason or state.summary.get("reason", "?")}, tell)
    tell(f"{name}: its task ended with the run {state.status}"
         f"{f' at step {state.step}' if state.step else ''}; see {run_dir / LOG}")
    return "interrupted" if state.status == Status.INTERRUPTED else "failed"
