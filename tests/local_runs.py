"""The reference the pool and engine tests compare with: an ablation's runs trained here, one by one."""
from __future__ import annotations

from pathlib import Path

from unetlab.run import rundir
from unetlab.run.worker import work


def run_here(ablation, root: Path) -> Path:
    """Train and measure each run of ``ablation`` in this process, one after another, into ``root``,
    as a sweep's worker does (the run's config.json, then :func:`unetlab.run.worker.work`), without
    starting a worker process per run.  Call it with one torch thread (the ``one_thread``
    fixture) to match workers started with ``OMP_NUM_THREADS=1`` bit for bit.  Returns ``root``."""
    for run in ablation.runs:
        run_dir = root / run.name
        rundir.write_config(run_dir, run.config())
        summary = work(run_dir)
        assert summary["status"] == "done", (run.name, summary)
    return root
