"""``python -m unetlab.run.rank RUN_DIR [--progress] [--stop-after K]``: one rank of a data-parallel run.

Started N times by the launcher (see :mod:`unetlab.run.distributed`), never by hand: it trains the
run its ``config.json`` describes as one of N ranks, under the lock the launcher holds.
Exit status: 0 trained (done or partial), 1 failed, 2 bad use, 130 interrupted.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import traceback

from . import distributed, jsonfiles, rundir
from ..errors import UnetlabError
from .trainer import train_run


def train_rank(run_dir: Path, progress: bool = False, stop_after: int | None = None) -> dict:
    """Train this rank's share of the run in ``run_dir`` (rank 0 writes the run's files)."""
    config = jsonfiles.read_json(run_dir / rundir.CONFIG)
    if not config or "spec" not in config or "run" not in config:
        raise UnetlabError(f"{run_dir}: not a run folder (no readable {rundir.CONFIG})")
    run = config["run"]
    identity = {k: v for k, v in run.items() if k not in ("framework", "seed")}
    try:
        return train_run(config["spec"], run_dir, run["framework"], seed=run["seed"], identity=identity,
                         progress=progress and distributed.world().writes, stop_after=stop_after)
    finally:
        backend = sys.modules.get(f"unetlab.frameworks.{run['framework']}_backend")
        if backend is not None:  # not when importing the framework failed
            backend.close_world()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unetlab.run.rank")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--stop-after", type=int, default=None)
    args = p.parse_args(argv)
    try:
        w = distributed.world()
        if not w.distributed:
            raise UnetlabError(f"a rank of a data-parallel run is started by its launcher "
                               f"({distributed.NPROC_ENV} unset); use unetlab train --nproc N")
        train_rank(args.run_dir, args.progress, args.stop_after)
        return 0
    except KeyboardInterrupt:
        return 130
    except UnetlabError as exc:
        print(f"unetlab rank: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - rank 0 has recorded it in the summary
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
