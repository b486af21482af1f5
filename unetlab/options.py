"""Declared block options: typed, defaulted, validated, and never silently ignored."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import UnetlabError

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


@dataclass(frozen=True)
class Option:
    """One option of a block: a name, a Python type, a default and a line of help.

    ``choices`` restricts the value to a set; ``nullable`` lets ``None`` stand for "unset";
    ``low`` and ``high`` bound a number (inclusive; ``low_open`` excludes ``low`` itself), and a
    float option takes finite numbers only.
    """

    name: str
    type: type
    default: Any
    doc: str = ""
    choices: tuple = ()
    nullable: bool = False
    item: type | None = None  # element type when ``type`` is list
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to the option's type, or raise naming ``where``."""
        if value is None and self.nullable:
            return None
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise UnetlabError(
                f"{where}: expected {_TYPE_NAMES.get(self.type, self.type.__name__)}, "
                f"got {type(value).__name__} {value!r}")
        if self.item is not None:
            value = [Option(f"{self.name}[{i}]", self.item, None).check(v, f"{where}[{i}]")
                     for i, v in enumerate(value)]
        if self.choices and value not in self.choices:
            raise UnetlabError(f"{where}: {value!r} is not one of {', '.join(map(repr, self.choices))}")
        if self.type in (int, float):
            check_number(value, where, self.low, self.high, self.low_open)
        return value

    def describe(self) -> str:
        text = f"{self.name}={self.default!r}"
        if self.choices:
            text += " (" + "|".join(map(str, self.choices)) + ")"
        elif self.low is not None or self.high is not None:
            text += f" ({range_text(self.low, self.high, self.low_open)})"
        return text


def range_text(low=None, high=None, low_open: bool = False) -> str:
    """``> 0``, ``>= 0``, ``<= 9`` or ``in [0, 9]`` / ``in (0, 1]``."""
    def text(x):
        return f"{x:g}" if isinstance(x, float) else str(x)
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{text(low)}, {text(high)}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {text(low)}"
    return f"<= {text(high)}"


def check_number(value, where: str, low=None, high=None, low_open: bool = False):
    """``value`` if it is finite and within the bounds, else a one-line error naming ``where``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UnetlabError(f"{where}: must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        raise UnetlabError(f"{where}: must be {range_text(low, high, low_open)}, got {value}")
    return value


@dataclass(frozen=True)
class OptionSet:
    """The options of one block, resolved against what a spec gives."""

    options: tuple[Option, ...] = field(default_factory=tuple)

    def names(self) -> list[str]:
        return [o.name for o in self.options]

    def resolve(self, given: dict, where: str) -> dict:
        """Merge ``given`` over the defaults; an unknown name is an error listing the valid ones."""
        if not isinstance(given, Mapping):
            raise UnetlabError(f"{where}: expected a mapping of option: value, got {type(given).__name__} "
                               f"{given!r}")
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known), key=str)
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            raise UnetlabError(f"{where}: unknown option {unknown[0]!r} (valid options: {valid})")
        return {name: opt.check(given[name], f"{where}.{name}") if name in given else opt.default
                for name, opt in known.items()}
