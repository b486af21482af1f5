"""Running an ablation's plan: one worker process per run, a lock per run, resumable.

Runs start in order, as many at once as the :class:`unetlab.sweeps.pool.Pool` has slots (one per GPU,
or ``--jobs`` on the CPU; one by default on a machine without a GPU); each run is watched by a
thread of its own, which starts its worker with the environment of its slots.

Each run folder gets its resolved ``config.json``, then ``python -m unetlab.run.worker RUN_DIR``
trains and evaluates it (output in ``worker.log``).  A crash, a NaN or a kill is recorded in
that run's ``summary.json`` and the sweep goes on.  The run's lock (:func:`unetlab.run.runlock.lock`,
taken without waiting and inherited by the worker) keeps two sweeps from running one run twice;
a run whose lock an orphaned worker of a killed sweep still holds is waited for.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import threading
import time

from tqdm.auto import tqdm

from ..errors import UnetlabError
from ..run import jsonfiles, rundir, runlock
from ..run.protocol import (
    LOG, admit, config_conflict, describe_exit, finish_summary, lock_run, report_outcome, start_worker
)
from ..run.rundir import Status, last_step, run_status  # noqa: F401 (public here too)
from ..run.runlock import holders, try_lock  # noqa: F401 (public here too)
from ..run.signals import signals_interrupt
from .ablation import Ablation, Run
from .engines.base import SweepResult
from .pool import Pool, Slots


def release(lock) -> None:
    """Release a lock from :func:`try_lock`."""
    lock.release()


def plan_rows(ablation: Ablation, root: Path) -> list[dict]:
    """One row per run: its folder, what it varies and its status."""
    rows = []
    for run in ablation.runs:
        d = Path(root) / run.name
        state = rundir.read_state(d)
        status = state.status
        if config_conflict(d, run.config()):
            status = Status.CHANGED
        train = run.spec["train"]
        budget = next(f"{train[k]:g} {k}" for k in ("steps", "epochs", "minutes") if train[k] is not None)
        step = last_step(d)
        shown = str(status) + (f" @{step}" if status in (Status.PARTIAL, Status.INTERRUPTED, Status.FAILED,
                                                         Status.RUNNING) and step else "")
        if status == Status.RUNNING and runlock.held_by(d):
            shown += f" held ({runlock.held_by(d)})"
        rows.append({"run": run.name, "variant": run.variant, "grid": run.grid_label,
                     "framework": run.framework, "seed": run.seed, "budget": budget, "status": shown})
    return rows


# -- the sweep -------------------------------------------------------------------------------

def run_worker(run_dir: Path, lock, on_poll=None, env: dict | None = None, where: str = "",
               stop: threading.Event | None = None) -> dict:
    """Run ``python -m unetlab.run.worker RUN_DIR`` (inheriting ``lock``) and return the summary.

    ``env`` is added to the worker's environment (its slot); ``stop`` set, or Ctrl-C, interrupts
    the worker (it checkpoints) and raises KeyboardInterrupt.
    """
    run_dir = Path(run_dir)
    proc = start_worker(run_dir, env, where, lock)
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt from None
                if on_poll:
                    on_poll()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finish_summary(run_dir, "interrupted", "KeyboardInterrupt: the sweep was stopped")
        raise
    finally:
        lock.note([os.getpid()])
    return finish_summary(run_dir, "failed", f"worker died ({describe_exit(rc)}); see {run_dir / LOG}")


def run_sweep(ablation: Ablation, root: Path, progress: bool = True, echo=print,
              pool: Pool | None = None, engine=None) -> SweepResult:
    """Run every run of ``ablation`` under ``root`` that is not done; return what happened.

    ``pool``: the slots runs are started in (default: one run at a time, as the worker finds it).
    ``engine``: a cluster engine from :func:`unetlab.sweeps.engines.build` (None: this machine).
    """
    return (engine or LocalEngine(pool)).run(ablation, root, progress=progress, echo=echo)


class LocalEngine:
    """This machine: a thread per run starts its worker in the pool's slots (one per GPU, or
    ``--jobs`` on the CPU; one run at a time by default), each run through the one run protocol."""

    name = "local"

    def __init__(self, pool: Pool | None = None):
        self.pool = pool or Pool((), 1, None, pin=False)

    def run(self, ablation: Ablation, root: Path, progress: bool = True, echo=print) -> SweepResult:
        return _run_local(ablation, Path(root), progress, echo, self.pool)


def _run_local(ablation: Ablation, root: Path, progress: bool, echo, pool: Pool) -> SweepResult:
    wanted = {run.name: pool.slots_for(run.spec["resources"]["gpus"]) for run in ablation.runs}
    too_big = [name for name, k in wanted.items() if k > pool.size]
    if too_big:
        raise UnetlabError(f"{too_big[0]}: resources.gpus is {wanted[too_big[0]]} but the pool has only "
                           f"{pool.describe()} (give more with --gpus)")
    result = SweepResult()
    bar = tqdm(total=len(ablation.runs), disable=None if progress else True, unit="run",
               desc=ablation.name, dynamic_ncols=True)  # None: off when stderr is not a terminal
    say = echo if bar.disable else tqdm.write
    initial = {run.name: run_status(root / run.name) for run in ablation.runs}
    slots, stop, active, errors, started = Slots(pool.size), threading.Event(), {}, [], []
    counted = threading.Lock()

    def show():
        text = " | ".join(tuple(active.values()))  # a snapshot: the run threads change it
        if not bar.disable and text != bar.postfix:
            bar.set_postfix_str(text, refresh=True)

    def job(run: Run, taken: list[int], finished: threading.Event) -> None:
        where = (f" on GPU {','.join(pool.gpus[i] for i in taken)}" if pool.on_gpus
                 else f" in CPU job {taken[0]}" if pool.size > 1 else "")
        try:
            result.outcome[run.name] = _one(run, root / run.name, say, initial[run.name], active,
                                            dict(env=pool.worker_env(taken), where=where, stop=stop))
        except KeyboardInterrupt:  # the sweep was stopped: the run is marked interrupted
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again by the sweep's own thread
            errors.append(exc)
        finally:
            active.pop(run.name, None)
            slots.give_back(taken)
            with counted:
                bar.update(1)
            finished.set()

    with signals_interrupt():
        try:
            for run in ablation.runs:
                while not errors and (taken := slots.take(wanted[run.name], timeout=0.25)) is None:
                    show()
                if errors:
                    break
                finished = threading.Event()  # waited for, not Thread.join: a Ctrl-C may break a join
                threading.Thread(target=job, args=(run, taken, finished), name=run.name, daemon=True).start()
                started.append(finished)
            for finished in started:
                while not finished.wait(timeout=0.25):
                    show()
        except KeyboardInterrupt:
            stop.set()  # every active worker is interrupted and its run marked so
            for finished in started:
                finished.wait()
            raise
        finally:
            bar.close()
    if errors:
        raise errors[0]
    return result


def _one(run: Run, run_dir: Path, say, initial: str, active: dict, worker_options: dict) -> str:
    """Run one run unless it is done, locked by another sweep, or failed in one meanwhile."""
    if run_status(run_dir) == Status.DONE:
        return "skipped-done"
    lock = lock_run(run_dir, "unetlab ablate", say)
    if lock is None:
        say(f"{run.name}: running elsewhere, {runlock.describe_holder(run_dir)}; skipped")
        return "elsewhere"
    try:
        state = rundir.read_state(run_dir)
        now = state.status
        if now == Status.FAILED and initial != Status.FAILED:  # another sweep ran it since we started: no retry
            say(f"{run.name}: failed in another sweep meanwhile: {_reason(run_dir)}")
            return "failed"
        refused = admit(run.name, run.config(), run_dir, state, say)
        if refused:
            return refused
        start = last_step(run_dir)
        rundir.write_summary(run_dir, {"status": "running", "step": start})  # not a stale verdict

        def poll():
            active[run.name] = f"{run.name} step {last_step(run_dir)}"

        active[run.name] = f"{run.name}{f' (resuming at step {start})' if start else ''}"
        began = time.perf_counter()
        summary = run_worker(run_dir, lock, poll, **worker_options)
    finally:
        release(lock)
    return report_outcome(run.name, summary, say, time.perf_counter() - began)


def _reason(run_dir: Path) -> str:
    return (jsonfiles.read_json(Path(run_dir) / rundir.SUMMARY) or {}).get("reason", "?")
