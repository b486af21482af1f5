"""Reading a UNet2DModel's weights and configs: safetensors without pickle, ``.bin`` with
``torch.load(weights_only=True)``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UnetlabError


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UnetlabError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnetlabError(f"{path}: expected a JSON object")
    return data


def read_weights(path: Path) -> dict:
    """Name -> float32 numpy array of a ``.safetensors`` or ``.bin`` file; a tensor holding NaN or
    infinity is refused, named."""
    from ..weights import check_finite

    return check_finite(_read_arrays(Path(path)), path)


def _read_arrays(path: Path) -> dict:
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise UnetlabError(f"{path}: reading safetensors needs the safetensors package "
                               "(pip install 'unetlab[pretrained]')") from None
        try:
            arrays = load_file(str(path))
        except Exception as exc:  # numpy has no bfloat16: such files are read through torch
            try:
                from safetensors.torch import load_file as load_tensors

                return {k: v.float().numpy() for k, v in load_tensors(str(path)).items()}
            except Exception:
                raise UnetlabError(f"{path}: not a readable safetensors file ({exc})") from None
        return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnetlabError(f"{path}: not loadable as plain tensors with weights_only=True "
                           f"({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise UnetlabError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}
