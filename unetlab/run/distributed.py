"""Data-parallel runs: one run trained by several processes (ranks), written once for both frameworks.

A run with ``nproc > 1`` is trained by a *launcher* (``unetlab train --nproc N``, or the sweep's
worker for ``resources.gpus: N``) that holds the run's lock, writes its config and starts N ranks
of ``python -m unetlab.run.rank RUN_DIR``: under ``torchrun`` for PyTorch (DDP; NCCL on GPUs, gloo on
the CPU) and under ``mpirun`` for Jittor (Jittor's MPI).  The launcher marks the ranks'
environment with :data:`NPROC_ENV`, so they train instead of launching again.

Each rank takes an equal slice of the global batch (``train.batch_size``), which stays a pure
function of ``(seed, step)``; gradients and the logged loss are averaged over ranks, so N ranks
follow the arithmetic of one process.  Only rank 0 writes into the run folder.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np

from . import runlock
from ..errors import UnetlabError
from ..frameworks.contract import NPROC_ENV  # noqa: F401 (also read here as distributed.NPROC_ENV)
from .launch import SAFE_PATH_ENV, THREAD_VARS, cpu_cores, python_module, safe_env

#: Set by the launcher: its pid, which holds the run's lock for the ranks.
LAUNCHER_PID_ENV = "UNETLAB_LAUNCHER_PID"
#: The launcher of each framework's ranks.
LAUNCHERS = {"torch": "torchrun", "jittor": "mpirun"}
#: Where each launcher puts a rank's (rank, world size, local rank).
_RANK_VARS = {
    "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    "mpirun": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
}


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 outside a data-parallel run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launcher: str | None = None  # torchrun or mpirun; None outside a data-parallel run

    @property
    def distributed(self) -> bool:
        return self.launcher is not None

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (rank 0 only)."""
        return self.rank == 0


def world() -> World:
    """This process's :class:`World`, from the environment its launcher gave it.

    A rank whose launcher reports another world size than unetlab asked for, or none at all, is
    a one-line error.
    """
    expected = os.environ.get(NPROC_ENV)
    if not expected:
        return World()
    for launcher, names in _RANK_VARS.items():
        if names[1] in os.environ:
            rank, size, local = (int(os.environ.get(name, "0")) for name in names)
            if size != int(expected):
                raise UnetlabError(f"inconsistent world: {NPROC_ENV}={expected} but {launcher} started "
                                   f"{size} process(es) ({names[1]}={size})")
            return World(rank, size, local, launcher)
    raise UnetlabError(f"{NPROC_ENV}={expected} is set but this process was not started by torchrun or "
                       f"mpirun (no WORLD_SIZE or OMPI_COMM_WORLD_SIZE); unset it or use --nproc")


def check_batch_divides(batch_size: int, nproc: int) -> None:
    """One line when the global batch does not split into equal slices over ``nproc`` ranks."""
    if batch_size % nproc:
        raise UnetlabError(f"train.batch_size {batch_size} does not divide over {nproc} processes "
                           f"(--nproc / resources.gpus): give a multiple of {nproc}")


def rank_slice(batch_size: int, w: World) -> slice:
    """The part of each global batch that rank ``w.rank`` trains on (equal, contiguous slices)."""
    check_batch_divides(batch_size, w.size)
    per_rank = batch_size // w.size
    return slice(w.rank * per_rank, (w.rank + 1) * per_rank)


def framework_seed(seed: int, step: int, rank: int) -> int:
    """The seed of the framework's RNG (dropout, device noise) at ``step`` on ``rank``.

    Rank 0 keeps the seed a single process has always used; other ranks draw their own.
    """
    if rank == 0:
        return seed * 1_000_003 + step
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0] % (2 ** 31))


def check_launcher(framework: str) -> str:
    """The launcher ``framework``'s ranks need (torchrun comes with PyTorch; mpirun is looked up
    on PATH); a one-line error when it is missing."""
    name = LAUNCHERS[framework]
    if name == "torchrun":
        return name
    found = shutil.which(name)
    if found is None:
        raise UnetlabError(f"{framework} with several processes needs {name}, which is not on PATH: "
                           f"install OpenMPI (apt-get install openmpi-bin libopenmpi-dev)")
    return found


def launch_command(framework: str, nproc: int, module_args: list[str]) -> list[str]:
    """The command starting ``nproc`` ranks of ``python -m MODULE ARGS`` for ``framework``."""
    if framework == "torch":  # torchrun of this Python's PyTorch (passes the environment on)
        return python_module("torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                             "--no-python", *python_module(*module_args))
    launcher = check_launcher(framework)
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    # --oversubscribe: more ranks than cores is allowed (a CPU test); --bind-to none: no pinning
    return [launcher, *root, "--oversubscribe", "--bind-to", "none", "-np", str(nproc),
            "-x", NPROC_ENV, "-x", LAUNCHER_PID_ENV, "-x", "OMP_NUM_THREADS", "-x", SAFE_PATH_ENV, *python_module(*module_args)]


def rank_threads(nproc: int) -> dict[str, str]:
    """CPU threads per rank: the launcher's share (``OMP_NUM_THREADS``, else its cores) split
    over the ranks, at least one each."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    cores = int(given) if given.isdigit() and int(given) > 0 else cpu_cores()
    return {name: str(max(1, cores // nproc)) for name in THREAD_VARS}


def launch_ranks(framework: str, nproc: int, module_args: list[str], log: Path | None = None) -> int:
    """Run ``nproc`` ranks to their end; returns the launcher's exit status.

    The ranks run in a session of their own: Ctrl-C (or SIGTERM) here is passed on once to the
    launcher, which stops the ranks (they checkpoint), and is raised here once they are gone.
    With ``log``, the launcher's and the ranks' output goes into that file (and is shown as well
    when stderr is a terminal), so that a failure can be told in one line pointing at it.
    """
    env = {**safe_env(), **rank_threads(nproc), NPROC_ENV: str(nproc), LAUNCHER_PID_ENV: str(os.getpid())}
    output = {} if log is None else {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    proc = subprocess.Popen(launch_command(framework, nproc, module_args), env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, **output)
    copier = None
    if log is not None:
        copier = threading.Thread(target=_copy_output, args=(proc.stdout, Path(log), sys.stderr.isatty()),
                                  daemon=True)
        copier.start()
    interrupted = None
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt as exc:
            if interrupted is not None:  # a second Ctrl-C: stop at once
                proc.kill()
            else:
                interrupted = exc
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
    if copier is not None:
        copier.join()
    if interrupted is not None:
        raise interrupted
    return rc


def _copy_output(pipe, log: Path, echo: bool) -> None:
    """Copy the launcher's output into ``log`` (and to stderr when ``echo``) until it ends."""
    with pipe, open(log, "ab") as out:
        for chunk in iter(lambda: pipe.read1(1 << 16), b""):
            out.write(chunk)
            out.flush()
            if echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()


@contextlib.contextmanager
def launcher_lock(run_dir: Path):
    """In a rank: the run's lock as its launcher holds it (ranks never take it themselves)."""
    launcher = int(os.environ.get(LAUNCHER_PID_ENV, "0"))
    if launcher not in runlock.holders(run_dir):
        raise UnetlabError(f"{run_dir}: a rank runs only under the launcher holding the run's lock "
                           f"(held by {runlock.describe_holder(run_dir)})")
    fd = os.open(Path(run_dir) / runlock.LOCK, os.O_RDWR | os.O_APPEND)
    held = runlock.adopt_lock(run_dir, fd, "unetlab rank")
    try:
        yield held
    finally:
        held.release()
        os.close(fd)
