"""The ``seeds`` key of an ablation file: fixed seeds, adaptive seeds, or either per framework.

- a list (or one int): those seeds, as always;
- ``{min: 3, max: 10, until: decided}`` (optional ``alpha: 0.05``, ``spending: pocock`` or
  ``obrien-fleming``): adaptive seeds -- seeds 0..min-1 first, then one more seed per round for
  the variants the stopping rule (:mod:`unetlab.stats.sequential`) has not decided, up to max;
- a mapping of every framework of the ablation to either, e.g.
  ``{torch: {min: 3, max: 8, until: decided}, jittor: [0]}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import UnetlabError
from ..seeds import check_seed
from ..stats.sequential import MAX_SEEDS, SPENDING, look_levels, usable_size

ADAPTIVE_KEYS = ("min", "max", "until", "alpha", "spending")


@dataclass(frozen=True)
class AdaptiveSeeds:
    """Seeds 0..max-1, run in rounds until the stopping rule decides (see :mod:`unetlab.sweeps.adaptive`)."""

    min: int
    max: int
    alpha: float = 0.05
    spending: str = "pocock"

    @property
    def seeds(self) -> list[int]:
        return list(range(self.max))


def _int(where: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UnetlabError(f"{where}: expected an int from {low} to {high}, got {value!r}")
    return value


def adaptive_seeds(value: Mapping, where: str = "seeds") -> AdaptiveSeeds:
    """Validate ``{min, max, until: decided[, alpha, spending]}``."""
    unknown = [k for k in value if k not in ADAPTIVE_KEYS]
    if unknown:
        raise UnetlabError(f"{where}.{unknown[0]}: unknown key (adaptive seeds take: {', '.join(ADAPTIVE_KEYS)})")
    for key in ("min", "max", "until"):
        if key not in value:
            raise UnetlabError(f"{where}: adaptive seeds need {key} (e.g. {{min: 3, max: 10, until: decided}})")
    if value["until"] != "decided":
        raise UnetlabError(f"{where}.until: expected 'decided' (stop a variant once the stopping rule decides), "
                           f"got {value['until']!r}")
    low = _int(f"{where}.min", value["min"], 2, MAX_SEEDS)
    high = _int(f"{where}.max", value["max"], low, MAX_SEEDS)
    alpha = value.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 0.5:
        raise UnetlabError(f"{where}.alpha: expected a false-positive rate in (0, 0.5], got {alpha!r}")
    spending = value.get("spending", "pocock")
    if spending not in SPENDING:
        raise UnetlabError(f"{where}.spending: unknown spending function {spending!r} "
                           f"(valid: {', '.join(SPENDING)})")
    levels = look_levels(low, high, float(alpha), spending)
    if not any(usable_size(level, n) for n, level in levels.items()):
        raise UnetlabError(f"{where}.max: with at most {high} seeds the exact sign-flip test can never reach "
                           f"alpha {alpha} (its smallest p-value is 2/2^n); raise max")
    return AdaptiveSeeds(low, high, float(alpha), spending)


def fixed_seeds(value: Any, where: str = "seeds") -> list[int]:
    """Validate a list of distinct seeds in [0, 2**32) (one int is a list of one)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UnetlabError(f"{where}: expected a non-empty list of int, or {{min, max, until: decided}}, "
                           f"got {value!r}")
    for i, seed in enumerate(value):
        check_seed(seed, f"{where}[{i}]")
    if len(set(value)) != len(value):
        raise UnetlabError(f"{where}: repeated seed in {value}")
    return value


def _one_plan(value: Any, where: str) -> list[int] | AdaptiveSeeds:
    return adaptive_seeds(value, where) if isinstance(value, Mapping) else fixed_seeds(value, where)


def parse_seeds(value: Any, frameworks: list[str]) -> dict[str, list[int] | AdaptiveSeeds]:
    """framework -> its seed list or :class:`AdaptiveSeeds` (default: seed 0 everywhere)."""
    if value is None:
        return {f: [0] for f in frameworks}
    if isinstance(value, Mapping) and value and not set(map(str, value)) & set(ADAPTIVE_KEYS):
        unknown = [k for k in value if k not in frameworks]
        if unknown:
            raise UnetlabError(f"seeds.{unknown[0]}: not a framework of this ablation (frameworks: "
                               f"{', '.join(frameworks)}; adaptive seeds take: {', '.join(ADAPTIVE_KEYS)})")
        missing = [f for f in frameworks if f not in value]
        if missing:
            raise UnetlabError(f"seeds.{missing[0]}: missing (seeds given per framework name every framework: "
                               f"{', '.join(frameworks)})")
        return {f: _one_plan(value[f], f"seeds.{f}") for f in frameworks}
    plan = _one_plan(value, "seeds")
    return {f: plan for f in frameworks}


def seeds_of(plan: list[int] | AdaptiveSeeds) -> list[int]:
    """Every seed a plan may run."""
    return plan.seeds if isinstance(plan, AdaptiveSeeds) else list(plan)
