"""What the trainer and samplers need from Jittor (mirrors ``torch_backend``)."""
from __future__ import annotations

import contextlib
import math

import numpy as np

from ..errors import UnetlabError
from .jittor import runtime as jittor_runtime
from .jittor.nvml import process_gpu_bytes

jt = jittor_runtime.import_jittor()

NAME = "jittor"


def device_name() -> str:
    return "cuda" if jt.flags.use_cuda else "cpu"


def seed(value: int) -> None:
    jt.set_global_seed(value, different_seed_for_mpi=False)  # unetlab seeds its ranks itself


def prepare_model(model):
    return model


def tensor(array: np.ndarray):
    return jt.array(np.ascontiguousarray(array))


def numpy(x) -> np.ndarray:
    return x.numpy()


def item(x) -> float:
    return float(x.item())


def state_dict(model) -> dict:
    return {k: np.asarray(v.numpy()) for k, v in model.state_dict().items()}


def load_state_dict(model, arrays: dict) -> None:
    for name, value in model.state_dict().items():
        value.assign(jt.array(np.asarray(arrays[name], dtype=np.float32)).cast(value.dtype))
    jt.sync_all()


def trainable(model) -> list:
    """Every parameter (Jittor's ``eval()`` marks parameters stop-grad, so that flag is no guide)."""
    return list(model.named_parameters())


def set_train(model, flag: bool) -> None:
    model.train() if flag else model.eval()


def no_grad():
    return jt.no_grad()


def autocast(precision: str):
    """fp32 only for now: Jittor's mixed precision is switched by ``jt.flags.auto_mixed_precision_level``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16":
        return jt.flag_scope(auto_mixed_precision_level=5)
    raise UnetlabError(f"jittor: precision {precision!r} is not supported (supported: fp32, fp16)")


class Optimizer:
    """Adam or AdamW with gradient clipping, with PyTorch's update rule (so both frameworks
    follow the same arithmetic); ``step(loss)`` returns the pre-clip grad norm."""

    def __init__(self, model, kind: str, lr: float, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0, grad_clip: float | None = 1.0):
        named = trainable(model)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.decoupled = kind == "adamw"
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.grad_clip = grad_clip
        self.m = [jt.zeros(p.shape, p.dtype).stop_grad() for p in self.params]
        self.v = [jt.zeros(p.shape, p.dtype).stop_grad() for p in self.params]
        self.n = 0

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def step(self, loss):
        grads = jt.grad(loss, self.params)
        if jt.in_mpi and jt.world_size > 1:  # what jt.optim does, and this optimizer bypasses
            _average_over_ranks(grads)
        norm = jt.sqrt(sum((g * g).sum() for g in grads))
        coef = jt.minimum(self.grad_clip / (norm + 1e-6), 1.0) if self.grad_clip else None
        self.n += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.n, 1 - b2 ** self.n
        step_size = self.lr / bc1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if coef is not None:
                g = g * coef
            if self.weight_decay and not self.decoupled:
                g = g + p * self.weight_decay
            m.update(b1 * m + (1 - b1) * g)
            v.update(b2 * v + (1 - b2) * g * g)
            new = p * (1 - self.lr * self.weight_decay) if self.decoupled and self.weight_decay else p
            p.update(new - step_size * m / (jt.sqrt(v) / math.sqrt(bc2) + self.eps))
        jt.sync(self.params + self.m + self.v)
        return norm

    def state(self) -> dict:
        out = {"step": np.asarray(float(self.n))}
        for name, m, v in zip(self.names, self.m, self.v):
            out[f"m/{name}"], out[f"v/{name}"] = m.numpy(), v.numpy()
        return out

    def load(self, arrays: dict) -> None:
        if "step" not in arrays:
            return
        self.n = int(arrays["step"])
        for name, m, v in zip(self.names, self.m, self.v):
            m.assign(jt.array(arrays[f"m/{name}"]).stop_grad())
            v.assign(jt.array(arrays[f"v/{name}"]).stop_grad())


def _average_over_ranks(grads: list) -> None:
    """Replace each gradient by its mean over the MPI ranks, in place, in one fixed order on every
    rank (each all-reduce depends on the one before, as in ``jt.optim``)."""
    before = []
    for g in grads:
        g.assign(g.mpi_all_reduce("mean"))
        reduced = g._input(0)
        reduced._add_dependency(before)
        before = [reduced]


def init_world(world) -> None:
    """Check that Jittor's MPI sees the world mpirun started (it is on only for MPI runs)."""
    if not jt.in_mpi or jt.world_size != world.size or jt.rank != world.rank:
        raise UnetlabError(f"jittor: MPI is not set up for this run (rank {jt.rank} of {jt.world_size}, "
                           f"expected rank {world.rank} of {world.size}); run it with mpirun from OpenMPI")


def close_world() -> None:
    pass


def mean_over_ranks(x):
    mean = x.mpi_all_reduce("mean")
    mean.sync()  # now, on every rank: a rank-0-only evaluation later would wait for the others
    return mean


def any_over_ranks(flag: bool) -> bool:
    return bool(jt.array([float(flag)]).mpi_all_reduce("add").item() > 0)


def ema_update(ema_model, model, decay: float) -> None:
    ema = [p for _, p in trainable(ema_model)]
    cur = [p for _, p in trainable(model)]
    for e, c in zip(ema, cur):
        e.update(e * decay + c.detach() * (1.0 - decay))
    jt.sync(ema)


def synchronize() -> None:
    jt.sync_all(True)


def reset_peak_memory() -> None:
    pass


def peak_memory_bytes() -> int | None:
    """Peak bytes held by live arrays: not tracked by Jittor outside its (slow) memory profiler,
    so None; see :func:`held_memory_bytes` for what the process holds."""
    return None


def held_memory_bytes() -> int | None:
    """GPU memory this process holds, from NVML (Jittor's caching allocator keeps what it once
    used, so this is at least the peak).  None on the CPU or without NVML."""
    if not jt.flags.use_cuda:
        return None
    return process_gpu_bytes()


def full_timesteps(n: int, value: int):
    return jt.full((n,), int(value), dtype="int64")


def channels_last_default(compile_mode: str | None) -> bool:
    """Jittor has one layout."""
    return False


def fast_forward(model, compile_mode: str | None = None, channels_last: bool | None = False,
                 data_parallel: bool = False):
    """``model`` itself: compile modes and channels-last layout are PyTorch's (callers check;
    ``channels_last=None``, the unset default, is Jittor's one layout).  With ``data_parallel``
    the :class:`Optimizer` averages the gradients over the MPI ranks."""
    if compile_mode is not None or channels_last:
        raise ValueError("compile and channels_last are torch options")
    return model


def randn_like(x):
    return jt.randn(x.shape, dtype=x.dtype)


def materialize(x):
    """Make sure ``x`` is computed: Jittor is lazy and drops unused results unevaluated."""
    x.sync()
    return x
