"""``--engine ray [--ray-address ADDR]``: each run that is not done as one Ray task.

A task asks Ray for ``num_gpus`` = the run's ``resources.gpus`` (none with ``--gpus none``) and
one CPU, and runs :func:`unetlab.sweeps.engines.cluster.run_task`: Ray sets ``CUDA_VISIBLE_DEVICES`` to
the GPUs it assigned; a CPU run sets it empty itself (Ray no longer does).  With no address a
local Ray instance is started for the command and shut down after it; ``ADDR`` (or ``auto``)
joins an existing cluster.  Ray tasks end with the command: there is no ``--detach`` for Ray.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import cluster
from ...errors import UnetlabError
from ...run import rundir
from ...run.rundir import Status
from ...tool_output import log_size, output_into, read_log, tool_error
from .base import SweepResult
from .requirements import require


def ray_task(run_dir: str, gpus: int) -> dict:
    """The body of one Ray task (on whichever node Ray placed it)."""
    env = {"CUDA_VISIBLE_DEVICES": ""} if gpus == 0 else {}
    env.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    gpu_ids = os.environ.get("CUDA_VISIBLE_DEVICES", "") if gpus else ""
    return cluster.run_task(run_dir, env, f" (ray task, GPUs {gpu_ids or 'none'})")


class RayEngine:
    """Start one Ray task per run and wait for them, showing the runs' steps."""

    name = "ray"

    def __init__(self, address: str | None = None, cpu_only: bool = False):
        self.address, self.cpu_only = address, cpu_only

    def run(self, ablation, root: Path, progress: bool = True, echo=print):
        ray = require("ray")
        root = Path(root)
        result = SweepResult()
        if all(rundir.run_status(root / run.name) == Status.DONE for run in ablation.runs):
            result.outcome = {run.name: "skipped-done" for run in ablation.runs}
            return result
        started_here = not ray.is_initialized()
        if started_here:
            log = Path(tempfile.gettempdir()) / f"unetlab-ray-{os.getpid()}.log"
            start = log_size(log)
            try:
                with output_into(log):  # Ray logs while it starts: kept out of the terminal
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - Ray's refusal (ConnectionError, ValueError...), in one line
                raise tool_error(f"--engine ray{f' --ray-address {self.address}' if self.address else ''}",
                                 read_log(log, start) + f"\n{type(exc).__name__}: {exc}", log, saved=True) from None
        try:
            gpus = {run.name: 0 if self.cpu_only else run.spec["resources"]["gpus"] for run in ablation.runs}
            have = ray.cluster_resources().get("GPU", 0)
            short = [n for n, k in gpus.items() if k > have]
            if short:  # checked before any run folder is written
                raise UnetlabError(f"{short[0]}: resources.gpus is {gpus[short[0]]} but the Ray cluster has "
                                   f"{have:g} GPU(s) (run on the CPU with --gpus none)")
            todo, result.outcome = cluster.prepare(ablation, root, echo)
            if not todo:
                return result
            remote = ray.remote(ray_task)
            refs = {run.name: remote.options(num_gpus=gpus[run.name], num_cpus=1, max_retries=0)
                    .remote(str(root / run.name), gpus[run.name]) for run in todo}
            echo(f"started {len(refs)} run(s) as Ray tasks on {self.address or 'a local Ray instance'}")

            def active() -> set[str]:
                done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0)
                ended = set(done)
                return {name for name, ref in refs.items() if ref not in ended}

            result.outcome.update(cluster.watch(list(refs), root, active, progress, echo, ablation.name))
            for name, ref in refs.items():  # a task that raised (not a run that failed) is named
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001
                    echo(f"{name}: its Ray task failed: {str(exc).splitlines()[0]}")
                    result.outcome[name] = "failed"
        finally:
            if started_here:
                ray.shutdown()
        return result
