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
    """Construct every block of ``spec`` in ``framework`` without training anything, so that a
    block rejecting its options fails (one line naming it, its slot and level) before a run
    folder is written.  In PyTorch the blocks are built on the meta device: no weight memory."""
    resolved: ModelSpec = resolve_model_spec(spec)
    cls = UNet.in_framework(framework)
    if framework == "torch":
        import torch

        with torch.device("meta"):
            cls(resolved, framework)
    else:
        cls(resolved, framework)
