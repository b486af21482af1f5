"""The plan of an ablation as the ``ablate`` commands print it: one row per run and its status."""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from ..sweeps.sweep import plan_rows


def print_plan(ablation, root: Path) -> None:
    """Print how many runs the ablation has in ``root`` by status, then a row per run."""
    rows = plan_rows(ablation, root)
    counts = {}
    for r in rows:
        key = r["status"].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    show = [{k: v for k, v in r.items() if k != "grid" or any(x["grid"] for x in rows)} for r in rows]
    print(f"ablation {ablation.name}: {len(rows)} runs in {root} "
          f"({', '.join(f'{n} {s}' for s, n in counts.items())})")
    print(tabulate(show, headers="keys", tablefmt="simple", disable_numparse=True))
