"""Sampling from a model or a run folder: grids (PNG), image folders and npz files."""
from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np

from .diffusion import ddim_sample, ddpm_sample, make_schedule
from .files import atomic_write_bytes
from .fs_errors import naming
from .frameworks import backend_for, check_run_section, ops_for


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    x = np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images into one (H', W', C) image."""
    n, h, w, c = images.shape
    cols = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = img
    return out


def save_png(image: np.ndarray, path: Path) -> None:
    """Write ``image`` (H, W, C) uint8 as a PNG, atomically; a full disk names ``path``."""
    from PIL import Image

    buf = io.BytesIO()
    with naming(path):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
        atomic_write_bytes(Path(path), buf.getvalue())


class _SamplingNetwork:
    """The network as the samplers call it: compiled and/or channels-last, under autocast,
    returning float32."""

    def __init__(self, model, forward, precision: str):
        self.forward, self.precision = forward, precision
        self.backend, self.ops = backend_for(model.framework), ops_for(model.framework)

    def __call__(self, x, t):
        with self.backend.autocast(self.precision):
            out = self.forward(x, t)
        return self.ops.as_float(out)


def sampling_network(model, sample: dict):
    """``model`` prepared for sampling as the ``sample`` section asks (precision, compile,
    layout); ``model`` itself when it asks for nothing."""
    framework = model.framework
    check_run_section(framework, "sample", sample)
    forward = backend_for(framework).fast_forward(model, sample["compile_mode"] if sample["compile"] else None,
                                                  sample["channels_last"])
    if forward is model and sample["precision"] == "fp32":
        return model
    return _SamplingNetwork(model, forward, sample["precision"])


def generate(model, spec: dict, n: int, seed: int = 0, batch_size: int | None = None,
             progress=None) -> tuple[np.ndarray, dict]:
    """``n`` samples (N, C, H, W) in [-1, 1] from ``model`` with the spec's sampler, and timing.

    The initial noise comes from numpy (``seed``), so both frameworks start from the same x_T;
    a stochastic sampler's per-step noise comes from the framework's RNG, seeded per batch from
    ``seed``, so variants of one seed share it too (common random numbers).
    Returns the images and ``{"seconds", "nfe", "sample_img_s"}`` where sample_img_s counts
    network evaluations times batch per second.
    """
    framework = model.framework
    backend = backend_for(framework)
    sample, diffusion, m = spec["sample"], spec["diffusion"], spec["model"]
    betas = make_schedule(diffusion).betas
    batch_size = batch_size or sample["batch_size"]
    rng = np.random.default_rng([seed, 3])
    backend.set_train(model, False)
    model = sampling_network(model, sample)
    out, nfe, seconds = [], 0, 0.0
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x_T = backend.tensor(rng.standard_normal((b, m["in_channels"], m["image_size"], m["image_size"]),
                                                 dtype=np.float32))
        backend.seed(int(np.random.SeedSequence([seed, 3, start]).generate_state(1)[0] % (2 ** 31)))
        backend.synchronize()
        t0 = time.perf_counter()
        if sample["sampler"] == "ddpm":
            x = ddpm_sample(model, x_T, betas=betas, prediction=diffusion["prediction"], progress=progress)
            steps = len(betas)
        else:
            x = ddim_sample(model, x_T, betas=betas, steps=sample["steps"], eta=sample["eta"],
                            skip=sample["skip"], prediction=diffusion["prediction"], progress=progress)
            steps = sample["steps"]
        images = backend.numpy(x)
        seconds += time.perf_counter() - t0
        nfe += steps * b
        out.append(images)
    return np.concatenate(out), {"seconds": seconds, "nfe": nfe,
                                 "sample_img_s": nfe / seconds if seconds > 0 else None}


def save_samples(images: np.ndarray, folder: Path) -> None:
    """Write images as ``folder/000000.png``... and ``folder/samples.npz`` (uint8 NHWC)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    u8 = to_uint8(images)
    for i, img in enumerate(u8):
        save_png(img, folder / f"{i:06d}.png")
    buf = io.BytesIO()
    np.savez_compressed(buf, images=u8)
    with naming(folder / "samples.npz"):
        atomic_write_bytes(folder / "samples.npz", buf.getvalue())
