"""``build_model``: a spec in, a framework-native U-Net out."""
from __future__ import annotations

from .blocks.unet import UNet
from .frameworks import backend_for
from .spec.model import ModelSpec, resolve_model_spec
from .weights import init_weights


def build_model(spec="ddpm", framework: str = "torch", seed: int = 0, device: bool = True):
    """Build the U-Net described by ``spec`` in ``framework`` (``torch`` or ``jittor``).

    ``spec`` is a preset name (``"ddpm"``), a mapping, a YAML path or a :class:`ModelSpec`.
    The model is initialised from ``seed`` identically in both frameworks, moved to the
    framework's device unless ``device`` is False, and called as ``model(x, t)``.  Its resolved
    spec is recorded as ``model.unetlab_config``.
    """
    resolved: ModelSpec = resolve_model_spec(spec)
    model = UNet.in_framework(framework)(resolved, framework)
    init_weights(model, seed)
    return backend_for(framework).prepare_model(model) if device else model


def check_model_builds(spec, framework: str = "torch") -> None:
    """Construct every block of ``spec`` without training anything, so that a block rejecting
    its options fails (one line naming it, its slot and level) before a run folder is written.

    The blocks are built in PyTorch on the meta device (no weight memory, a fraction of a
    second even for the presets) when every chosen block has a PyTorch implementation (a
    portable block's constructor is the same code in both frameworks); otherwise in
    ``framework`` itself.
    """
    resolved: ModelSpec = resolve_model_spec(spec)
    if framework == "torch" or _all_have_torch(resolved):
        import torch

        with torch.device("meta"):
            UNet.torch(resolved, "torch")
    else:
        UNet.in_framework(framework)(resolved, framework)


def _all_have_torch(spec: ModelSpec) -> bool:
    choices = list(spec.blocks.values()) + [c for level in spec.level_blocks.values() for c in level.values()]
    return all("torch" in choice.block().frameworks for choice in choices)
