"""FID through clean-fid, FD-small (a Frechet distance in a small fixed network's space), and
scoring runs and folders.

FID uses clean-fid's resizers, its Inception networks and its CIFAR-10 reference statistics,
read from a local cache folder (``eval.cache_dir``, else clean-fid's own places).  Against the
training images a score is a Frechet distance in a trained classifier's features (``FD-digits``,
see :mod:`unetlab.metrics.feature_net`) or, where a dataset has none, in the features of a
fixed-seed random conv net (FD-small): cheap, deterministic, offline -- and not comparable to FID.
Which space a score uses, and its bootstrap CI and extra metrics: :mod:`unetlab.metrics.scoring`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
import urllib.request

import numpy as np

from ..data import IMAGE_SUFFIXES, list_images
from ..errors import UnetlabError
from ..files import atomic_write_bytes
from ..readers import read_npz_array

STATS_URL = "https://www.cs.cmu.edu/~clean-fid/stats/"
PYTORCH_INCEPTION = "pt_inception-2015-12-05-6726825d.pth"


# -- the small feature network ---------------------------------------------------------------

def small_extractor(seed: int = 0):
    """A fixed random conv net (CPU, float32): (B, 3, H, W) in [0, 255] -> (B, 64) features,
    the channel means and standard deviations of its last layer."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    chans = (3, 16, 32, 32)
    weights = [torch.randn(o, i, 3, 3, generator=g) * (2.0 / (i * 9)) ** 0.5 for i, o in zip(chans, chans[1:])]

    def extract(x):
        x = x.float().cpu() / 127.5 - 1.0
        for k, w in enumerate(weights):
            x = F.leaky_relu(F.conv2d(x, w, stride=1 if k == 0 else 2, padding=1), 0.2)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)

    return extract


# -- features and distances ------------------------------------------------------------------

def _rgb(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UnetlabError(f"expected uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def features(images: np.ndarray, extractor, resize=None, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Features of uint8 (N, H, W, C) images: each resized (a clean-fid resizer) then batched
    through ``extractor`` with clean-fid's ``get_batch_features``."""
    from cleanfid.fid import get_batch_features
    import torch

    images = _rgb(images)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        if resize is not None:
            chunk = np.stack([np.asarray(resize(img), dtype=np.float32) for img in chunk])
        batch = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2), dtype=np.float32))
        out.append(get_batch_features(batch, extractor, device))
    return np.concatenate(out).astype(np.float64)


def frechet(feats_a: np.ndarray, feats_b=None, stats_b=None) -> float:
    """Frechet distance between the Gaussians of two feature sets (or of ``feats_a`` and the
    statistics ``stats_b`` = (mu, sigma))."""
    from .distances import frechet_from_stats, gaussian

    if len(feats_a) < 2:
        raise UnetlabError("a Frechet distance needs at least 2 images")
    mu_b, sigma_b = stats_b if stats_b is not None else gaussian(feats_b)
    return frechet_from_stats(mu_b, sigma_b, *gaussian(feats_a))


def fd_small(images: np.ndarray, reference: np.ndarray) -> float:
    """FD-small between two sets of uint8 (N, H, W, C) images."""
    extract = small_extractor()
    return frechet(features(images, extract), features(reference, extract))


# -- Inception FID against CIFAR-10 ----------------------------------------------------------

def fid_files(mode: str, cache_dir: str | None) -> dict:
    """{what: (path, url)} of the files FID needs, where clean-fid (or ``cache_dir``) keeps them."""
    import cleanfid
    import torch

    stats_name = f"cifar10_{mode}_train_32.npz"
    stats_dir = Path(cache_dir) if cache_dir else Path(cleanfid.__file__).parent / "stats"
    if mode == "legacy_pytorch":
        from cleanfid.inception_pytorch import FID_WEIGHTS_URL
        hub = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir())
        weights = (hub / "checkpoints" / PYTORCH_INCEPTION, FID_WEIGHTS_URL)
    else:
        from cleanfid.downloads_helper import inception_url
        folder = Path(cache_dir) if cache_dir else Path("/tmp")  # clean-fid's own choice
        weights = (folder / os.path.basename(inception_url), inception_url)
    return {"Inception weights": weights, "CIFAR-10 train statistics": (stats_dir / stats_name, STATS_URL + stats_name)}


def _fetch(path: Path, url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
        atomic_write_bytes(path, data)
        return True
    except Exception:  # noqa: BLE001 - offline or unwritable: the caller says what to put where
        return False


def ensure_fid_files(mode: str, cache_dir: str | None) -> dict:
    """The paths of the FID files, downloaded when missing; offline, one line saying what goes where."""
    files = fid_files(mode, cache_dir)
    missing = [(what, path, url) for what, (path, url) in files.items() if not path.is_file() and not _fetch(path, url)]
    if missing:
        where = "; ".join(f"{what}: put {url} at {path}" for what, path, url in missing)
        raise UnetlabError(f"FID ({mode}) needs files that are missing and could not be downloaded -- {where} "
                           f"(or set eval.cache_dir to a folder holding them)")
    return {what: path for what, (path, _) in files.items()}


def inception_extractor(mode: str, weights: Path, device):
    """clean-fid's Inception for ``mode``, loaded from ``weights`` (no download)."""
    import torch

    if mode == "legacy_pytorch":
        from cleanfid.inception_pytorch import InceptionV3
        old = torch.hub.get_dir()
        torch.hub.set_dir(str(weights.parent.parent))
        try:
            model = InceptionV3(output_blocks=[3], resize_input=False).to(device).eval()
        finally:
            torch.hub.set_dir(old)
        return lambda x: model(x / 255)[0].squeeze(-1).squeeze(-1)
    from cleanfid.inception_torchscript import InceptionV3W
    model = InceptionV3W(str(weights.parent), download=False, resize_inside=mode == "legacy_tensorflow")
    model = model.to(device).eval()
    return lambda x: model(x)


def inception_features(images: np.ndarray, mode: str = "clean", cache_dir: str | None = None,
                       device=None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Inception features of uint8 (N, H, W, C) images and clean-fid's CIFAR-10 train (mu, sigma)."""
    from cleanfid.resize import build_resizer
    import torch

    paths = ensure_fid_files(mode, cache_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    extract = inception_extractor(mode, paths["Inception weights"], device)
    with np.load(paths["CIFAR-10 train statistics"]) as stats:
        mu, sigma = stats["mu"], stats["sigma"]
    resize = build_resizer(mode)
    feats = features(images, extract, resize=lambda img: resize(img).astype(np.float32), batch_size=64,
                     device=device)
    return feats, (mu, sigma)


def fid_cifar10(images: np.ndarray, mode: str = "clean", cache_dir: str | None = None, device=None) -> float:
    """FID of uint8 (N, H, W, C) images against clean-fid's CIFAR-10 train statistics."""
    feats, stats = inception_features(images, mode, cache_dir, device)
    return frechet(feats, stats_b=stats)


def reference_features_path(mode: str, cache_dir: str | None) -> Path:
    """Where the CIFAR-10 train Inception features (``features``: (N, 2048)) for KID and PRDC are
    looked for: beside clean-fid's statistics, ``cifar10_<mode>_train_32_features.npz``."""
    stats_path, _ = fid_files(mode, cache_dir)["CIFAR-10 train statistics"]
    return stats_path.with_name(f"cifar10_{mode}_train_32_features.npz")


def reference_features(mode: str, cache_dir: str | None) -> tuple[np.ndarray | None, Path]:
    """(the CIFAR-10 train Inception features or None when the file is missing, its path); a file
    that is there but unreadable is a one-line error naming it."""
    path = reference_features_path(mode, cache_dir)
    if not path.is_file():
        return None, path
    try:
        with np.load(path, allow_pickle=False) as f:
            feats = np.asarray(f["features"], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a damaged npz fails in many ways
        raise UnetlabError(f"{path}: not a reference features file ({type(exc).__name__}); "
                           f"it needs an array 'features' (N, 2048)") from None
    if feats.ndim != 2 or len(feats) < 2:
        raise UnetlabError(f"{path}: 'features' must be an (N, D) array with N >= 2, got shape {feats.shape}")
    return feats, path


def write_reference_features(mode: str, cache_dir: str | None, data_root: str, device=None) -> Path:
    """Compute the Inception features of the 50,000 CIFAR-10 training images (``data_root``) and
    store them where :func:`reference_features` looks (a GPU makes this minutes, not hours)."""
    from ..data import cifar10
    from ..sampling import to_uint8

    feats, _ = inception_features(to_uint8(cifar10(data_root, 32, download=False)), mode, cache_dir, device)
    path = reference_features_path(mode, cache_dir)
    buffer = io.BytesIO()
    np.savez(buffer, features=feats.astype(np.float32))
    atomic_write_bytes(path, buffer.getvalue())
    return path


# -- scoring images, runs and folders --------------------------------------------------------

def protocol(fid: dict) -> str:
    """A short form of how a score was measured: ``FID clean 10k ddim100 ema``."""
    n = fid.get("n", 0)
    count = f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)
    sampler = fid.get("sampler") or "?"
    steps = f"{sampler}{fid.get('steps')}" if sampler == "ddim" else sampler
    eta = f" eta{fid['eta']:g}" if sampler == "ddim" and fid.get("eta") else ""
    what = fid.get("name", "FID") + (f" {fid['mode']}" if fid.get("name") == "FID" else "")
    return f"{what} {count} {steps}{eta}{' ema' if fid.get('ema') else ''}".strip()


def load_folder(folder, n: int | None = None) -> np.ndarray:
    """uint8 (N, H, W, C) images of a folder: its samples.npz, else its image files (sorted)."""
    from PIL import Image

    folder = Path(folder)
    if (folder / "samples.npz").is_file():
        images = read_npz_array(folder / "samples.npz", "images", "samples file")
        return images[:n] if n else images
    files = list_images(folder)[: n or None]
    if not files:
        raise UnetlabError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) and no samples.npz")
    def read(path, size=None):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                return img.resize(size, Image.BICUBIC) if size else img
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
            detail = str(exc).splitlines()[0].replace(f" {str(path)!r}", "") or type(exc).__name__
            raise UnetlabError(f"{path}: not a readable image ({detail}); fix or remove it") from None

    size = read(files[0]).size
    return np.stack([np.asarray(read(p, size)) for p in files])
