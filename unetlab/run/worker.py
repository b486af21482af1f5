"""``python -m unetlab.run.worker RUN_DIR``: train and evaluate the run described by its config.json.

Training resumes from ``checkpoints/last.npz`` when there is one.  A run with
``resources.gpus: N > 1`` is trained by N data-parallel ranks this worker launches (see
:mod:`unetlab.run.distributed`); the worker scores it alone afterwards.  After training the worker
records the model's GFLOPs and, when ``eval.fid_samples > 0``, the FID (or FD-small) of the
EMA weights.  Failures land in ``summary.json`` (status ``failed`` and the reason); Ctrl-C,
SIGTERM, SIGUSR1 or SIGUSR2 (a cluster about to preempt or requeue it) checkpoint and leave status
``interrupted``; run again, the worker resumes.  Exit status: 0 done, 1 failed, 2 bad use, 130 interrupted.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import sys
import traceback

from . import jsonfiles, rundir, runlock
from ..errors import UnetlabError
from ..readers import read_run_config
from .scoring import score_run
from .signals import STOP_SIGNALS, keep_handlers_out_of_forks
from .trainer import train_run


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """Interrupt this worker (as SIGTERM would) once its sweep process is gone.

    A sweep killed with SIGKILL cannot stop its worker; without this the orphan would keep the
    run's lock and a rerun of the sweep would skip the run as running elsewhere.
    """
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _record(run_dir: Path, status: str, exc: BaseException) -> None:
    """Keep what the summary already says; set the status and the one-line reason."""
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY) or {}
    summary.pop("phase", None)
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    rundir.write_summary(run_dir, {**summary, "status": status, "reason": reason})


def work(run_dir: Path) -> dict:
    """Train (or resume) the run, then measure it; returns the final summary."""
    config = read_run_config(run_dir)
    spec, run = config["spec"], config["run"]
    identity = {k: v for k, v in run.items() if k not in ("framework", "seed")}
    if rundir.run_status(run_dir) == rundir.Status.DONE:
        return rundir.read_state(run_dir).summary
    summary = train_run(spec, run_dir, run["framework"], seed=run["seed"], progress=False, identity=identity,
                        nproc=ranks_for(spec))
    if summary.get("status") != "done":
        return summary
    summary = {**summary, "status": "running", "phase": "evaluation"}
    rundir.write_summary(run_dir, summary, reopen=True)  # not done until evaluated
    if spec["eval"]["fid_samples"] > 0:
        try:
            summary["fid"] = score_run(run_dir)
        except UnetlabError as exc:
            raise UnetlabError(str(exc) if str(exc).startswith("FID") else f"FID: {exc}") from None
    summary.pop("phase")
    summary["status"] = "done"
    rundir.write_summary(run_dir, summary)
    return summary


def ranks_for(spec: dict) -> int:
    """Processes that train a run: one per GPU it takes (``resources.gpus``), data-parallel.

    On a CPU pool (no GPU visible) ``resources.gpus: N`` trains N CPU ranks (gloo or MPI) in the
    run's one slot, so a sweep with multi-GPU runs is the same sweep on a CPU machine.
    """
    return int((spec.get("resources") or {}).get("gpus", 1))


def _lock(run_dir: Path):
    """The run's lock: inherited from the sweep, or taken here when run by hand."""
    fd = os.environ.get(runlock.LOCK_FD_ENV)
    if fd:
        return runlock.adopt_lock(run_dir, int(fd), "unetlab worker")
    wait = os.environ.get(runlock.LOCK_WAIT_ENV, "")
    return runlock.lock(run_dir, "unetlab worker", wait_s=float(wait) if wait else 0.0)




#: The environment that places a worker: its GPUs and its CPU threads (set by the sweep's pool).
PLACEMENT_VARS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS")


def placement() -> str:
    """``CUDA_VISIBLE_DEVICES=0, CUDA_DEVICE_ORDER=PCI_BUS_ID, OMP_NUM_THREADS=4`` as this process sees it."""
    return ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in PLACEMENT_VARS)


def checkpoint_step(run_dir: Path) -> int | str:
    """The step the run's last checkpoint holds ('?' when it cannot be read)."""
    import numpy as np

    try:
        with np.load(run_dir / rundir.LAST) as arrays:
            return int(arrays["step"])
    except Exception:  # noqa: BLE001 - a damaged checkpoint is reported by the training itself
        return "?"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m unetlab.run.worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    keep_handlers_out_of_forks()
    for stop in STOP_SIGNALS[1:]:  # SIGINT is Python's KeyboardInterrupt already
        signal.signal(stop, _interrupt)
    if os.environ.get(runlock.LOCK_FD_ENV):  # started by a sweep
        _stop_when_orphaned(os.getppid())
    try:
        if not (run_dir / rundir.CONFIG).is_file():
            raise UnetlabError(f"{run_dir}: not a run folder (no {rundir.CONFIG})")
        lock = _lock(run_dir)
    except UnetlabError as exc:
        print(f"unetlab worker: error: {exc}", file=sys.stderr)
        return 2
    print(f"unetlab worker: pid {os.getpid()}, {placement()}", flush=True)
    if (run_dir / rundir.LAST).is_file():
        print(f"unetlab worker: resuming from {rundir.LAST} at step {checkpoint_step(run_dir)}", flush=True)
    try:
        summary = work(run_dir)
        return 0 if summary.get("status") in ("done", "pruned") else 1
    except KeyboardInterrupt as exc:
        _record(run_dir, "interrupted", exc)
        print("unetlab worker: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - any failure is recorded, and the sweep goes on
        _record(run_dir, "failed", exc)
        traceback.print_exc()
        return 1
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
