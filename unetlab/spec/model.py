"""The ``model`` section of a spec: the U-Net's shape and the block that fills each slot."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import UnetlabError
from ..options import Option, OptionSet
from ..registry import SLOTS, BlockDef, Registry, get_registry
from .loading import deep_merge, load_mapping

MODEL_FIELDS = OptionSet((
    Option("preset", str, None, "start from this preset and override the keys given", nullable=True),
    Option("image_size", int, 32, "input height and width"),
    Option("in_channels", int, 3, "channels of the input image"),
    Option("out_channels", int, 3, "channels of the prediction"),
    Option("base_channels", int, 128, "width of the first level (DDPM's ch)"),
    Option("channel_mult", list, [1, 2, 2, 2], "width multiplier per level", item=int),
    Option("num_res_blocks", int, 2, "residual blocks per level in the down path (up path: +1)"),
    Option("attn_resolutions", list, [16], "resolutions at which attention follows each resblock", item=int),
    Option("mid_attention", bool, True, "attention between the two middle resblocks"),
    Option("dropout", float, 0.1, "dropout rate inside residual blocks"),
    Option("norm_groups", int, 32, "GroupNorm groups"),
    Option("norm_eps", float, 1e-6, "GroupNorm epsilon"),
    Option("emb_mult", int, 4, "time embedding width = emb_mult * base_channels"),
    Option("blocks", dict, {}, "block per slot: a name, or a mapping {name: ..., option: value}"),
    Option("level_blocks", dict, {}, "per-level overrides: {level index: {slot: block}}"),
))

DEFAULT_BLOCKS = {**{slot: "ddpm" for slot in SLOTS}, "norm": "groupnorm"}
#: slots filled once for the whole model (no per-level override)
MODEL_WIDE_SLOTS = ("time_embedding", "norm")


@dataclass(frozen=True)
class SlotChoice:
    """A block chosen for a slot, with its options resolved against its declaration."""

    slot: str
    name: str
    options: dict
    #: the block's definition, from the registry the spec was resolved against
    definition: BlockDef | None = field(default=None, compare=False, repr=False)

    def block(self) -> BlockDef:
        """The resolved block (the one the spec's registry holds for this slot and name)."""
        return self.definition or get_registry().block(self.slot, self.name)

    def to_config(self) -> dict:
        return {"name": self.name, **self.options}


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved, validated model spec (every default filled in)."""

    image_size: int
    in_channels: int
    out_channels: int
    base_channels: int
    channel_mult: tuple
    num_res_blocks: int
    attn_resolutions: tuple
    mid_attention: bool
    dropout: float
    norm_groups: int
    norm_eps: float
    emb_mult: int
    blocks: dict = field(default_factory=dict)        # slot -> SlotChoice
    level_blocks: dict = field(default_factory=dict)  # level -> {slot -> SlotChoice}
    preset: str | None = None

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def emb_channels(self) -> int:
        return self.emb_mult * self.base_channels

    def choice(self, slot: str, level: int | None = None) -> SlotChoice:
        """The block for ``slot`` at ``level`` (the model-wide choice unless overridden)."""
        if level is not None and slot in self.level_blocks.get(level, {}):
            return self.level_blocks[level][slot]
        return self.blocks[slot]

    def to_config(self) -> dict:
        """A plain mapping that resolves back to this spec (recorded in every run)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["channel_mult"] = list(self.channel_mult)
        out["attn_resolutions"] = list(self.attn_resolutions)
        out["blocks"] = {s: c.to_config() for s, c in self.blocks.items()}
        out["level_blocks"] = {lvl: {s: c.to_config() for s, c in d.items()}
                               for lvl, d in self.level_blocks.items()}
        if out["preset"] is None:
            del out["preset"]
        return out


def _slot_choice(value: Any, slot: str, where: str, registry: Registry) -> SlotChoice:
    if isinstance(value, str):
        name, given = value, {}
    elif isinstance(value, Mapping) and "name" in value:
        given = {k: v for k, v in value.items() if k != "name"}
        name = value["name"]
        if not isinstance(name, str):
            raise UnetlabError(f"{where}.name: expected a block name (str), got {name!r}")
    else:
        raise UnetlabError(f"{where}: expected a block name or a mapping with 'name', got {value!r}")
    block = registry.block(slot, name, where)
    return SlotChoice(slot, name, block.resolve_options(given, where), block)


def _slot_choices(blocks: Mapping, where: str, registry: Registry) -> dict:
    unknown = sorted(set(blocks) - set(SLOTS), key=str)
    if unknown:
        raise UnetlabError(f"{where}: unknown slot {unknown[0]!r} (slots: {', '.join(SLOTS)})")
    return {slot: _slot_choice(v, slot, f"{where}.{slot}", registry) for slot, v in blocks.items()}


def resolve_model_spec(spec: Any, where: str = "model", registry: Registry | None = None) -> ModelSpec:
    """Validate a model spec (preset name, mapping or YAML path) and fill in every default.

    A mapping holding a ``model`` key (a whole run spec) is accepted too.  Errors name the key
    path, e.g. ``model.blocks.attention: unknown attention block 'foo' (valid ...)``.
    """
    if isinstance(spec, ModelSpec):
        return spec
    registry = registry or get_registry()
    if spec is None:
        raise UnetlabError(f"{where}: no value (give a preset name such as ddpm, or a mapping of model keys)")
    if isinstance(spec, str) and spec in registry.presets:
        raw = {"preset": spec}
    elif isinstance(spec, str) and not Path(spec).is_file():
        raise UnetlabError(f"{where}: {spec!r} is neither a preset ({', '.join(sorted(registry.presets))}) "
                           f"nor a model spec file")
    elif not isinstance(spec, (str, os.PathLike, Mapping)):
        raise UnetlabError(f"{where}: expected a preset name or a mapping of model keys, got "
                           f"{type(spec).__name__} {spec!r}")
    else:
        raw = load_mapping(spec, "model spec")
        if "model" in raw and isinstance(raw["model"], Mapping):
            raw = raw["model"]
    preset = raw.get("preset")
    if preset is not None:
        if not isinstance(preset, str):
            raise UnetlabError(f"{where}.preset: expected a preset name, got {preset!r}")
        try:
            base = registry.preset(preset)
        except UnetlabError as exc:
            raise UnetlabError(f"{where}.preset: {exc}") from None
        raw = deep_merge(base, {k: v for k, v in raw.items() if k != "preset"})
        raw["preset"] = preset
    values = MODEL_FIELDS.resolve(raw, where)
    blocks = _slot_choices(deep_merge(DEFAULT_BLOCKS, values["blocks"]), f"{where}.blocks", registry)
    num_levels = len(values["channel_mult"])
    level_blocks = {}
    for level, overrides in values["level_blocks"].items():
        lw = f"{where}.level_blocks.{level}"
        try:
            index = int(level)
        except (TypeError, ValueError):
            raise UnetlabError(f"{lw}: a level must be an index 0..{num_levels - 1}") from None
        if not 0 <= index < num_levels:
            raise UnetlabError(f"{lw}: level {index} out of range 0..{num_levels - 1}")
        if not isinstance(overrides, Mapping):
            raise UnetlabError(f"{lw}: expected a mapping of slot to block, got {overrides!r}")
        for slot in MODEL_WIDE_SLOTS:
            if slot in overrides:
                raise UnetlabError(f"{lw}.{slot}: the {slot} block is model-wide, not per level")
        level_blocks[index] = _slot_choices(overrides, lw, registry)
    model = ModelSpec(
        image_size=values["image_size"], in_channels=values["in_channels"],
        out_channels=values["out_channels"], base_channels=values["base_channels"],
        channel_mult=tuple(values["channel_mult"]), num_res_blocks=values["num_res_blocks"],
        attn_resolutions=tuple(values["attn_resolutions"]), mid_attention=values["mid_attention"],
        dropout=values["dropout"], norm_groups=values["norm_groups"], norm_eps=values["norm_eps"],
        emb_mult=values["emb_mult"], blocks=blocks, level_blocks=level_blocks, preset=preset)
    _check_shape(model, where)
    return model


def _check_shape(m: ModelSpec, where: str) -> None:
    def positive(name, value):
        if value <= 0:
            raise UnetlabError(f"{where}.{name}: must be positive, got {value}")
    for name in ("image_size", "in_channels", "out_channels", "base_channels", "norm_groups", "emb_mult"):
        positive(name, getattr(m, name))
    if m.num_res_blocks < 0:
        raise UnetlabError(f"{where}.num_res_blocks: must be >= 0, got {m.num_res_blocks}")
    if not m.channel_mult or any(c <= 0 for c in m.channel_mult):
        raise UnetlabError(f"{where}.channel_mult: needs at least one positive multiplier, got {list(m.channel_mult)}")
    if not m.norm_eps > 0:
        raise UnetlabError(f"{where}.norm_eps: must be positive, got {m.norm_eps}")
    if not 0.0 <= m.dropout < 1.0:
        raise UnetlabError(f"{where}.dropout: must be in [0, 1), got {m.dropout}")
    if m.image_size % (2 ** (m.num_levels - 1)):
        raise UnetlabError(f"{where}.image_size: {m.image_size} is not divisible by 2^{m.num_levels - 1} "
                           f"({m.num_levels} levels halve it {m.num_levels - 1} times)")
    for mult in m.channel_mult:
        if (m.base_channels * mult) % m.norm_groups:
            raise UnetlabError(f"{where}.norm_groups: {m.norm_groups} groups do not divide "
                               f"{m.base_channels * mult} channels (base_channels {m.base_channels} x {mult})")
    resolutions = {m.image_size // 2 ** i for i in range(m.num_levels)}
    for r in m.attn_resolutions:
        if r not in resolutions:
            raise UnetlabError(f"{where}.attn_resolutions: {r} is not a resolution of this model "
                               f"(resolutions: {', '.join(map(str, sorted(resolutions, reverse=True)))})")
