"""Framework-neutral weights: deterministic initialisation, transfer and DDPM checkpoints.

Every model is initialised from numpy, parameter by parameter, from ``(seed, name)``; so the
same spec and seed give the same starting weights in PyTorch and in Jittor.
"""
from __future__ import annotations

import zlib

import numpy as np

from .errors import UnetlabError
from .frameworks import backend_for


def zero_init_prefixes(model) -> list[str]:
    """Names of submodules a block asked to start at zero (``ops.zero_module``)."""
    return [name + "." for name, m in model.named_modules() if getattr(m, "unetlab_zero_init", False)]


def initial_weights(shapes: dict, seed: int, zero_prefixes=()) -> dict:
    """Arrays for every name in ``shapes``: kernels and their biases ~ U(+-1/sqrt(fan_in)),
    1-d weights (norm scales) = 1, other 1-d arrays (norm shifts) = 0, zero-init blocks = 0."""
    out = {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        stem, _, leaf = name.rpartition(".")
        sibling = shapes.get(f"{stem}.weight") if stem else None
        if any(name.startswith(p) for p in zero_prefixes):
            out[name] = np.zeros(shape, np.float32)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
        elif leaf == "bias" and sibling is not None and len(sibling) >= 2:
            fan_in = int(np.prod(tuple(sibling)[1:]))
        else:
            out[name] = (np.ones if leaf == "weight" else np.zeros)(shape, np.float32)
            continue
        bound = 1.0 / np.sqrt(max(fan_in, 1))
        out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def init_weights(model, seed: int) -> None:
    """Initialise ``model`` in place, identically in every framework (see module doc)."""
    backend = backend_for(model.framework)
    shapes = {k: v.shape for k, v in backend.state_dict(model).items()}
    backend.load_state_dict(model, initial_weights(shapes, seed, zero_init_prefixes(model)))


def get_weights(model) -> dict:
    """The model's parameters as numpy arrays by name (the framework-neutral state dict); copies,
    so that changing an array leaves the model as it is."""
    return {name: np.array(value, copy=True) for name, value in backend_for(model.framework).state_dict(model).items()}


def set_weights(model, arrays: dict, what: str = "weights") -> None:
    """Load numpy ``arrays`` into ``model``; any missing, unexpected or mis-shaped name is an error."""
    backend = backend_for(model.framework)
    own = backend.state_dict(model)
    check_compatible(own, arrays, what)
    backend.load_state_dict(model, arrays)


def check_compatible(own: dict, arrays: dict, what: str) -> None:
    missing = sorted(set(own) - set(arrays))
    unexpected = sorted(set(arrays) - set(own))
    wrong = sorted(k for k in set(own) & set(arrays) if tuple(np.shape(arrays[k])) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(np.shape(arrays[k]))} "
                        f"vs the model's {tuple(own[k].shape)})")
    if problems:
        raise UnetlabError(f"{what} do not fit the model: " + "; ".join(problems))


def load_ddpm_state_dict(model, state_dict) -> None:
    """Load a PyTorch state dict in the public DDPM-conversion layout (``temb.dense.0``,
    ``down.0.block.0.conv1``, ``mid.attn_1``, ...) into a ``ddpm``-shaped model of either framework.

    A ``module.`` prefix (from ``DataParallel``) is removed; tensors or arrays are accepted.
    """
    if isinstance(state_dict, (list, tuple)):  # training checkpoints store [state_dict, optimizer, ...]
        state_dict = state_dict[0]
    arrays = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        arrays[key] = value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
    set_weights(model, arrays, "DDPM state dict entries")


def check_finite(arrays: dict, source) -> dict:
    """``arrays`` when every value in them is finite; else a one-line error naming ``source``, the
    first tensor holding NaN or infinity and how many such values it has."""
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind != "f":
            continue
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            kinds = "NaN" if np.isnan(value).any() else "infinite"
            raise UnetlabError(f"{source}: tensor {name!r} holds {bad} {kinds} value(s) of {value.size}; "
                               f"these weights cannot be sampled")
    return arrays


def count_parameters(model) -> int:
    """Trainable parameters of a model of either framework."""
    return int(sum(int(np.prod(p.shape)) for _, p in backend_for(model.framework).trainable(model)))
