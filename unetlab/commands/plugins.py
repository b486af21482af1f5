"""``unetlab plugins``: every registered block with its frameworks, options and provider."""
from __future__ import annotations

from tabulate import tabulate

from ..registry import SLOTS, get_registry


def add_parser(sub):
    p = sub.add_parser("plugins", help="list every block: slot, name, frameworks, options, provider")
    p.add_argument("--slot", choices=SLOTS, help="only this slot")
    return p


def block_rows(slot: str | None = None) -> list[dict]:
    registry = get_registry()
    rows = []
    for s in SLOTS:
        if slot and s != slot:
            continue
        for block in registry.blocks_in(s):
            rows.append({
                "slot": s, "name": block.name, "frameworks": ",".join(block.frameworks),
                "options": " ".join(o.describe() for o in block.options) or "-",
                "provider": block.provider, "description": block.doc,
            })
    return rows


def run(args):
    rows = block_rows(args.slot)
    print(tabulate([{k: v for k, v in r.items() if k != "description"} for r in rows],
                   headers="keys", tablefmt="simple", maxcolwidths=[None, None, None, 60, None]))
    registry = get_registry()
    print(f"\npresets: {', '.join(sorted(registry.presets))}")
    for failure in registry.failures:
        print(f"not loaded: {failure}")
    return 0
