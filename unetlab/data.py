"""Training images as one numpy pipeline feeding both frameworks.

Images are float32 arrays (N, C, H, W) in [-1, 1].  Batches are a pure function of
``(seed, step)``, so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from .errors import UnetlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) uint8 or float images to size x size (PIL)."""
    from PIL import Image

    if images.shape[1] == size and images.shape[2] == size:
        return images.astype(np.float32)
    out = []
    for img in images:
        channels = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F")
                               .resize((size, size), Image.BILINEAR)) for c in range(img.shape[-1])]
        out.append(np.stack(channels, axis=-1))
    return np.stack(out).astype(np.float32)


def _to_model_range(images_nhwc: np.ndarray, max_value: float) -> np.ndarray:
    x = images_nhwc.astype(np.float32) / max_value * 2.0 - 1.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def digits(image_size: int = 16) -> np.ndarray:
    """scikit-learn's 1,797 shipped 8x8 digits, upscaled to ``image_size`` (1 channel)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[..., None]  # values 0..16
    return _to_model_range(_resize(images, image_size), 16.0)


def shapes(image_size: int = 16, n: int = 2048, seed: int = 0) -> np.ndarray:
    """Generated RGB images: one filled disc or square of random colour, size and place."""
    return labelled_shapes(image_size, n, seed)[0]


#: The shape class of each generated image (:func:`labelled_shapes`).
SHAPE_CLASSES = ("disc", "square")


def labelled_shapes(image_size: int = 16, n: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shapes`' images and each one's shape class (0: disc, 1: square; see ``SHAPE_CLASSES``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    out = np.empty((n, image_size, image_size, 3), np.float32)
    labels = np.empty(n, np.int64)
    for i in range(n):
        bg, fg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        r = rng.uniform(0.15, 0.35) * image_size
        cy, cx = rng.uniform(r, image_size - r, 2)
        labels[i] = 0 if rng.random() < 0.5 else 1
        if labels[i] == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        out[i] = np.where(mask[..., None], fg, bg)
    return _to_model_range(out, 1.0), labels


def _read_cifar_folder(folder: Path) -> np.ndarray:
    batches = []
    for k in range(1, 6):
        with open(folder / f"data_batch_{k}", "rb") as f:
            batches.append(pickle.load(f, encoding="latin1")["data"])
    return np.concatenate(batches).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def ensure_cifar10(root: str | os.PathLike, download: bool = True) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root``, downloaded by torchvision if missing
    and allowed; offline, a one-line error says what to put where."""
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    if not (folder / "data_batch_1").is_file():
        reason = "download is off (data.download: false)"
        if download:
            try:
                from torchvision.datasets import CIFAR10

                CIFAR10(str(root), train=True, download=True)
            except Exception as exc:  # noqa: BLE001 - any failure becomes one clear line
                reason = f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        if not (folder / "data_batch_1").is_file():
            raise UnetlabError(f"CIFAR-10 not found at {folder} and {reason}: extract "
                               f"cifar-10-python.tar.gz into {root}/ (giving {folder}/data_batch_1..5), "
                               f"or use data.dataset: folder")
    return folder


def cifar10(root: str | os.PathLike, image_size: int = 32, download: bool = True) -> np.ndarray:
    """The 50,000 CIFAR-10 training images from ``root/cifar-10-batches-py`` (see :func:`ensure_cifar10`)."""
    folder = ensure_cifar10(root, download)
    return _to_model_range(_resize(_read_cifar_folder(folder), image_size), 255.0)


def list_images(root: str | os.PathLike) -> list[Path]:
    """The image files under ``root`` (recursively, sorted); empty when there are none."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []


def image_files(root: str | os.PathLike) -> list[Path]:
    """The image files under ``root`` (recursively), or a one-line error when there are none."""
    files = list_images(root)
    if not files:
        raise UnetlabError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return files


def check_available(data: dict) -> None:
    """Fail early, in one line, when a resolved ``data`` section names images that are not there
    or cannot be read (downloading CIFAR-10 first when that is allowed and possible)."""
    if data["dataset"] == "cifar10":
        ensure_cifar10(data["root"], data["download"])
    elif data["dataset"] == "folder":
        from PIL import Image

        for path in image_files(data["root"]):
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
                raise UnetlabError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: BaseException) -> str:
    detail = str(exc).splitlines()[0].replace(f" {str(path)!r}", "") if str(exc) else type(exc).__name__
    return f"data.root: {path}: not a readable image ({detail}); fix or remove it"


def read_image(path: Path, mode: str, image_size: int) -> np.ndarray:
    """One image file as a uint8 array in ``mode`` (L or RGB) at ``image_size``; a damaged or
    unreadable file is a one-line error naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode).resize((image_size, image_size), Image.BILINEAR))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a damaged file
        raise UnetlabError(_unreadable(path, exc)) from None


def image_folder(root: str | os.PathLike, image_size: int, channels: int) -> np.ndarray:
    """Every image under ``root`` (recursively), resized to ``image_size``."""
    files = image_files(root)
    mode = "L" if channels == 1 else "RGB"
    arr = np.stack([read_image(p, mode, image_size) for p in files])
    if arr.ndim == 3:
        arr = arr[..., None]
    return _to_model_range(arr, 255.0)


def load_dataset(data: dict, image_size: int, channels: int, seed: int = 0) -> np.ndarray:
    """The images a resolved ``data`` section describes, as (N, C, H, W) float32 in [-1, 1]."""
    name = data["dataset"]
    if name == "digits":
        images = digits(image_size)
    elif name == "shapes":
        images = shapes(image_size, data["num_images"], seed)
    elif name == "cifar10":
        images = cifar10(data["root"], image_size, data["download"])
    elif name == "folder":
        images = image_folder(data["root"], image_size, channels)
    else:
        raise UnetlabError(f"unknown dataset {name!r}")
    if images.shape[1] != channels:
        raise UnetlabError(f"data: {name} images have {images.shape[1]} channels, the model takes {channels}")
    if data["limit"] is not None:
        images = images[: data["limit"]]
    return images


class Batches:
    """Batch ``k`` of a run is a pure function of ``(seed, k)``: reshuffled every epoch,
    optionally flipped, so interrupted and resumed runs see the same data.  ``part`` (a slice of
    the batch) gives one rank's share of every batch in a data-parallel run."""

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, flip: bool, part: slice = slice(None)):
        if len(images) < batch_size:
            raise UnetlabError(f"train.batch_size {batch_size} exceeds the {len(images)} training images")
        self.images, self.batch_size, self.seed, self.flip = images, batch_size, seed, flip
        self.part = part
        self.per_epoch = len(images) // batch_size
        self._epoch, self._order = None, None

    def indices(self, step: int) -> np.ndarray:
        """Which images make batch ``step`` (this part of it)."""
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.images))
            self._epoch = epoch
        return self._order[index * self.batch_size:(index + 1) * self.batch_size][self.part]

    def flips(self, step: int) -> np.ndarray:
        """Which images of batch ``step`` are mirrored (all False without flipping)."""
        if not self.flip:
            return np.zeros(self.batch_size, dtype=bool)[self.part]
        return (np.random.default_rng([self.seed, 2, step]).random(self.batch_size) < 0.5)[self.part]

    def __call__(self, step: int) -> np.ndarray:
        batch = self.images[self.indices(step)]
        flips = self.flips(step)
        batch = np.where(flips[:, None, None, None], batch[..., ::-1], batch)
        return np.ascontiguousarray(batch, dtype=np.float32)


class DeviceBatches:
    """The same batches as :class:`Batches`, gathered from a copy of the images kept on the
    framework's device, so only indices and flip flags cross to the device each step."""

    def __init__(self, batches: Batches, backend, ops):
        self.batches, self.backend, self.ops = batches, backend, ops
        self.images = backend.tensor(batches.images)

    def __call__(self, step: int):
        b = self.backend
        x0 = self.images[b.tensor(self.batches.indices(step))]
        flips = self.batches.flips(step)
        if flips.any():
            m = b.tensor(flips.astype(np.float32).reshape(-1, 1, 1, 1))
            x0 = x0 + m * (self.ops.hflip(x0) - x0)
        return x0
