"""Thin, mirrored adapters for the two frameworks unetlab runs on.

``ops_for(name)`` gives the layer vocabulary blocks are written against;
``backend_for(name)`` gives what the trainer and samplers need (devices, tensors, optimisers).
Both import their framework only when first asked for.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UnetlabError
from .jittor.runtime import prepare

if TYPE_CHECKING:
    from .contract import Backend, Ops

FRAMEWORKS = ("torch", "jittor")

#: the training precisions each framework runs (bf16/tf32 autocast in PyTorch; Jittor's
#: automatic mixed precision is fp16)
PRECISIONS = {"torch": ("fp32", "tf32", "bf16"), "jittor": ("fp32", "fp16")}


def check_precision(framework: str, precision: str, where: str = "train.precision") -> None:
    """Raise a one-line error when ``framework`` cannot train in ``precision``."""
    if precision not in PRECISIONS[_check(framework)]:
        raise UnetlabError(f"{where}: {precision!r} is not supported by {framework} "
                           f"(valid precisions: {', '.join(PRECISIONS[framework])})")


#: Run options (in both ``train`` and ``sample``) that only PyTorch has.
TORCH_ONLY_OPTIONS = ("compile", "channels_last")


def check_run_section(framework: str, name: str, section: dict, where=None) -> None:
    """Raise a one-line error when ``framework`` cannot run a resolved ``train`` or ``sample``
    section (``name``): a precision it lacks, or a PyTorch-only option.  ``where(key)`` names a
    key in the message (default ``name.key``)."""
    where = where or (lambda key: f"{name}.{key}")
    check_precision(framework, section["precision"], where("precision"))
    for key in TORCH_ONLY_OPTIONS:
        if section[key] and framework != "torch":
            raise UnetlabError(f"{where(key)}: a torch option, not for {framework}")


def _check(name: str) -> str:
    if name not in FRAMEWORKS:
        raise UnetlabError(f"unknown framework {name!r} (frameworks: {', '.join(FRAMEWORKS)})")
    return name


def ops_for(name: str) -> "Ops":
    """The ``ops`` module (layers and functions) of framework ``name`` (see :class:`contract.Ops`)."""
    return importlib.import_module(f"unetlab.frameworks.{_check(name)}_ops")


def backend_for(name: str) -> "Backend":
    """The backend module (devices, tensors, optimisers, checkpoints) of framework ``name``
    (see :class:`contract.Backend`)."""
    return importlib.import_module(f"unetlab.frameworks.{_check(name)}_backend")


def prepare_jittor(device: str | None = None) -> str:
    """Prepare Jittor's environment (offline, CPU or GPU) before a plain ``import jittor``.

    unetlab does this itself when it first builds or runs anything in Jittor; call it only
    when you import ``jittor`` yourself first.  Returns the one-line set-up summary.
    """
    return prepare(device)


def framework_of(tensor) -> str:
    """``torch`` or ``jittor``, from a tensor's type."""
    module = type(tensor).__module__
    if module.startswith("torch"):
        return "torch"
    if module.startswith("jittor"):
        return "jittor"
    raise UnetlabError(f"not a torch or jittor tensor: {type(tensor).__name__}")
