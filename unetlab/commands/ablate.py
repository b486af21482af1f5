"""``unetlab ablate FILE``: validate an ablation, show its plan, run it, print the table."""
from __future__ import annotations

from pathlib import Path


from ..errors import UnetlabError
from ..reports.table import find_runs
from ..sweeps.ablation import check_data, load_ablation
from ..sweeps.engines import build
from ..sweeps.engines.on_slurm import status_lines
from ..sweeps.pool import Pool
from ..sweeps.sweep import run_status, run_sweep
from ..argtypes import positive_int
from .ablate_adaptive import run_adaptive_command
from .ablate_search import run_search_command
from .plan import print_plan
from .table import show_table


def add_parser(sub):
    p = sub.add_parser("ablate", help="run an ablation file: variants x grid x seeds x frameworks")
    p.add_argument("file", help="ablation YAML (name, base, variants, grid, seeds, frameworks; seeds may be "
                                "adaptive: {min, max, until: decided})")
    p.add_argument("--runs", default="runs", help="runs folder (default: runs); runs go to RUNS/<ablation>/")
    p.add_argument("--dry-run", action="store_true", help="validate and show the plan, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--gpus", default=None, metavar="auto|none|0,1,...",
                   help="run one run per GPU at once (a run with resources.gpus: k takes k); auto (default): "
                        "every visible GPU, or one run at a time on the CPU when there is none; none: the CPU")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="run N runs at once on the CPU, the cores split between them")
    p.add_argument("--no-plots", action="store_true", help="do not write RUNS/<ablation>/plots/*.png")
    p.add_argument("--engine", default="local", metavar="local|slurm|ray",
                   help="where the runs execute: this machine (default), a Slurm job array (submitit), "
                        "or Ray tasks; the runs folder must be on storage every node sees")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a Slurm option for --engine slurm (partition, time, gpus_per_task, account, mem, "
                        "any sbatch flag); repeatable")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster for --engine ray (default: a local Ray instance)")
    p.add_argument("--detach", action="store_true",
                   help="with --engine slurm: submit and return at once (see --status)")
    p.add_argument("--status", action="store_true",
                   help="report the runs' statuses (and their Slurm jobs) and run nothing")
    p.add_argument("--storage", metavar="URL", help="a search's studies in this database (e.g. postgresql://...) "
                                                    "instead of the journal file RUNS/<ablation>/search.journal")
    return p


def show_jobs(root: Path) -> None:
    """The Slurm jobs of the ablation's latest submissions and their tasks' states."""
    lines = status_lines(root)
    if lines:
        print("\nslurm jobs:")
        print("\n".join(f"  {line}" for line in lines))


def run(args):
    if args.engine == "local":
        pool = Pool.build(args.gpus, args.jobs)  # a bad --gpus or --jobs: one line, nothing run
    else:
        pool = None
        if args.jobs is not None or args.gpus not in (None, "auto", "none"):
            raise UnetlabError(f"--jobs and --gpus ids place runs on this machine; with --engine {args.engine} "
                               f"the cluster places them (--gpus none: run on the CPU)")
    # a bad engine option, or Slurm/Ray not installed: one line, nothing run
    engine = build(args.engine, args.slurm, args.ray_address, args.detach, cpu_only=args.gpus == "none")
    ablation = load_ablation(args.file)
    root = Path(args.runs) / ablation.name
    if args.status and not Path(args.runs).is_dir():
        raise UnetlabError(f"--runs {args.runs}: no such folder, so no run of {ablation.name} to report "
                           f"(check --runs, or run the ablation without --status)")
    if ablation.search is not None:  # a sampled search: trials asked of Optuna
        if args.detach:
            raise UnetlabError("--detach: a search waits for its trials (it asks Optuna for the next ones "
                               "as they end); run it without --detach, e.g. in a Slurm job of its own")
        if engine is not None:  # the cluster places the trials: one lane per trial at once
            pool = Pool((), ablation.search.parallel, None, pin=False)
        return run_search_command(args, ablation, root, pool, engine=engine)
    if ablation.adaptive:  # rounds of seeds until the comparisons are decided
        return run_adaptive_command(args, ablation, root, pool, engine)
    print_plan(ablation, root)
    if args.status:
        show_jobs(root)
        return 0
    if args.dry_run:
        return 0
    check_data(ablation)
    print()
    if pool is not None and pool.size > 1:
        print(f"running up to {pool.size} runs at once: {pool.describe()}")
    try:
        result = run_sweep(ablation, root, progress=not args.no_progress, pool=pool, engine=engine)
    except KeyboardInterrupt:
        if engine is not None:
            print("\nstopped waiting; the runs go on on the cluster -- "
                  f"`unetlab ablate {args.file} --status` reports them")
            raise
        print(f"\nstopped; the current run is marked interrupted -- rerun `unetlab ablate {args.file}"
              f"{'' if args.runs == 'runs' else f' --runs {args.runs}'}` to resume it")
        raise
    if args.detach:
        return 0
    if root.is_dir() and find_runs(root):
        print()
        show_table(root, plots=None if args.no_plots else root / "plots")
    elsewhere = [k for k, v in result.outcome.items() if v == "elsewhere"]
    if elsewhere:
        print(f"\n{len(elsewhere)} run(s) were running in another process: {', '.join(elsewhere)}")
    failed = [r.name for r in ablation.runs if result.outcome.get(r.name) == "failed"
              or run_status(root / r.name) == "failed"]
    if failed:
        print(f"\n{len(failed)} run(s) failed: {', '.join(failed)} "
              f"(reasons in the table; logs in each run's worker.log)")
        return 1
    return 0
