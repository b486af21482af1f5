"""``unetlab ablate FILE`` for an ablation with adaptive seeds: rounds until decided."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tabulate import tabulate

from ..errors import UnetlabError
from ..reports.table import find_runs
from ..sweeps.ablation import check_data
from ..sweeps.adaptive import comparisons, first_round, run_adaptive
from ..sweeps.sweep import run_sweep
from .plan import print_plan
from .table import show_table


def print_adaptive_plan(ablation, root: Path) -> None:
    """Round 1's plan and the later rounds' runs already begun, and the most runs the rounds can take."""
    first = {r.name for r in first_round(ablation)}
    shown = [r for r in ablation.runs if r.name in first or (Path(root) / r.name).is_dir()]
    print_plan(dataclasses.replace(ablation, runs=tuple(shown)), root)
    plans = ", ".join(f"{f}: seeds {p.min}..{p.max} (alpha {p.alpha:g}, {p.spending} spending)"
                      for f, p in ablation.adaptive.items())
    print(f"adaptive seeds ({plans}): round 1 (and any later run begun) above, then one seed per round "
          f"for the undecided of {len(comparisons(ablation))} comparison(s) against {ablation.baseline!r} "
          f"on {ablation.decide_on}; at most {len(ablation.runs)} runs in all")


def print_verdicts(final: dict) -> None:
    """The final look of every comparison as a table."""
    rows = [{"comparison": label, "n": r["n"], "mean diff": f"{r['mean_diff']:+.4g}", "p": f"{r['p']:.3g}",
             "verdict": r["verdict"], "seeds needed": r["seeds_needed"] or ""} for label, r in final.items()]
    if rows:
        print(tabulate(rows, headers="keys", tablefmt="simple", disable_numparse=True))


def run_adaptive_command(args, ablation, root: Path, pool, engine) -> int:
    """``ablate FILE`` for adaptive seeds: the plan, then the rounds, then the verdicts and the table."""
    print_adaptive_plan(ablation, root)
    if args.status or args.dry_run:
        return 0
    if args.detach:
        raise UnetlabError("--detach: adaptive seeds wait for each round's runs to decide the next; "
                           "run it without --detach (e.g. in a Slurm job of its own)")
    check_data(ablation)
    print()
    if pool is not None and pool.size > 1:
        print(f"running up to {pool.size} runs at once: {pool.describe()}")

    def sweep(round_ablation):
        return run_sweep(round_ablation, root, progress=not args.no_progress, pool=pool, engine=engine)

    try:
        final = run_adaptive(ablation, root, sweep)
    except KeyboardInterrupt:
        print(f"\nstopped; rerun `unetlab ablate {args.file}{'' if args.runs == 'runs' else f' --runs {args.runs}'}` "
              f"to replay the finished rounds and go on")
        raise
    print(f"\nverdicts on {ablation.decide_on} against {ablation.baseline} (lower is better; "
          f"looks in {root / 'adaptive.jsonl'}):")
    print_verdicts(final)
    if root.is_dir() and find_runs(root):
        print()
        show_table(root, plots=None if args.no_plots else root / "plots")
    return 0
