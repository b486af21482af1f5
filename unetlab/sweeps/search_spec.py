"""The ``search:`` section of an ablation file, validated without Optuna's help.

::

    search:
      method: tpe            # grid (the ablation's grid, the default) | random | tpe
      trials: 24             # trials per study (one study per variant x framework)
      parallel: 4            # trials of a study at once, in the sweep's pool
      seed: 0                # the sampler's seed
      objective: {metric: fid, mode: min}
      space:
        train.lr: {log_uniform: [1.0e-5, 1.0e-3]}
        model.blocks.attention: {choice: [ddpm, {name: multihead, heads: 4}]}
      pruner: {asha: {metric: loss, min_steps: 2000, reduction_factor: 3}}   # or median, or none

``method: grid`` runs today's expansion: its space may hold only ``choice`` axes, which join the
ablation's ``grid``.  Everything here is plain data; :mod:`unetlab.sweeps.search` turns it into Optuna's
distributions, sampler and pruner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from typing import Any, Mapping

import numpy as np

from ..errors import UnetlabError
from ..reports.table import objective_column
from ..seeds import check_seed

METHODS = ("grid", "random", "tpe")
SEARCH_KEYS = ("method", "trials", "parallel", "seed", "objective", "space", "pruner")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
PRUNERS = {"asha": ("metric", "min_steps", "reduction_factor"),
           "median": ("metric", "min_steps", "startup_trials"),
           "none": ()}
#: Logged metrics (metrics.jsonl fields) a pruner may read while a run trains; lower is better.
PRUNE_METRICS = ("loss", "trailing_loss", "fid")
INSTALL_HINT = "pip install 'unetlab[search]'"
#: The most values of an ``int_uniform`` axis checked before a search runs (all of a smaller range).
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class Dimension:
    """One axis of the search space: a spec key (dotted), its kind and its bounds or choices."""

    key: str
    kind: str
    values: tuple

    def candidates(self) -> list:
        """Values that together exercise the axis' validation: every choice; every integer of an
        ``int_uniform`` range (at most :data:`MAX_CANDIDATES`, evenly spread, both ends included),
        since an interior value may be invalid where the ends are not (``norm_groups`` 4..8 on 16
        channels); a float range's ends."""
        if self.kind != "int_uniform":
            return list(self.values)
        low, high = self.values
        if high - low < MAX_CANDIDATES:
            return list(range(low, high + 1))
        return sorted({int(round(v)) for v in np.linspace(low, high, MAX_CANDIDATES)})

    def labels(self) -> list:
        """The choices as Optuna stores them (numbers, strings, booleans, None; mappings as JSON)."""
        return [choice_label(v) for v in self.values]

    def value_of(self, stored: Any) -> Any:
        """The spec value of a parameter Optuna stored for this axis."""
        if self.kind != "choice":
            return int(stored) if self.kind == "int_uniform" else float(stored)
        return self.values[self.labels().index(stored)]


@dataclass(frozen=True)
class Pruning:
    kind: str = "none"
    metric: str = "loss"
    min_steps: int = 1
    reduction_factor: int = 3
    startup_trials: int = 2

    def describe(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind} on {self.metric}"


@dataclass(frozen=True)
class SearchSpec:
    method: str = "grid"
    trials: int = 0
    parallel: int = 1
    seed: int = 0
    metric: str = "final loss"    # a column of the results table
    mode: str = "min"
    space: tuple = field(default_factory=tuple)   # of Dimension
    pruning: Pruning = Pruning()

    @property
    def sampled(self) -> bool:
        """Whether trials are sampled (random, tpe) rather than expanded as a grid."""
        return self.method != "grid"

    def dimension(self, key: str) -> Dimension:
        return next(d for d in self.space if d.key == key)


def metric_label(column: str) -> str:
    """How an objective column reads in messages: the score column holds FID or FD-small."""
    return "FID/FD-small" if column == "FID" else column


def choice_label(value: Any) -> Any:
    """A choice as Optuna can store it: plain scalars as they are, anything else as compact JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UnetlabError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _known(where: str, mapping: Any, keys, what: str) -> Mapping:
    if not isinstance(mapping, Mapping):
        raise UnetlabError(f"{where}: expected a mapping of {what}, got {mapping!r}")
    unknown = sorted(set(map(str, mapping)) - set(keys))
    if unknown:
        raise UnetlabError(f"{where}.{unknown[0]}: unknown key (valid keys: {', '.join(keys)})")
    return mapping


def _dimension(key: str, spec: Any) -> Dimension:
    where = f"search.space.{key}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UnetlabError(f"{where}: expected one of {', '.join(DISTRIBUTIONS)}, e.g. {{log_uniform: [1.0e-5, 1.0e-3]}} "
                           f"or {{choice: [a, b]}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise UnetlabError(f"{where}.{kind}: unknown distribution (valid distributions: {', '.join(DISTRIBUTIONS)})")
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise UnetlabError(f"{where}.choice: expected a non-empty list of values, got {values!r}")
        labels = [choice_label(v) for v in values]
        if len(set(map(repr, labels))) != len(labels):
            raise UnetlabError(f"{where}.choice: a value is given twice in {values!r}")
        return Dimension(key, kind, tuple(values))
    numbers = isinstance(values, list) and len(values) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if not numbers:
        raise UnetlabError(f"{where}.{kind}: expected [low, high], two finite numbers, got {values!r}")
    low, high = values
    if kind == "int_uniform" and not all(isinstance(v, int) for v in values):
        raise UnetlabError(f"{where}.int_uniform: expected two integers [low, high], got {values!r}")
    if low >= high:
        raise UnetlabError(f"{where}.{kind}: low must be below high, got [{low}, {high}]")
    if kind == "log_uniform" and low <= 0:
        raise UnetlabError(f"{where}.log_uniform: low must be positive (a log scale), got {low}")
    return Dimension(key, kind, (low, high) if kind == "int_uniform" else (float(low), float(high)))


def _space(value: Any, sections: tuple) -> tuple:
    if not isinstance(value, Mapping) or not value:
        raise UnetlabError("search.space: expected a mapping of dotted spec key to a distribution, "
                           "e.g. {train.lr: {log_uniform: [1.0e-5, 1.0e-3]}}")
    dims = []
    for key, spec in value.items():
        key = str(key)
        if "." not in key or key.split(".")[0] not in sections:
            raise UnetlabError(f"search.space.{key}: a search axis is a dotted key into a section "
                               f"(e.g. train.lr; sections: {', '.join(sections)})")
        dims.append(_dimension(key, spec))
    return tuple(dims)


def _objective(value: Any) -> tuple[str, str]:
    value = {"metric": "final_loss", "mode": "min"} if value is None else value
    _known("search.objective", value, ("metric", "mode"), "metric and mode")
    mode = value.get("mode", "min")
    if mode not in ("min", "max"):
        raise UnetlabError(f"search.objective.mode: expected min or max, got {mode!r}")
    try:
        column = objective_column(str(value.get("metric", "final_loss")))
    except UnetlabError as exc:
        raise UnetlabError(f"search.objective.metric: {exc}") from None
    return column, mode


def _pruning(value: Any, mode: str) -> Pruning:
    if value is None or value == "none":
        return Pruning()
    if isinstance(value, str):
        value = {value: {}}
    _known("search.pruner", value, tuple(PRUNERS), "one pruner")
    if len(value) != 1:
        raise UnetlabError(f"search.pruner: give one pruner ({', '.join(PRUNERS)}), got {sorted(value)}")
    kind, options = next(iter(value.items()))
    if kind == "none":
        return Pruning()
    options = _known(f"search.pruner.{kind}", options or {}, PRUNERS[kind], "options")
    metric = options.get("metric", "loss")
    if metric not in PRUNE_METRICS:
        raise UnetlabError(f"search.pruner.{kind}.metric: {metric!r} is not a logged metric "
                           f"(valid metrics: {', '.join(PRUNE_METRICS)})")
    if mode != "min":
        raise UnetlabError("search.pruner: the logged metrics are lower-is-better, so a search that "
                           "maximises its objective cannot prune; use pruner: none")
    where = f"search.pruner.{kind}"
    return Pruning(kind, metric,
                   _positive_int(f"{where}.min_steps", options.get("min_steps", 1)),
                   _positive_int(f"{where}.reduction_factor", options.get("reduction_factor", 3), 2),
                   _positive_int(f"{where}.startup_trials", options.get("startup_trials", 2), 0))


def parse_search(value: Any, sections: tuple) -> SearchSpec | None:
    """Validate the ``search:`` mapping (None when absent).  ``sections``: the spec's sections."""
    if value is None:
        return None
    _known("search", value, SEARCH_KEYS, "search settings")
    method = value.get("method", "grid")
    if method not in METHODS:
        raise UnetlabError(f"search.method: unknown method {method!r} (valid methods: {', '.join(METHODS)})")
    space = _space(value["space"], sections) if "space" in value else ()
    if method == "grid":
        extra = [k for k in ("trials", "objective", "pruner") if k in value]
        if extra:
            raise UnetlabError(f"search.{extra[0]}: only for method random or tpe (a grid runs every point)")
        sampled = [d.key for d in space if d.kind != "choice"]
        if sampled:
            raise UnetlabError(f"search.space.{sampled[0]}: method grid takes choice axes only "
                               f"(use method random or tpe to sample a range)")
        return SearchSpec("grid", space=space)
    if not space:
        raise UnetlabError(f"search.space: method {method} needs a space to sample")
    require_optuna(f"search.method {method}")
    if "trials" not in value:
        raise UnetlabError("search.trials: missing (how many trials each study runs)")
    metric, mode = _objective(value.get("objective"))
    return SearchSpec(method, _positive_int("search.trials", value["trials"]),
                      _positive_int("search.parallel", value.get("parallel", 1)),
                      check_seed(value.get("seed", 0), "search.seed"), metric, mode, space,
                      _pruning(value.get("pruner"), mode))


def require_optuna(what: str = "a search"):
    """Optuna, or a one-line error saying that ``what`` needs it and how to install it."""
    try:
        import optuna
    except ImportError:
        raise UnetlabError(f"{what} needs Optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna
