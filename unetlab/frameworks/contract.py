"""The two contracts a framework adapter fulfils, written down as ``typing.Protocol``s.

:class:`Ops` is what blocks are written against (``unetlab.frameworks.<name>_ops``);
:class:`Backend` is what the trainer, the samplers and the weights code use
(``unetlab.frameworks.<name>_backend``).  Both modules of both frameworks provide every member
with the same parameters (a test checks it), so framework-neutral code never branches on the
framework.  Tensors are NCHW float32 unless said otherwise; "tensor" means the framework's
own (``torch.Tensor`` or ``jittor.Var``).
"""
from __future__ import annotations

from typing import Any, ContextManager, Protocol, runtime_checkable

import numpy as np

#: Set by unetlab's launcher in the ranks' environment: the number of ranks it started (a framework
#: that sets up its own communication, Jittor under mpirun, reads it).
NPROC_ENV = "UNETLAB_NPROC"


@runtime_checkable
class Ops(Protocol):
    """The layer vocabulary a block may use (see :mod:`unetlab.blocks.contract`)."""

    NAME: str                 #: ``torch`` or ``jittor``
    Module: type              #: base class of every block; define ``forward``
    ModuleList: type          #: a list of modules whose parameters are registered
    Conv2d: type              #: ``Conv2d(in, out, kernel, stride=1, padding=0, groups=1)``, weight (out, in/groups, k, k); groups=in=out: depthwise
    ConvTranspose2d: type     #: ``ConvTranspose2d(in, out, kernel, stride, padding)``
    Linear: type              #: ``Linear(in, out)``, weight (out, in)
    Dropout: type             #: ``Dropout(p)``, active in training mode only
    Embedding: type           #: ``Embedding(num, dim)``
    Identity: type            #: returns its input
    GroupNorm: type           #: ``GroupNorm(groups, channels, eps=, affine=True)``

    def Parameter(self, array: np.ndarray) -> Any:
        """A trainable float32 parameter holding ``array``."""

    def silu(self, x) -> Any:
        """``x * sigmoid(x)``."""

    def cat(self, xs, dim: int) -> Any:
        """Concatenate tensors along ``dim``."""

    def chunk(self, x, n: int, dim: int) -> Any:
        """Split ``x`` into ``n`` equal parts along ``dim``."""

    def pad(self, x, lrtb) -> Any:
        """Zero-pad the last two dims by (left, right, top, bottom)."""

    def upsample_nearest2x(self, x) -> Any:
        """Nearest-neighbour upsampling by 2 in H and W."""

    def avg_pool2x(self, x) -> Any:
        """2x2 average pooling, stride 2."""

    def hflip(self, x) -> Any:
        """Mirror the last (width) axis."""

    def relu(self, x) -> Any:
        """``max(x, 0)``."""

    def exp(self, x) -> Any:
        """Elementwise exponential."""

    def softmax(self, x, dim: int) -> Any:
        """Softmax along ``dim`` (exponentials normalised to sum to 1)."""

    def sin(self, x) -> Any:
        """Elementwise sine."""

    def cos(self, x) -> Any:
        """Elementwise cosine."""

    def as_float(self, x) -> Any:
        """``x`` as float32."""

    def constant(self, array: np.ndarray, like) -> Any:
        """A float32 tensor holding ``array`` on ``like``'s device."""

    def zero_module(self, module) -> Any:
        """Zero every parameter of ``module`` and keep it at zero through initialisation."""

    def attention(self, q, k, v, fp32_softmax: bool = False, fused: bool = True) -> Any:
        """Softmax attention over (batch, heads, length, head_dim) tensors."""


@runtime_checkable
class Backend(Protocol):
    """Devices, tensors, state and optimisation for the trainer, samplers and weights code."""

    NAME: str  #: ``torch`` or ``jittor``

    def device_name(self) -> str:
        """A short description of the device computations run on (e.g. ``cpu``, ``NVIDIA H200``)."""

    def seed(self, value: int) -> None:
        """Seed the framework's own random generators (dropout, device-side noise)."""

    def prepare_model(self, model) -> Any:
        """Move a freshly built model to the framework's device; return it."""

    def tensor(self, array: np.ndarray) -> Any:
        """A tensor on the framework's device holding ``array`` (same dtype)."""

    def numpy(self, x) -> np.ndarray:
        """``x`` as a C-ordered numpy array on the host."""

    def item(self, x) -> float:
        """A one-element tensor as a Python float."""

    def state_dict(self, model) -> dict:
        """Every parameter (and buffer) as numpy arrays keyed by its dotted name."""

    def load_state_dict(self, model, arrays: dict) -> None:
        """Load numpy ``arrays`` by name into ``model`` in place."""

    def trainable(self, model) -> list:
        """``[(name, parameter)]`` of the parameters the optimiser updates."""

    def set_train(self, model, flag: bool) -> None:
        """Training mode (dropout on) or evaluation mode."""

    def no_grad(self) -> ContextManager:
        """A context in which no gradients are recorded."""

    def autocast(self, precision: str) -> ContextManager:
        """A context running the forward pass in ``precision`` (see ``frameworks.PRECISIONS``)."""

    Optimizer: type
    """``Optimizer(model, kind, lr, betas, eps, weight_decay, grad_clip)``: Adam or AdamW with the
    PyTorch update formula; ``step(loss)`` returns the pre-clip gradient norm, ``set_lr(lr)``,
    ``state()``/``load(arrays)`` move its moments as numpy arrays by parameter name."""

    def ema_update(self, ema_model, model, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * model``, parameter by parameter, in place."""

    def synchronize(self) -> None:
        """Wait until queued device work is done (for timing)."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory since the last reset, or None where it is not measured."""

    def full_timesteps(self, n: int, value: int) -> Any:
        """An integer (n,) tensor filled with ``value``."""

    def channels_last_default(self, compile_mode: str | None) -> bool:
        """The layout used when a spec leaves ``channels_last`` unset."""

    def fast_forward(self, model, compile_mode: str | None = None, channels_last: bool | None = False,
                     data_parallel: bool = False):
        """``model``'s forward ``f(x, t)`` as it should run for speed (compiled, channels-last);
        ``data_parallel``: its gradients are averaged over the ranks (PyTorch's DDP; Jittor's
        optimizer averages them itself)."""

    def init_world(self, world) -> None:
        """Join the ranks of a data-parallel run (a ``distributed.World``); once per process."""

    def close_world(self) -> None:
        """Leave the ranks (no-op when not joined)."""

    def mean_over_ranks(self, x) -> Any:
        """The mean of scalar ``x`` over the ranks (every rank calls it at the same point)."""

    def any_over_ranks(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank calls it at the same point)."""

    def randn_like(self, x) -> Any:
        """Standard normal noise with ``x``'s shape, from the framework's generator."""

    def materialize(self, x) -> Any:
        """Make sure ``x`` is computed (Jittor is lazy); return it."""


def missing_members(module, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``module`` lacks (empty when it fulfils it)."""
    names = [n for n in dir(protocol) if not n.startswith("_")]
    names += list(getattr(protocol, "__annotations__", {}))
    return sorted({n for n in names if not hasattr(module, n)})
