"""What the trainer and samplers need from PyTorch (mirrors ``jittor_backend``)."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .torch_modes import COMPILE_MODES, CUDA_GRAPH_MODES

NAME = "torch"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    d = device()
    return torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"


def seed(value: int) -> None:
    torch.manual_seed(value)


def prepare_model(model):
    """Move ``model`` to the device; returns it."""
    return model.to(device())


def tensor(array: np.ndarray):
    """A tensor on the device holding ``array`` (dtype kept)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device(), non_blocking=True)


def numpy(x) -> np.ndarray:
    """``x`` on the host, C-ordered whatever its layout (a channels-last tensor's strides stay on
    the device); floating types as float32."""
    x = x.detach().float() if x.is_floating_point() else x.detach()
    return x.cpu().contiguous().numpy()


def item(x) -> float:
    return float(x.detach().item())


def state_dict(model) -> dict:
    """Parameters and buffers as float32 numpy arrays, by name (C order, whatever the layout)."""
    return {k: numpy(v) for k, v in model.state_dict().items()}


def load_state_dict(model, arrays: dict) -> None:
    """Copy numpy ``arrays`` into ``model`` (names and shapes must match; see ``weights``)."""
    with torch.no_grad():
        for name, value in model.state_dict().items():
            value.copy_(torch.from_numpy(np.asarray(arrays[name])).to(value.dtype))


def trainable(model) -> list:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def set_train(model, flag: bool) -> None:
    model.train(flag)


def no_grad():
    return torch.no_grad()


def autocast(precision: str):
    """A context running the forward pass in ``precision`` (fp32, tf32 or bf16)."""
    dev = device().type
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return torch.autocast(device_type=dev, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Optimizer:
    """Adam or AdamW with gradient clipping; ``step(loss)`` returns the pre-clip grad norm."""

    def __init__(self, model, kind: str, lr: float, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0, grad_clip: float | None = 1.0):
        params = [p for _, p in trainable(model)]
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        fused = device().type == "cuda"
        self.opt = cls(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused)
        self.params = params
        self.names = [n for n, _ in trainable(model)]
        self.grad_clip = grad_clip

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self, loss):
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.grad_clip if self.grad_clip else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.opt.step()
        return norm

    def state(self) -> dict:
        """Moments and step count as numpy arrays keyed by parameter name."""
        out = {}
        for name, p in zip(self.names, self.params):
            st = self.opt.state.get(p, {})
            if st:
                out[f"m/{name}"] = numpy(st["exp_avg"])
                out[f"v/{name}"] = numpy(st["exp_avg_sq"])
                out["step"] = np.asarray(float(st["step"]))
        return out

    def load(self, arrays: dict) -> None:
        if "step" not in arrays:
            return
        dev = self.params[0].device
        for name, p in zip(self.names, self.params):
            self.opt.state[p] = {  # moments in their parameter's layout (channels-last or not)
                "step": torch.tensor(float(arrays["step"]), device=dev if self.opt.defaults.get("fused") else "cpu"),
                "exp_avg": torch.empty_like(p).copy_(torch.from_numpy(arrays[f"m/{name}"])),
                "exp_avg_sq": torch.empty_like(p).copy_(torch.from_numpy(arrays[f"v/{name}"])),
            }


def ema_update(ema_model, model, decay: float) -> None:
    with torch.no_grad():
        ema = [p for _, p in trainable(ema_model)]
        cur = [p for _, p in trainable(model)]
        torch._foreach_lerp_(ema, cur, 1.0 - decay)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes() -> int | None:
    """Peak device memory since the last reset (None on the CPU, where it is not tracked)."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return None


def held_memory_bytes() -> int | None:
    """Peak device memory held by PyTorch's caching allocator (reserved; None on the CPU)."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_reserved())
    return None


def full_timesteps(n: int, value: int):
    return torch.full((n,), int(value), dtype=torch.long, device=device())


def channels_last_default(compile_mode: str | None) -> bool:
    """The layout used when a spec leaves ``channels_last`` unset: channels-last where it was
    measured faster (the CPU, where oneDNN prefers it: 10-20% per training step; a compiled
    model on a GPU: 2%), the default layout elsewhere (eager on a GPU: not measured)."""
    return device().type == "cpu" or compile_mode is not None


def fast_forward(model, compile_mode: str | None = None, channels_last: bool | None = False,
                 data_parallel: bool = False):
    """``model``'s forward as it should run for speed: in channels-last layout (weights converted
    once, inputs on each call), wrapped in DDP with ``data_parallel`` (after the layout change, so
    DDP's buckets follow it) and/or compiled with ``compile_mode`` (None: eager).  With
    ``channels_last=None`` the layout is ``channels_last_default(compile_mode)``.  With a
    CUDA-graph mode each call starts a new graph step, so an earlier call's output may be reused:
    use it before the next call (the trainer and samplers do)."""
    forward = model
    if channels_last is None:
        channels_last = channels_last_default(compile_mode)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if data_parallel:
        forward = _ddp(model)
    if compile_mode is not None:
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile mode {compile_mode!r}: expected one of {', '.join(COMPILE_MODES)}")
        forward = torch.compile(forward, mode=None if compile_mode == "default" else compile_mode)
    graphs = compile_mode in CUDA_GRAPH_MODES and device().type == "cuda"
    if not channels_last and not graphs:
        return forward

    def run(x, t):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return forward(x, t)

    return run


def _ddp(model):
    from torch.nn.parallel import DistributedDataParallel

    on_gpu = device().type == "cuda"
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if on_gpu else None)


def init_world(world) -> None:
    """Join the process group torchrun set up: NCCL on GPUs (one per local rank), gloo on the CPU."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def close_world() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(x):
    import torch.distributed as dist

    total = x.detach().clone()
    dist.all_reduce(total)  # a sum: gloo has no average
    return total / dist.get_world_size()


def any_over_ranks(flag: bool) -> bool:
    import torch.distributed as dist

    votes = torch.tensor([float(flag)], device=device())
    dist.all_reduce(votes)
    return bool(votes.item() > 0)


def randn_like(x):
    return torch.randn_like(x)


def materialize(x):
    """Make sure ``x`` is computed (PyTorch computes eagerly; ``synchronize`` waits for it)."""
    return x
