"""The option sets :func:`unetlab.testing.check_block` tries on a block.

Given options: that one set.  Otherwise the block's defaults, then, one option changed at a
time from the defaults: every other value of an option with ``choices`` and the other value of
each ``bool`` option; then the option sets the block declares in ``BlockDef.variations``
(values no rule can derive, e.g. ``heads: 2``).  A derived set that the block's own ``check``
rejects (options that cannot go together) is skipped; a declared one must be valid.
"""
from __future__ import annotations

from typing import Mapping

from ..errors import UnetlabError
from ..registry import BlockDef


def derived_changes(block: BlockDef) -> list[dict]:
    """One-option changes from the defaults: other choices, flipped booleans."""
    changes = []
    for option in block.options:
        if option.choices:
            changes += [{option.name: value} for value in option.choices if value != option.default]
        elif option.type is bool and option.default is not None:
            changes.append({option.name: not option.default})
    return changes


def option_sets(block: BlockDef, given: Mapping | None = None) -> tuple[list[dict], list[str]]:
    """``(resolved option sets, notes on skipped ones)`` for ``block`` (see the module doc)."""
    where = f"{block.slot}/{block.name}"
    if given is not None:
        return [block.resolve_options(dict(given), where)], []
    sets, notes = [block.resolve_options({}, where)], []
    for change in derived_changes(block):
        try:
            resolved = block.resolve_options(change, where)
        except UnetlabError as exc:
            notes.append(f"skipped {change}: {exc}")
            continue
        if resolved not in sets:
            sets.append(resolved)
    for declared in block.variations:
        resolved = block.resolve_options(dict(declared), f"{where} (declared variation {dict(declared)})")
        if resolved not in sets:
            sets.append(resolved)
    return sets, notes


def changed_from_defaults(block: BlockDef, options: Mapping) -> dict:
    """The options whose value differs from the block's default (a short label for a set)."""
    defaults = {o.name: o.default for o in block.options}
    return {k: v for k, v in options.items() if defaults.get(k, object()) != v}
