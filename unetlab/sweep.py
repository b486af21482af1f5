"""Running an ablation's plan: one worker process per run, a lock per run, resumable.

Each run folder gets its resolved ``config.json``, then ``python -m unetlab.worker RUN_DIR``
trains and evaluates it (output in ``worker.log``).  A crash, a NaN or a kill is recorded in
that run's ``summary.json`` and the sweep goes on.  ``RUN_DIR/.lock`` (``fcntl.flock``, taken
without waiting and inherited by the worker) keeps two sweeps from running one run twice.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import rundir
from .ablate import Ablation, Run

LOCK, LOG = ".lock", "worker.log"
LOCK_FD_ENV = "UNETLAB_LOCK_FD"
FINAL = ("done", "failed", "interrupted")


# -- locks -----------------------------------------------------------------------------------

def try_lock(run_dir: Path):
    """The run's lock file, held (an open file), or None when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    note_holders(f, [os.getpid()])
    return f


def note_holders(lock, pids) -> None:
    """Record the processes holding ``lock`` in it (for ``running elsewhere`` messages)."""
    lock.seek(0)
    lock.truncate()
    lock.write(" ".join(map(str, pids)) + "\n")
    lock.flush()


def release(lock) -> None:
    note_holders(lock, [])
    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    lock.close()


def holders(run_dir: Path) -> list[int]:
    """Live processes named in the run's lock file (empty when nobody runs it)."""
    try:
        pids = [int(p) for p in (Path(run_dir) / LOCK).read_text().split()]
    except (OSError, ValueError):
        return []
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
        except PermissionError:
            alive.append(pid)
    return alive


# -- status ----------------------------------------------------------------------------------

def last_step(run_dir: Path) -> int:
    records = rundir.read_jsonl(Path(run_dir) / rundir.METRICS)
    return records[-1]["step"] if records else 0


def run_status(run_dir: Path) -> str:
    """new, done, failed, partial (started, resumable) or running (locked by a live process)."""
    run_dir = Path(run_dir)
    summary = rundir.read_json(run_dir / rundir.SUMMARY) or {}
    if summary.get("status") == "done":
        return "done"
    if holders(run_dir):
        return "running"
    if summary.get("status") == "failed":
        return "failed"
    if summary or (run_dir / rundir.METRICS).is_file() or (run_dir / rundir.LAST).is_file():
        return "partial"
    return "new"


def config_conflict(run_dir: Path, run: Run) -> bool:
    from .spec.run import configs_match

    existing = rundir.read_json(Path(run_dir) / rundir.CONFIG)
    return existing is not None and not configs_match(existing, run.config())


def plan_rows(ablation: Ablation, root: Path) -> list[dict]:
    """One row per run: its folder, what it varies and its status."""
    rows = []
    for run in ablation.runs:
        d = Path(root) / run.name
        status = run_status(d)
        if config_conflict(d, run):
            status = "changed"
        train = run.spec["train"]
        budget = next(f"{train[k]:g} {k}" for k in ("steps", "epochs", "minutes") if train[k] is not None)
        step = last_step(d)
        rows.append({"run": run.name, "variant": run.variant, "grid": run.grid_label,
                     "framework": run.framework, "seed": run.seed, "budget": budget,
                     "status": status + (f" @{step}" if status in ("partial", "failed", "running") and step else "")})
    return rows


# -- the sweep -------------------------------------------------------------------------------

@dataclass
class SweepResult:
    outcome: dict = field(default_factory=dict)  # run name -> done | failed | skipped-done | elsewhere

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.outcome.items() if v == "failed"]


@contextmanager
def _sigterm_interrupts():
    """SIGTERM stops the sweep like Ctrl-C does (the current run is marked interrupted)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


def _finish_summary(run_dir: Path, status: str, reason: str) -> dict:
    """Make sure the summary states how the worker ended (it may have died without a word)."""
    summary = rundir.read_json(run_dir / rundir.SUMMARY) or {}
    if summary.get("status") not in FINAL:
        summary = {**summary, "status": status, "reason": reason, "step": last_step(run_dir)}
        rundir.write_json(run_dir / rundir.SUMMARY, summary)
    return summary


def run_worker(run_dir: Path, lock, on_poll=None) -> dict:
    """Run ``python -m unetlab.worker RUN_DIR`` (inheriting ``lock``) and return the summary."""
    run_dir = Path(run_dir)
    env = {**os.environ, LOCK_FD_ENV: str(lock.fileno())}
    with open(run_dir / LOG, "ab") as log:
        log.write(f"\n=== worker started {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "unetlab.worker", str(run_dir)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                pass_fds=(lock.fileno(),), start_new_session=True)
    note_holders(lock, [os.getpid(), proc.pid])
    try:
        while True:
            try:
                rc = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if on_poll:
                    on_poll()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _finish_summary(run_dir, "interrupted", "KeyboardInterrupt: the sweep was stopped")
        raise
    finally:
        note_holders(lock, [os.getpid()])
    return _finish_summary(run_dir, "failed", f"worker died ({_describe_exit(rc)}); see {run_dir / LOG}")


def run_sweep(ablation: Ablation, root: Path, progress: bool = True, echo=print) -> SweepResult:
    """Run every run of ``ablation`` under ``root`` that is not done; return what happened."""
    from tqdm.auto import tqdm

    root = Path(root)
    result = SweepResult()
    bar = tqdm(total=len(ablation.runs), disable=None if progress else True, unit="run",
               desc=ablation.name, dynamic_ncols=True)  # None: off when stderr is not a terminal
    say = echo if bar.disable else tqdm.write
    initial = {run.name: run_status(root / run.name) for run in ablation.runs}
    with _sigterm_interrupts():
        try:
            for run in ablation.runs:
                result.outcome[run.name] = _one(run, root / run.name, bar, say, initial[run.name])
                bar.update(1)
        finally:
            bar.close()
    return result


def _one(run: Run, run_dir: Path, bar, say, initial: str) -> str:
    """Run one run unless it is done, locked by another sweep, or failed in one meanwhile."""
    if run_status(run_dir) == "done":
        return "skipped-done"
    lock = try_lock(run_dir)
    if lock is None:
        pids = holders(run_dir)
        say(f"{run.name}: running elsewhere{f' (pid {pids[-1]})' if pids else ''}; skipped")
        return "elsewhere"
    try:
        now = run_status(run_dir)
        if now == "done":  # finished by another sweep just before we locked it
            return "skipped-done"
        if now == "failed" and initial != "failed":  # another sweep ran it since we started: no retry
            say(f"{run.name}: failed in another sweep meanwhile: {_reason(run_dir)}")
            return "failed"
        if config_conflict(run_dir, run):
            say(f"{run.name}: failed: {run_dir} holds a run with a different config "
                f"(the ablation changed); delete the folder to rerun it")
            return "failed"
        if not (run_dir / rundir.CONFIG).is_file():
            rundir.write_json(run_dir / rundir.CONFIG, run.config())
        start = last_step(run_dir)
        rundir.write_json(run_dir / rundir.SUMMARY, {"status": "running", "step": start})  # not a stale verdict

        def poll():
            text = f"{run.name} step {last_step(run_dir)}"
            if not bar.disable and text != bar.postfix:
                bar.set_postfix_str(text, refresh=True)

        if not bar.disable:
            bar.set_postfix_str(f"{run.name}{f' (resuming at step {start})' if start else ''}", refresh=True)
        began = time.perf_counter()
        summary = run_worker(run_dir, lock, poll)
    finally:
        release(lock)
    status = summary.get("status")
    took = time.perf_counter() - began
    if status == "done":
        loss = summary.get("final_loss")
        fid = summary.get("fid") or {}
        extra = f", {fid['name']} {fid['value']:.4g}" if fid.get("value") is not None else ""
        say(f"{run.name}: done in {took:.0f} s, loss {loss:.4f}{extra}" if loss is not None
            else f"{run.name}: done in {took:.0f} s")
        return "done"
    say(f"{run.name}: {status}: {summary.get('reason', '?')}")
    return "failed"


def _reason(run_dir: Path) -> str:
    return (rundir.read_json(Path(run_dir) / rundir.SUMMARY) or {}).get("reason", "?")
