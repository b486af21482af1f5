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

from dataclasses import dataclass, field
import os
from pathlib import Path
import signal
import subprocess
import threading
import time

from ..errors import UnetlabError
from ..run import jsonfiles, rundir, runlock
from ..run.launch import python_module, safe_env
from ..run.rundir import Status, last_step, run_status  # noqa: F401 (public here too)
from ..run.runlock import LOCK_FD_ENV, holders, try_lock  # noqa: F401 (public here too)
from ..run.signals import signals_interrupt
from ..spec.run import configs_match
from .ablation import Ablation, Run
from .pool import Pool, Slots

LOG = "worker.log"
#: Seconds a sweep waits for an orphaned worker (its sweep was killed) to checkpoint and exit.
ORPHAN_WAIT_S = 120.0


def release(lock) -> None:
    """Release a lock from :func:`try_lock`."""
    lock.release()


def config_conflict(run_dir: Path, run: Run) -> bool:
    state = rundir.read_state(run_dir)
    return state.config is not None and not configs_match(state.config, run.config())


def plan_rows(ablation: Ablation, root: Path) -> list[dict]:
    """One row per run: its folder, what it varies and its status."""
    rows = []
    for run in ablation.runs:
        d = Path(root) / run.name
        state = rundir.read_state(d)
        status = state.status
        if config_conflict(d, run):
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

@dataclass
class SweepResult:
    outcome: dict = field(default_factory=dict)  # run name -> done | failed | skipped-done | elsewhere
    #                                              (| interrupted | submitted, on a cluster engine)

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.outcome.items() if v == "failed"]


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


def _finish_summary(run_dir: Path, status: str, reason: str) -> dict:
    """Make sure the summary states how the worker ended (it may have died without a word)."""
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY) or {}
    if summary.get("status") not in (Status.DONE, Status.FAILED, Status.INTERRUPTED, Status.PRUNED):
        summary = {**summary, "status": status, "reason": reason, "step": last_step(run_dir)}
        rundir.write_summary(run_dir, summary)
    return summary


def run_worker(run_dir: Path, lock, on_poll=None, env: dict | None = None, where: str = "",
               stop: threading.Event | None = None) -> dict:
    """Run ``python -m unetlab.run.worker RUN_DIR`` (inheriting ``lock``) and return the summary.

    ``env`` is added to the worker's environment (its slot); ``stop`` set, or Ctrl-C, interrupts
    the worker (it checkpoints) and raises KeyboardInterrupt.
    """
    run_dir = Path(run_dir)
    env = safe_env({**os.environ, **(env or {}), LOCK_FD_ENV: str(lock.fileno())})
    with open(run_dir / LOG, "ab") as log:
        log.write(f"\n=== worker started {time.strftime('%Y-%m-%d %H:%M:%S')}{where} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(python_module("unetlab.run.worker", str(run_dir)), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                pass_fds=(lock.fileno(),), start_new_session=True)
    lock.note([os.getpid(), proc.pid])
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
        _finish_summary(run_dir, "interrupted", "KeyboardInterrupt: the sweep was stopped")
        raise
    finally:
        lock.note([os.getpid()])
    return _finish_summary(run_dir, "failed", f"worker died ({_describe_exit(rc)}); see {run_dir / LOG}")


def run_sweep(ablation: Ablation, root: Path, progress: bool = True, echo=print,
              pool: Pool | None = None, engine=None) -> SweepResult:
    """Run every run of ``ablation`` under ``root`` that is not done; return what happened.

    ``pool``: the slots runs are started in (default: one run at a time, as the worker finds it).
    ``engine``: a cluster engine from :func:`unetlab.sweeps.engines.build` (None: this machine).
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if engine is not None:
        return engine.run(ablation, root, progress=progress, echo=echo)
    pool = pool or Pool((), 1, None, pin=False)
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


def lock_run(run_dir: Path, command: str, say):
    """The run's lock without waiting, or -- when an orphaned worker of a killed sweep holds it --
    after waiting (up to :data:`ORPHAN_WAIT_S`) for that worker to checkpoint and exit; None
    when the run is held by a live process."""
    lock = try_lock(run_dir, command)
    if lock is None and runlock.orphaned(run_dir):
        say(f"{Path(run_dir).name}: waiting (up to {ORPHAN_WAIT_S:.0f} s) for the worker of a killed sweep, "
            f"{runlock.describe_holder(run_dir)}, to checkpoint and exit")
        try:
            lock = runlock.lock(run_dir, command, wait_s=ORPHAN_WAIT_S)
        except UnetlabError:
            lock = None
    return lock


def admit(run: Run, run_dir: Path, state, say) -> str | None:
    """Under the run's lock: None when the run may train (its ``config.json`` written if it had
    none), else its outcome -- ``skipped-done``, or ``failed`` (said why) for a corrupt or
    hand-changed folder or one holding another config."""
    if state.status == Status.DONE:  # finished by another process just before we locked it
        return "skipped-done"
    if state.status in (Status.CORRUPT, Status.CHANGED):
        say(f"{run.name}: failed: {run_dir}: {state.reason}; delete the folder to rerun it")
        return "failed"
    if config_conflict(run_dir, run):
        say(f"{run.name}: failed: {run_dir} holds a run with a different config "
            f"(the ablation changed); delete the folder to rerun it")
        return "failed"
    if state.config is None:
        rundir.write_config(run_dir, run.config())
    return None


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
        refused = admit(run, run_dir, state, say)
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
    return (jsonfiles.read_json(Path(run_dir) / rundir.SUMMARY) or {}).get("reason", "?")
