"""``unetlab plugins``: every registered block with its frameworks, options and provider;
``--filter 'attention/*'`` narrows the list, ``unetlab plugins SLOT/NAME`` describes one block."""
from __future__ import annotations

from tabulate import tabulate

from ..errors import UnetlabError
from ..registry import SLOTS, get_registry
from .block_info import describe_block, find_block, matching


def add_parser(sub):
    p = sub.add_parser("plugins", help="list every block: slot, name, frameworks, options, provider")
    p.add_argument("block", nargs="?", metavar="SLOT/NAME",
                   help="describe this block: docstring, options, provider, time embedding")
    p.add_argument("--slot", choices=SLOTS, help="only this slot")
    p.add_argument("--filter", metavar="PATTERN", help="only blocks whose SLOT/NAME matches this shell "
                                                       "pattern, e.g. 'attention/*' or '*/adm'")
    return p


def block_rows(slot: str | None = None, pattern: str | None = None) -> list[dict]:
    registry = get_registry()
    chosen = {b.key for b in matching(registry, pattern)} if pattern else None
    rows = []
    for s in SLOTS:
        if slot and s != slot:
            continue
        for block in registry.blocks_in(s):
            if chosen is not None and block.key not in chosen:
                continue
            rows.append({
                "slot": s, "name": block.name, "frameworks": ",".join(block.frameworks),
                "options": " ".join(o.describe() for o in block.options) or "-",
                "provider": block.provider, "description": block.doc,
            })
    return rows


def run(args):
    registry = get_registry()
    if args.block:
        print(describe_block(find_block(registry, args.block)))
        return 0
    rows = block_rows(args.slot, args.filter)
    if not rows and args.filter:
        raise UnetlabError(f"no block matches {args.filter!r} (patterns match SLOT/NAME, e.g. 'attention/*')")
    print(tabulate([{k: v for k, v in r.items() if k != "description"} for r in rows],
                   headers="keys", tablefmt="simple", maxcolwidths=[None, None, None, 60, None]))
    print(f"\npresets: {', '.join(sorted(registry.presets))}")
    for failure in registry.failures:
        print(f"not loaded: {failure}")
    return 0
