"""Construct one block, turning the errors a block raises for its options into one line.

A block may reject its options (or its channel counts) with ``UnetlabError``, ``ValueError``
or ``TypeError``; whichever it raises, the model build stops with one :class:`UnetlabError`
naming the block, its slot and its level, e.g.
``attention/linear at level 1: heads must divide 64 channels``.
"""
from __future__ import annotations

from ..errors import UnetlabError

#: what a block's constructor may raise for options or widths it cannot take
OPTION_ERRORS = (UnetlabError, ValueError, TypeError)


def block_label(slot: str, name: str, level: int | None = None) -> str:
    """``slot/name`` and, when the block sits in a level, ``at level N``."""
    return f"{slot}/{name}" + (f" at level {level}" if level is not None else "")


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def build_block(cls, ctx, in_channels: int, out_channels: int, options: dict, label: str):
    """``cls(ctx, in_channels, out_channels, **options)``, or one UnetlabError prefixed by ``label``."""
    try:
        return cls(ctx, in_channels, out_channels, **options)
    except OPTION_ERRORS as exc:
        raise UnetlabError(f"{label}: {one_line(exc)}") from None
