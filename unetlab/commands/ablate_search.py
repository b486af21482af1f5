"""``unetlab ablate FILE`` for an ablation with a sampled ``search:``: its plan, its trials, its table."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tabulate import tabulate

from ..reports.table import find_runs
from ..sweeps.ablation import check_data
from ..sweeps.search import run_search
from ..sweeps.search_optuna import JOURNAL, existing_studies, study_name
from ..sweeps.search_spec import metric_label
from .table import show_table


def print_search_plan(ablation, root: Path, storage: str | None, pool) -> None:
    """One row per study (variant x framework): its trials so far against the total."""
    search = ablation.search
    where = storage or str(root / JOURNAL)
    studies = existing_studies(root, storage)
    rows = []
    for template in ablation.runs:
        trials = studies.get(study_name(template), [])
        states = Counter(t.state.name.lower() for t in trials)
        rows.append({"study": study_name(template), "variant": template.variant, "framework": template.framework,
                     "seed": template.seed, "trials": f"{len(trials)}/{search.trials}",
                     "states": ", ".join(f"{n} {s}" for s, n in states.items()) or "new"})
    print(f"ablation {ablation.name}: {search.method} search, {search.trials} trials per study "
          f"({min(search.parallel, pool.size)} at once in {pool.describe()}), objective {metric_label(search.metric)} ({search.mode}), pruner "
          f"{search.pruning.describe()}; studies in {where}; trials in {root}/<variant>-t<N>-<framework>-s<seed>")
    print(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))


def run_search_command(args, ablation, root: Path, pool, engine=None) -> int:
    print_search_plan(ablation, root, args.storage, pool)
    if args.dry_run or args.status:
        return 0
    check_data(ablation)
    print()
    try:
        result = run_search(ablation, root, progress=not args.no_progress, pool=pool, storage=args.storage,
                            **({} if engine is None else {"engine": engine}))
    except KeyboardInterrupt:
        print(f"\nstopped; running trials are checkpointed -- rerun `unetlab ablate {args.file}"
              f"{'' if args.runs == 'runs' else f' --runs {args.runs}'}` to resume them as the same trials")
        raise
    if root.is_dir() and find_runs(root):
        print()
        show_table(root, plots=None if args.no_plots else root / "plots")
    print()
    for line in result.studies:
        print(line)
    print(f"(best trials, importances and plots: unetlab table {root} --search)")
    if result.failed:
        print(f"\n{len(result.failed)} trial(s) failed: {', '.join(result.failed)} "
              f"(reasons in the table; logs in each run's worker.log)")
        return 1
    return 0
