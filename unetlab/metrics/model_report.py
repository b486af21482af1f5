"""Parameter count and forward FLOPs of a model at its spec's image size."""
from __future__ import annotations

from ..model import build_model
from ..spec.model import resolve_model_spec
from ..weights import count_parameters


def forward_gflops(spec) -> float:
    """Forward GFLOPs per image at the spec's image size, counted by ``torch.utils.flop_counter``
    (both frameworks run the same arithmetic, so one count serves both)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    resolved = resolve_model_spec(spec)
    model = build_model(resolved, "torch", device=False).eval()
    x = torch.zeros(1, resolved.in_channels, resolved.image_size, resolved.image_size)
    t = torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t)
    return counter.get_total_flops() / 1e9


def model_report(spec, framework: str = "torch") -> dict:
    resolved = resolve_model_spec(spec)
    params = count_parameters(build_model(resolved, framework, device=False))
    return {"params": params, "gflops_forward": round(forward_gflops(resolved), 4),
            "image_size": resolved.image_size}
