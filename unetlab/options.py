"""Declared block options: typed, defaulted, validated, and never silently ignored."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import UnetlabError

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


@dataclass(frozen=True)
class Option:
    """One option of a block: a name, a Python type, a default and a line of help.

    ``choices`` restricts the value to a set; ``nullable`` lets ``None`` stand for "unset".
    """

    name: str
    type: type
    default: Any
    doc: str = ""
    choices: tuple = ()
    nullable: bool = False
    item: type | None = None  # element type when ``type`` is list


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
        return value

    def describe(self) -> str:
        text = f"{self.name}={self.default!r}"
        if self.choices:
            text += " (" + "|".join(map(str, self.choices)) + ")"
        return text


@dataclass(frozen=True)
class OptionSet:
    """The options of one block, resolved against what a spec gives."""

    options: tuple[Option, ...] = field(default_factory=tuple)

    def names(self) -> list[str]:
        return [o.name for o in self.options]

    def resolve(self, given: dict, where: str) -> dict:
        """Merge ``given`` over the defaults; an unknown name is an error listing the valid ones."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            raise UnetlabError(f"{where}: unknown option {unknown[0]!r} (valid options: {valid})")
        return {name: opt.check(given[name], f"{where}.{name}") if name in given else opt.default
                for name, opt in known.items()}
