"""``--engine slurm``: the runs that are not done, submitted through submitit as a Slurm job array.

Each array task runs :func:`unetlab.sweeps.engines.cluster.run_task` for its run: the run's worker
takes the run's lock (its heartbeat shows it held on that node), trains, and checkpoints on
SIGTERM, SIGUSR1 or submitit's SIGUSR2.  A task requeued (``scontrol requeue``, preemption, or
submitit's own requeue near the time limit) runs again and resumes the run from its
checkpoint.  The job ids are kept in ``RUNS/<ablation>/.slurm/jobs.json`` for ``--status``.
"""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

from . import cluster
from ...errors import UnetlabError
from ...run import jsonfiles
from ...run.launch import python_flags
from ...tool_output import tool_error
from .base import SweepResult
from .requirements import require

JOBS_DIR = ".slurm"
JOBS_FILE = "jobs.json"
#: sbatch's whole output when it refuses a submission (in JOBS_DIR).
SBATCH_LOG = "sbatch.log"
#: Squeue states of a task that has not ended yet.
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED"}


class SlurmTask:
    """The callable submitit pickles for each array task (a run folder as its argument)."""

    def __init__(self, cpu_only: bool):
        self.cpu_only = cpu_only

    def __call__(self, run_dir: str) -> dict:
        env = {}
        if self.cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ""
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        if cpus.isdigit() and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = cpus
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "?"))
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        where = f" (slurm job {job}{f'_{task}' if task else ''}, restart {restarts})"
        return cluster.run_task(run_dir, env, where)

    def checkpoint(self, run_dir: str):
        """submitit's hook before it requeues the task (time limit or preemption): the worker
        checkpoints and stops, and the same call runs again."""
        import submitit

        cluster.stop_worker()
        return submitit.helpers.DelayedSubmission(self, run_dir)


def executor_parameters(options: dict[str, str], gpus: int) -> dict:
    """submitit ``update_parameters`` for ``--slurm`` options: its own names (partition, time,
    gpus_per_task, cpus_per_task, account, mem, qos, constraint, ...) go as they are, any other
    key as the ``sbatch --KEY=VALUE`` flag of that name."""
    from submitit.slurm.slurm import SlurmExecutor

    valid = SlurmExecutor._valid_parameters()
    params: dict = {"time": None, "cpus_per_task": 1, "additional_parameters": {"requeue": True}}
    if gpus:
        params["gpus_per_task"] = gpus
    for key, value in options.items():
        value = int(value) if value.isdigit() else value
        if key in ("setup", "teardown", "srun_args", "additional_parameters", "map_count"):
            raise UnetlabError(f"--slurm {key}: not settable from the command line")
        if key in valid:
            params[key] = value
        else:
            params["additional_parameters"][key] = value
    if params.get("gpus_per_task") == 0:
        params.pop("gpus_per_task")
    return params


class SlurmEngine:
    """Submit, then wait (showing the runs' steps) unless detached."""

    name = "slurm"

    def __init__(self, options: dict[str, str], detach: bool = False, cpu_only: bool = False):
        self.options, self.detach, self.cpu_only = options, detach, cpu_only

    def run(self, ablation, root: Path, progress: bool = True, echo=print):
        root = Path(root)
        result = SweepResult()
        todo, result.outcome = cluster.prepare(ablation, root, echo)
        if not todo:
            return result
        jobs = self.submit(root, todo)
        ids = sorted({j.split("_")[0] for j in jobs.values()})
        echo(f"submitted {len(todo)} run(s) to Slurm as job array {', '.join(ids)} "
             f"(logs in {root / JOBS_DIR})")
        if self.detach:
            echo(f"detached: `unetlab ablate {ablation.source or ablation.name} --status` reports later")
            result.outcome.update({name: "submitted" for name in jobs})
            return result
        names = list(jobs)
        result.outcome.update(cluster.watch(names, root, lambda: active_runs(jobs), progress, echo,
                                            ablation.name))
        return result

    def submit(self, root: Path, runs) -> dict[str, str]:
        """Submit ``runs`` (one array per GPU count); returns run name -> Slurm job id."""
        submitit = require("slurm")
        folder = root / JOBS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        by_gpus: dict[int, list] = {}
        for run in runs:
            by_gpus.setdefault(0 if self.cpu_only else run.spec["resources"]["gpus"], []).append(run)
        jobs: dict[str, str] = {}
        for gpus, group in by_gpus.items():
            executor = submitit.SlurmExecutor(folder=folder / "%j", python=f"{sys.executable} {python_flags()}".strip())
            try:
                executor.update_parameters(job_name=f"unetlab-{root.name}", **executor_parameters(self.options, gpus))
            except ValueError as exc:
                raise UnetlabError(f"--slurm: {str(exc).splitlines()[0]}") from None
            try:
                submitted = executor.map_array(SlurmTask(self.cpu_only), [str(root / r.name) for r in group])
            except Exception as exc:  # noqa: BLE001 - sbatch's refusal, in one line
                raise tool_error("sbatch refused the job array", str(exc) or type(exc).__name__,
                                 folder / SBATCH_LOG, hint=refusal_hint(str(exc), gpus)) from None
            jobs.update({run.name: job.job_id for run, job in zip(group, submitted)})
        save_jobs(root, jobs)
        return jobs


def refusal_hint(output: str, gpus: int) -> str:
    """What to do about a refusal sbatch is known to give: a GPU request on a cluster without
    GPUs ("Invalid generic resource (gres) specification") is met with ``--gpus none``."""
    if "gres" in output.lower() and gpus > 0:
        return (f"each run asks Slurm for {gpus} GPU(s) (resources.gpus) and this cluster has no such "
                f"generic resource: run on its CPUs with --gpus none")
    return ""


def save_jobs(root: Path, jobs: dict[str, str]) -> None:
    """Add this submission's run -> job id to ``.slurm/jobs.json`` (the newest job per run wins)."""
    path = Path(root) / JOBS_DIR / JOBS_FILE
    known = jsonfiles.read_json(path, {}) or {}
    history = known.get("submissions", [])
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jobs": jobs})
    jsonfiles.write_json(path, {"runs": {**known.get("runs", {}), **jobs}, "submissions": history})


def load_jobs(root: Path) -> dict[str, str]:
    """run name -> the Slurm job id of its latest submission (empty when never submitted)."""
    return (jsonfiles.read_json(Path(root) / JOBS_DIR / JOBS_FILE, {}) or {}).get("runs", {})


def task_states(job_ids) -> dict[str, str] | None:
    """Slurm job id (``123_4``) -> squeue state for the tasks of these arrays that squeue still
    knows; None when squeue cannot be asked."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return {} if "Invalid job id" in out.stderr else None
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def active_runs(jobs: dict[str, str]) -> set[str]:
    """The runs whose task is queued or running (all of them while squeue cannot be asked)."""
    states = task_states(jobs.values())
    if states is None:
        return set(jobs)
    return {run for run, job in jobs.items() if states.get(job) in ACTIVE_STATES}


def status_lines(root: Path) -> list[str]:
    """``--status``: each submitted run's job id and its task's state."""
    jobs = load_jobs(root)
    if not jobs:
        return []
    states = task_states(jobs.values())
    lines = []
    for run, job in jobs.items():
        state = "(squeue unavailable)" if states is None else states.get(job, "ended")
        lines.append(f"{run}: slurm job {job}: {state.lower()}")
    return lines


