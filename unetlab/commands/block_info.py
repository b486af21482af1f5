"""What ``unetlab plugins SLOT/NAME`` shows about one block, and how a name is looked up."""
from __future__ import annotations

import difflib
import fnmatch
import inspect

from ..errors import UnetlabError
from ..options import _TYPE_NAMES
from ..registry import BlockDef, Registry


def block_key(block: BlockDef) -> str:
    return f"{block.slot}/{block.name}"


def matching(registry: Registry, pattern: str) -> list[BlockDef]:
    """The blocks whose ``SLOT/NAME`` matches the shell-style ``pattern`` (fnmatch)."""
    return [b for _, b in sorted(registry.blocks.items()) if fnmatch.fnmatchcase(block_key(b), pattern)]


def find_block(registry: Registry, key: str) -> BlockDef:
    """The block named ``SLOT/NAME``, or one line offering the closest names."""
    slot, _, name = key.partition("/")
    if (slot, name) in registry.blocks:
        return registry.blocks[(slot, name)]
    keys = [block_key(b) for _, b in sorted(registry.blocks.items())]
    in_slot = sorted(n for s, n in registry.blocks if s == slot)
    if in_slot:  # a known slot: the closest names in it
        close = [f"{slot}/{n}" for n in difflib.get_close_matches(name, in_slot, n=3)]
    else:
        close = difflib.get_close_matches(key, keys, n=3)
    if not close and "/" not in key:  # a bare name: the blocks of that name in any slot
        close = [k for k in keys if k.endswith(f"/{key}")]
    hint = f"; did you mean {', '.join(close)}?" if close else f" (blocks: {', '.join(keys)})"
    raise UnetlabError(f"unknown block {key!r}{hint}")


def _type_name(option) -> str:
    text = _TYPE_NAMES.get(option.type, option.type.__name__)
    if option.item is not None:
        text += f"[{_TYPE_NAMES.get(option.item, option.item.__name__)}]"
    return text + (" or null" if option.nullable else "")


def _own_doc(block: BlockDef, cls) -> str:
    """The implementation class's own docstring, else its portable factory's (never a base
    class's, e.g. ``nn.Module``'s)."""
    doc = cls.__dict__.get("__doc__") if cls is not None else None
    if not doc and block.frameworks:
        factory = getattr(block.impls[block.frameworks[0]], "portable_class", None)
        doc = getattr(factory, "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


def describe_block(block: BlockDef) -> str:
    """Several lines: the block's description and docstring, options, provider, frameworks, and
    whether it takes the time embedding."""
    cls = block.implementation(block.frameworks[0]) if block.frameworks else None
    takes = bool(getattr(cls, "takes_time_embedding", False))
    lines = [f"{block_key(block)}: {block.doc}" if block.doc else block_key(block)]
    doc = _own_doc(block, cls)
    if doc and doc != block.doc:
        lines += ["", *("  " + line for line in doc.splitlines())]
    lines += ["", f"provider:        {block.provider}",
              f"frameworks:      {', '.join(block.frameworks) or 'none'}",
              f"time embedding:  {'takes it: called as block(x, emb)' if takes else 'no: called as block(x)'}"]
    if block.slot == "time_embedding":
        lines[-1] = "time embedding:  makes it: called as block(t)"
    lines += ["", "options:" if block.options else "options: none"]
    for option in block.options:
        text = f"  {option.name} ({_type_name(option)}, default {option.default!r})"
        if option.choices:
            text += f" one of {', '.join(map(repr, option.choices))}"
        lines.append(text + (f": {option.doc}" if option.doc else ""))
    if block.variations:
        lines += ["", "check_block also tries: " + "; ".join(map(str, block.variations))]
    return "\n".join(lines)
