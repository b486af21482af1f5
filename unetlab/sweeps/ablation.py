"""Ablation files: expand variants x grid x seeds x frameworks into validated runs.

An ablation file holds ``name``, ``base`` (a run spec, or the path of one), ``variants``
(named overrides of the base), an optional ``grid`` (dotted key -> list of values, crossed),
``seeds`` (a list, adaptive ``{min, max, until: decided}``, or either per framework: see
:mod:`unetlab.sweeps.seed_plan`), ``frameworks`` (a list, or a mapping of framework to its own
overrides, e.g. ``{torch: {train.precision: bf16}, jittor: {}}``), and for comparisons the
``baseline`` variant (default: the first) and the metric they are decided on (``decide_on``:
``score`` or ``final_loss``; default the score when every run is scored, else the final loss).
A budget given by an override replaces the budget below it.  The whole file is checked before
anything runs: every expanded run's spec goes through :func:`resolve_run_spec`, and an error
names the key path in the file that made it invalid (``variants.no_attn.model.blocks.attention: ...``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
import hashlib
import itertools
import json
from pathlib import Path
import re
from typing import Any, Mapping

from ..data import check_available
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS, PRECISIONS, check_run_section
from ..registry import get_registry
from ..spec import SECTIONS, deep_merge, expand_dotted, load_mapping, load_yaml, resolve_run_spec
from .search_spec import SearchSpec, parse_search
from .seed_plan import AdaptiveSeeds, parse_seeds, seeds_of

TOP_KEYS = ("name", "base", "variants", "grid", "seeds", "frameworks", "search", "baseline", "decide_on")
DECIDE_ON = ("score", "final_loss")
BUDGETS = ("steps", "epochs", "minutes")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


@dataclass(frozen=True)
class Run:
    """One run of an ablation: where it comes from, its resolved spec and its folder name."""

    ablation: str
    variant: str
    grid: dict
    framework: str
    seed: int
    spec: dict = field(repr=False, compare=False)
    trial: int | None = None  # the search trial's number (its study is the variant x framework)
    params: dict = field(default_factory=dict, compare=False)  # the trial's sampled spec values
    layers: tuple = field(default=(), repr=False, compare=False)  # (label, overrides) it was resolved from

    @property
    def grid_label(self) -> str:
        return grid_label(self.grid)

    @property
    def name(self) -> str:
        middle = [f"t{self.trial}"] if self.trial is not None else [self.grid_label] if self.grid else []
        return "-".join([self.variant] + middle + [self.framework, f"s{self.seed}"])

    def identity(self) -> dict:
        """What config.json records under ``run`` besides framework and seed."""
        trial = {"trial": self.trial, "params": dict(self.params)} if self.trial is not None else {}
        return {"ablation": self.ablation, "variant": self.variant, "grid": dict(self.grid),
                "grid_label": self.grid_label, "name": self.name, **trial}

    def config(self) -> dict:
        """The run folder's config.json, as the trainer writes and checks it."""
        return copy.deepcopy({"spec": self.spec, "run": {"framework": self.framework, "seed": self.seed,
                                                         **self.identity()}})


@dataclass(frozen=True)
class Ablation:
    name: str
    runs: tuple
    source: str = ""
    search: SearchSpec | None = None  # a sampled search: ``runs`` are its studies' templates
    seed_plans: dict = field(default_factory=dict)  # framework -> seed list | AdaptiveSeeds
    baseline: str | None = None  # the variant the others are compared with
    decide_on: str | None = None  # score | final_loss (lower is better)

    @property
    def adaptive(self) -> dict:
        """framework -> :class:`unetlab.sweeps.seed_plan.AdaptiveSeeds`, for the frameworks with adaptive seeds."""
        return {f: p for f, p in self.seed_plans.items() if isinstance(p, AdaptiveSeeds)}


# -- naming ----------------------------------------------------------------------------------

def _short_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "+".join(_short_value(v) for v in value) if value else "none"
    if isinstance(value, Mapping):
        return "h" + hashlib.sha1(repr(sorted(value.items())).encode()).hexdigest()[:6]
    return str(value)


def grid_label(point: Mapping) -> str:
    """``lr=0.0001,batch_size=64``: short key names, filesystem-safe, at most 60 characters."""
    leaves = [k.rsplit(".", 1)[-1] for k in point]
    keys = [leaf if leaves.count(leaf) == 1 else k for leaf, k in zip(leaves, point)]
    text = ",".join(f"{k}={_short_value(v)}" for k, v in zip(keys, point.values()))
    text = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)
    if len(text) > 60:
        text = text[:52] + "~" + hashlib.sha1(text.encode()).hexdigest()[:7]
    return text


# -- layering overrides ----------------------------------------------------------------------

def _overlay(lower: Mapping, upper: Mapping) -> dict:
    """``upper`` (already nested) over ``lower``; a budget set above clears the others below."""
    train = upper.get("train")
    if isinstance(train, Mapping) and any(train.get(b) is not None for b in BUDGETS):
        lower = deep_merge(lower, {})
        if isinstance(lower.get("train"), dict):
            for b in BUDGETS:
                if b not in train:
                    lower["train"].pop(b, None)
    return deep_merge(lower, upper)


def _sets(layer: Mapping, path: str) -> bool:
    """Whether the nested ``layer`` sets ``path`` (``a.b.c``) or a key above it."""
    node: Any = layer
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _nested(where: str, value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnetlabError(f"{where}: expected a mapping of {what}, got {type(value).__name__} {value!r}")
    try:
        return expand_dotted(value)
    except UnetlabError as exc:
        raise UnetlabError(f"{where}.{exc}") from None


# -- the file's top-level keys ---------------------------------------------------------------

def _load_base(value: Any, source: Path | None) -> dict:
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and source is not None and (source.parent / path).is_file():
            path = source.parent / path
        if not path.is_file():
            raise UnetlabError(f"base: no such run spec file {value!r}")
        return _nested("base", load_mapping(path, "run spec"), "run spec sections")
    if value is None:
        raise UnetlabError("base: missing (a run spec mapping, or the path of a run spec YAML)")
    return _nested("base", value, "run spec sections")


def _variants(value: Any) -> dict:
    if value is None:
        return {"base": {}}
    if not isinstance(value, Mapping) or not value:
        raise UnetlabError(f"variants: expected a non-empty mapping of name to overrides, got {value!r}")
    out = {}
    for name, override in value.items():
        if not isinstance(name, str) or not _SAFE.match(name):
            raise UnetlabError(f"variants.{name}: a variant name must be letters, digits and _ . + = - "
                               f"(it names run folders)")
        out[name] = _nested(f"variants.{name}", override, "overrides")
    return out


def _grid(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnetlabError(f"grid: expected a mapping of dotted key to a list of values, got {value!r}")
    for key, values in value.items():
        section = str(key).split(".")[0]
        if "." not in str(key) or section not in ("model",) + tuple(SECTIONS):
            raise UnetlabError(f"grid.{key}: a grid axis is a dotted key into a section "
                               f"(e.g. train.lr; sections: model, {', '.join(SECTIONS)})")
        if not isinstance(values, list) or not values:
            raise UnetlabError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    return {str(k): list(v) for k, v in value.items()}


def _frameworks(value: Any) -> dict:
    """framework -> overrides; a list means no overrides."""
    if value is None:
        return {"torch": {}}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = {f: None for f in value} if all(isinstance(f, str) for f in value) else value
    if not isinstance(value, Mapping) or not value:
        raise UnetlabError(f"frameworks: expected a list from {', '.join(FRAMEWORKS)} "
                           f"(or a mapping of framework to overrides), got {value!r}")
    for f in value:
        if f not in FRAMEWORKS:
            raise UnetlabError(f"frameworks: unknown framework {f!r} (valid frameworks: {', '.join(FRAMEWORKS)})")
    return {f: _nested(f"frameworks.{f}", o, "overrides") for f, o in value.items()}


# -- checking one run ------------------------------------------------------------------------

def _resolve_layers(layers: list[tuple[str, dict]], point: str = "") -> dict:
    """Resolve the spec stacked from ``layers`` (label, overrides).  The spec is valid before a
    layer and invalid after it, so the error is that layer's: it is named in the message."""
    raw: dict = {}
    resolved = None
    for label, layer in layers:
        raw = _overlay(raw, layer)
        if not layer and resolved is not None:
            continue
        try:
            resolved = resolve_run_spec(raw)
        except UnetlabError as exc:
            at = f" (grid point {point})" if label == "grid" and point else ""
            raise UnetlabError(f"{label}.{exc}{at}") from None
    return resolved


def _owner(path: str, layers: list) -> str:
    for name, layer in reversed(layers):
        if _sets(layer, path):
            return f"{name}.{path}"
    return f"{layers[-1][0]}.{path}"


def _check_framework(spec: dict, framework: str, layers: list) -> None:
    train = spec["train"]
    if train["precision"] not in PRECISIONS[framework]:
        raise UnetlabError(
            f"{_owner('train.precision', layers)}: {train['precision']!r} is not supported by {framework} "
            f"(valid precisions: {', '.join(PRECISIONS[framework])}); give it per framework, e.g. "
            f"frameworks: {{torch: {{train.precision: bf16}}, jittor: {{}}}}")
    for name in ("train", "sample"):
        check_run_section(framework, name, spec[name], lambda key, name=name: _owner(f"{name}.{key}", layers))
    registry = get_registry()
    model = spec["model"]
    choices = [(f"model.blocks.{slot}", slot, c) for slot, c in model["blocks"].items()]
    choices += [(f"model.level_blocks.{lvl}.{slot}", slot, c)
                for lvl, d in model["level_blocks"].items() for slot, c in d.items()]
    for path, slot, choice in choices:
        block = registry.block(slot, choice["name"])
        if framework not in block.frameworks:
            raise UnetlabError(f"{_owner(path, layers)}: {slot} block {choice['name']!r} has no {framework} "
                               f"implementation (it runs on: {', '.join(block.frameworks)})")


def _check_budget(spec: dict, label: str) -> None:
    if all(spec["train"][b] is None for b in BUDGETS):
        raise UnetlabError(f"{label}.train: no training budget: give train.steps, train.epochs or "
                           f"train.minutes (in base or in this variant)")


# -- the whole file --------------------------------------------------------------------------

def parse_ablation(raw: Any, name: str = "ablation", source: Path | None = None) -> Ablation:
    """Validate an ablation mapping and expand it into its runs (nothing is written)."""
    if not isinstance(raw, Mapping):
        raise UnetlabError(f"an ablation file must hold a mapping, not {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - set(TOP_KEYS))
    if unknown:
        raise UnetlabError(f"{unknown[0]}: unknown key (valid keys: {', '.join(TOP_KEYS)})")
    name = raw.get("name", name)
    if not isinstance(name, str) or not _SAFE.match(name):
        raise UnetlabError(f"name: {name!r} is not a usable folder name (letters, digits and _ . + = -)")
    base = _load_base(raw.get("base"), source)
    variants, grid = _variants(raw.get("variants")), _grid(raw.get("grid"))
    frameworks = _frameworks(raw.get("frameworks"))
    seed_plans = parse_seeds(raw.get("seeds"), list(frameworks))
    baseline = _baseline(raw.get("baseline", next(iter(variants))), variants)
    search = parse_search(raw.get("search"), ("model",) + tuple(SECTIONS))
    if search is not None and not search.sampled:  # method grid: its choices are grid axes
        clash = [d.key for d in search.space if d.key in grid]
        if clash:
            raise UnetlabError(f"search.space.{clash[0]}: also a grid axis; give it once")
        grid = {**grid, **{d.key: list(d.values) for d in search.space}}
        search = None
    if search is not None:
        if grid:
            raise UnetlabError("grid: a sampled search (method random or tpe) cannot be crossed with a grid; "
                               "put the grid's values in search.space as choices")
        seeds = next(iter(seed_plans.values()))
        if any(plan != seeds for plan in seed_plans.values()) or not isinstance(seeds, list) or len(seeds) != 1:
            raise UnetlabError(f"seeds: a search trains one seed per trial, got {raw.get('seeds')} "
                               f"(one study per variant x framework; run another seed as another ablation)")
    _resolve_layers([("base", base)])
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    runs, names = [], set()
    for variant, override in variants.items():
        for point in points:
            for framework, fw_override in frameworks.items():
                layers = [("base", base), (f"variants.{variant}", override),
                          ("grid", expand_dotted(point)), (f"frameworks.{framework}", fw_override)]
                spec = _resolve_layers(layers, grid_label(point))
                _check_budget(spec, f"variants.{variant}")
                _check_framework(spec, framework, layers)
                for seed in seeds_of(seed_plans[framework]):
                    run_spec = deep_merge(spec, {"train": {"seed": seed}})
                    run = Run(name, variant, point, framework, seed, run_spec, layers=tuple(layers))
                    if run.name in names:
                        raise UnetlabError(f"variants.{variant}: two runs would share the folder {run.name!r}")
                    names.add(run.name)
                    runs.append(run)
    if search is not None:
        unscored = [r for r in runs if search.metric == "FID" and r.spec["eval"]["fid_samples"] <= 0]
        if unscored:
            raise UnetlabError(f"search.objective.metric: {unscored[0].variant} scores no FID or FD-small "
                               f"(eval.fid_samples is 0); set eval.fid_samples or use final_loss")
        _check_pruned_metric_is_logged(search, runs)
        for template in runs:  # every value the space can give is checked before anything runs
            for dim in search.space:
                for value in dim.candidates():
                    trial_run(template, 0, {dim.key: value})
    decide_on = _decide_on(raw.get("decide_on"), runs)
    return Ablation(name, tuple(runs), str(source or ""), search, seed_plans, baseline, decide_on)


def _baseline(value: Any, variants: dict) -> str:
    if value not in variants:
        raise UnetlabError(f"baseline: {value!r} is not a variant (variants: {', '.join(variants)})")
    return value


def _decide_on(value: Any, runs: list) -> str:
    """The comparisons' metric: the score when every run is scored, else the final loss."""
    scored = all(run.spec["eval"]["fid_samples"] > 0 for run in runs)
    if value is None:
        return "score" if scored else "final_loss"
    if value not in DECIDE_ON:
        raise UnetlabError(f"decide_on: expected one of {', '.join(DECIDE_ON)} (lower is better), got {value!r}")
    if value == "score" and not scored:
        unscored = next(run for run in runs if run.spec["eval"]["fid_samples"] <= 0)
        raise UnetlabError(f"decide_on: score, but {unscored.variant} scores nothing (eval.fid_samples is 0); "
                           f"set eval.fid_samples or decide on final_loss")
    return value


def _check_pruned_metric_is_logged(search: SearchSpec, runs: list) -> None:
    """A pruner reads its metric from what a trial logs while it trains: FID only with eval.every."""
    pruning = search.pruning
    if pruning.kind == "none" or pruning.metric != "fid":
        return
    silent = [r for r in runs if r.spec["eval"]["every"] is None]
    if silent:
        raise UnetlabError(f"search.pruner.{pruning.kind}.metric: fid is logged during training only with "
                           f"eval.every, which {silent[0].variant} does not set; set eval.every (and "
                           f"eval.fid_samples) or prune on loss")


def trial_run(template: Run, number: int, params: Mapping) -> Run:
    """Trial ``number`` of the study of ``template`` (a variant x framework): its spec with the
    sampled ``params`` (dotted key -> value) laid where a grid point would be, validated."""
    layers = [layer for layer in template.layers if layer[0] != "grid"]
    layers.insert(-1, ("search.space", expand_dotted(dict(params))))
    label = ",".join(f"{k}={v!r}" for k, v in params.items())
    try:
        spec = _resolve_layers(layers)
        _check_budget(spec, layers[1][0])
        _check_framework(spec, template.framework, layers)
    except UnetlabError as exc:
        raise UnetlabError(f"{exc} (trial values {label})") from None
    spec = deep_merge(spec, {"train": {"seed": template.seed}})
    return Run(template.ablation, template.variant, {}, template.framework, template.seed, spec,
               trial=number, params=dict(params), layers=template.layers)


def load_ablation(path: str | Path) -> Ablation:
    """Read, validate and expand the ablation file at ``path``; errors are one line."""
    path = Path(path)
    raw = load_yaml(path)
    if raw is None:
        raise UnetlabError(f"{path}: empty ablation file")
    try:
        return parse_ablation(raw, path.stem, path)
    except UnetlabError as exc:
        raise UnetlabError(f"{path}: {exc}") from None


def check_data(ablation) -> None:
    """Every distinct dataset of the ablation is there (one line and no run started if not)."""
    seen = set()
    for run in ablation.runs:
        key = json.dumps(run.spec["data"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            try:
                check_available(run.spec["data"])
            except UnetlabError as exc:
                raise UnetlabError(f"{run.name}: data: {exc}") from None
