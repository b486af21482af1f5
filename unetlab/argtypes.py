"""Argument types for the command line: numbers checked for their range as they are parsed,
so ``-n 0`` or ``-lr -1`` is refused in one line before anything runs or is written."""
from __future__ import annotations

import argparse
import math

from .errors import UnetlabError
from .seeds import check_seed


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _in_range(kind, text: str, ok, need: str):
    """``text`` as ``kind`` when ``ok(value)``; otherwise "must be NEED, got TEXT"."""
    value = _number(kind, text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {need}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0."""
    return _in_range(int, text, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _in_range(int, text, lambda v: v >= 0, ">= 0")


def at_least_two(text: str) -> int:
    """An integer >= 2 (a Frechet distance needs two images)."""
    return _in_range(int, text, lambda v: v >= 2, "at least 2")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _in_range(float, text, lambda v: v > 0, "positive")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _in_range(float, text, lambda v: v >= 0, ">= 0")


def seed_type(text: str) -> int:
    """A seed: an integer in [0, 2**32) (see :mod:`unetlab.seeds`)."""
    try:
        return check_seed(_number(int, text), "")
    except UnetlabError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip(": ")) from None


def positive_int_list(text: str) -> list[int]:
    """A comma list of integers > 0 (``16,128``)."""
    return [positive_int(part.strip()) for part in text.split(",")]


def choice_list(choices):
    """An argument type: a non-empty comma list of names from ``choices`` (``torch,jittor``)."""
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",")]
        if not any(names) or not all(names):
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(choices)}, got {text!r}")
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(choices)}")
        return list(dict.fromkeys(names))
    return parse


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (``-h`` still shows usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")
