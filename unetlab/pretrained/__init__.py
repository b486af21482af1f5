"""Pretrained weights from diffusers' ``UNet2DModel`` folders and the Hugging Face hub.

``load_pretrained("google/ddpm-cifar10-32")`` (or a local folder holding ``config.json`` and
``diffusion_pytorch_model.safetensors``) reads the config, builds the unetlab model that
computes exactly the same function, maps the parameter names and loads the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnetlabError
from ..frameworks import backend_for
from ..model import build_model
from ..weights import set_weights
from .config import ConfigRefused, unet2d_config_to_spec
from .files import read_json, read_weights
from .names import convert_state_dict
from .scheduler import scheduler_to_diffusion
from .source import PretrainedFiles, is_pretrained_source, locate

__all__ = ["ConfigRefused", "Pretrained", "is_pretrained_source", "load_pretrained", "read_pretrained"]


@dataclass
class Pretrained:
    """A pretrained model read from disk: its spec, unetlab-named weights and schedule."""

    files: PretrainedFiles
    model_spec: dict
    arrays: dict
    diffusion: dict | None  # None without a scheduler_config.json

    def run_spec(self) -> dict:
        """A run spec mapping (model + diffusion) for the sampling and FID commands."""
        if self.diffusion is None:
            raise UnetlabError(f"{self.files.name}: no scheduler_config.json (the betas the model was trained "
                               f"with); put the pipeline's scheduler_config.json beside {self.files.config.name}")
        return {"model": self.model_spec, "diffusion": self.diffusion}


def read_pretrained(source) -> Pretrained:
    """Locate ``source`` (folder or hub id), translate its config and read its weights."""
    files = locate(source)
    spec = unet2d_config_to_spec(read_json(files.config), str(files.config))
    arrays = convert_state_dict(read_weights(files.weights), len(spec["channel_mult"]), str(files.weights))
    diffusion = None
    if files.scheduler is not None:
        diffusion = scheduler_to_diffusion(read_json(files.scheduler), str(files.scheduler))
    return Pretrained(files, spec, arrays, diffusion)


def load_pretrained(source, framework: str = "torch", device: bool = True):
    """The unetlab model (``torch`` or ``jittor``) of a diffusers UNet2DModel folder or hub id,
    with its weights loaded; ``model(x, t)`` equals diffusers' ``unet(x, t).sample``.

    A config field unetlab cannot represent exactly raises :class:`ConfigRefused` naming it.
    """
    pretrained = read_pretrained(source)
    model = build_model(pretrained.model_spec, framework, device=False)
    set_weights(model, pretrained.arrays, f"weights of {pretrained.files.weights}")
    return backend_for(framework).prepare_model(model) if device else model
