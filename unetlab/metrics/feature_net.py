"""Trained feature networks: a small classifier per shipped dataset (digits, shapes).

Each is a LeNet-style conv net trained on the CPU in a few seconds, deterministically (fixed
seed, deterministic algorithms, one thread), on the dataset's training split, and scored on a
held-out split.  Its features are the penultimate layer (divided by one fixed scale, the root
mean square feature of the training images): the space of ``FD-digits`` and ``FD-shapes`` and
of KID and PRDC on those datasets.  Images of any size are resized to the
network's size, grey images repeated to RGB and RGB ones averaged to grey as the network takes.

A trained network is cached as ``<dataset>-<size>px-<channels>ch-v<VERSION>.npz`` (its weights and
a ``meta`` JSON with its held-out accuracy) in :func:`cache_folder`, written atomically.  A cached
file that cannot be read, or that holds another network, is retrained and replaced, with a
warning naming it: training is deterministic, so the replacement is the file that should have
been there.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..files import atomic_write_bytes

#: Bumped whenever the recipe (data split, architecture, training) changes: old files are ignored.
VERSION = 1
#: The width of the penultimate layer: the feature vectors' size.
FEATURES = 64
#: The environment variable naming unetlab's cache folder (feature networks under ``features/``).
CACHE_ENV = "UNETLAB_CACHE_DIR"


@dataclass(frozen=True)
class Recipe:
    """How one dataset's feature network is shaped and trained."""
    dataset: str
    size: int        # input images are resized to size x size
    channels: int
    classes: int
    epochs: int
    seed: int = 0

    @property
    def file_name(self) -> str:
        return f"{self.dataset}-{self.size}px-{self.channels}ch-v{VERSION}.npz"


RECIPES = {
    "digits": Recipe("digits", size=16, channels=1, classes=10, epochs=10),
    "shapes": Recipe("shapes", size=16, channels=3, classes=2, epochs=8),
}
#: Adam's peak learning rate (a one-cycle schedule) and the batch size of every recipe.
LEARNING_RATE, BATCH_SIZE = 1e-2, 64
#: shapes has no split of its own: the network's images come from generator seeds no run uses by default.
SHAPES_TRAIN, SHAPES_HELD_OUT = (2048, 90_001), (1024, 90_002)
#: digits: the share of sklearn's 1,797 digits held out (a seeded, stratified split).
DIGITS_HELD_OUT = 0.2


def has_feature_net(dataset: str | None) -> bool:
    """Whether ``dataset`` has a trained feature network (else its scores use FD-small)."""
    return dataset in RECIPES


def score_name(dataset: str) -> str:
    """The name of the Frechet distance in ``dataset``'s trained features: ``FD-digits``."""
    return f"FD-{dataset}"


# -- data --------------------------------------------------------------------------------------

def labelled_split(recipe: Recipe) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (N, H, W, C) training images and labels, then held-out images and labels."""
    from ..data import digits, labelled_shapes
    from ..sampling import to_uint8

    if recipe.dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = to_uint8(digits(recipe.size)), load_digits().target
        x_train, x_test, y_train, y_test = train_test_split(
            images, labels, test_size=DIGITS_HELD_OUT, random_state=recipe.seed, stratify=labels)
        return x_train, y_train, x_test, y_test
    (n_train, seed_train), (n_test, seed_test) = SHAPES_TRAIN, SHAPES_HELD_OUT
    x_train, y_train = labelled_shapes(recipe.size, n_train, seed_train)
    x_test, y_test = labelled_shapes(recipe.size, n_test, seed_test)
    return to_uint8(x_train), y_train, to_uint8(x_test), y_test


# -- the network -------------------------------------------------------------------------------

def build_classifier(recipe: Recipe):
    """The classifier: two conv+pool stages, a FEATURES-wide layer (the features), a linear head."""
    import torch.nn as nn

    flat = 32 * (recipe.size // 4) ** 2
    body = nn.Sequential(
        nn.Conv2d(recipe.channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, FEATURES), nn.ReLU())
    return nn.Sequential(body, nn.Linear(FEATURES, recipe.classes))


def network_input(images: np.ndarray, recipe: Recipe):
    """uint8 (N, H, W, C) images as the network's float (N, C, size, size) tensor in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UnetlabError(f"expected uint8 grey or RGB images (N, H, W, C), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 127.5 - 1.0
    if x.shape[1] != recipe.channels:
        x = x.mean(1, keepdim=True) if recipe.channels == 1 else x.expand(-1, recipe.channels, -1, -1)
    if x.shape[-2:] != (recipe.size, recipe.size):
        x = F.interpolate(x, size=(recipe.size, recipe.size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.contiguous()


@contextlib.contextmanager
def _deterministic_torch(seed: int):
    """Seeded, deterministic, single-threaded torch inside; the global RNG and settings restored."""
    import torch

    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(strict)
            torch.set_num_threads(threads)


def accuracy(model, images: np.ndarray, labels: np.ndarray, recipe: Recipe) -> float:
    """The share of ``images`` the classifier labels right."""
    import torch

    with torch.no_grad():
        predicted = model(network_input(images, recipe)).argmax(1).numpy()
    return float((predicted == labels).mean())


def train_classifier(recipe: Recipe, epochs: int | None = None, limit: int | None = None):
    """Train ``recipe``'s classifier (deterministic); returns (model, held-out accuracy, feature
    scale: the root mean square of the training images' features, which features are divided by).
    ``epochs`` and ``limit`` (training images) shorten it, for tests."""
    import torch
    import torch.nn.functional as F

    x_train, y_train, x_test, y_test = labelled_split(recipe)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    with _deterministic_torch(recipe.seed):
        inputs, targets = network_input(x_train, recipe), torch.from_numpy(np.asarray(y_train, np.int64))
        model = build_classifier(recipe)
        epochs = recipe.epochs if epochs is None else epochs
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        per_epoch = -(-len(inputs) // BATCH_SIZE)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, LEARNING_RATE, total_steps=epochs * per_epoch)
        order = torch.Generator().manual_seed(recipe.seed)
        for _ in range(epochs):
            for batch in torch.randperm(len(inputs), generator=order).split(BATCH_SIZE):
                opt.zero_grad()
                F.cross_entropy(model(inputs[batch]), targets[batch]).backward()
                opt.step()
                schedule.step()
        model.eval()
        with torch.no_grad():
            scale = float(model[0](inputs).square().mean().sqrt())
        return model, accuracy(model, x_test, y_test, recipe), scale


# -- the cache -----------------------------------------------------------------------------------

def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where feature networks are kept: ``<cache_dir>/features`` (eval.cache_dir), else
    ``$UNETLAB_CACHE_DIR/features``, else ``$XDG_CACHE_HOME/unetlab/features`` (~/.cache)."""
    if cache_dir:
        return Path(cache_dir) / "features"
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "features"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unetlab" / "features"


def _meta(recipe: Recipe, held_out: float, scale: float) -> dict:
    return {"dataset": recipe.dataset, "size": recipe.size, "channels": recipe.channels,
            "classes": recipe.classes, "version": VERSION, "features": FEATURES, "held_out_accuracy": held_out,
            "feature_scale": scale}


def _save(path: Path, model, meta: dict) -> None:
    buffer = io.BytesIO()
    arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path, recipe: Recipe):
    """(model, meta) from a cached file; ValueError (or another read error) when it is not one."""
    import torch

    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        state = {k: torch.from_numpy(f[k].copy()) for k in f.files if k != "meta"}
    expected = _meta(recipe, meta.get("held_out_accuracy"), meta.get("feature_scale"))
    if meta != expected or not all(isinstance(meta[k], float) for k in ("held_out_accuracy", "feature_scale")):
        raise ValueError(f"it describes {meta}, not {recipe.dataset} v{VERSION}")
    model = build_classifier(recipe)
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


class FeatureNet:
    """A trained classifier's penultimate layer as a feature extractor for uint8 images."""

    def __init__(self, model, recipe: Recipe, meta: dict, path: Path | None):
        self.model, self.recipe, self.meta, self.path = model, recipe, meta, path

    @property
    def dataset(self) -> str:
        return self.recipe.dataset

    @property
    def accuracy(self) -> float:
        """Held-out accuracy of the classifier (0..1)."""
        return self.meta["held_out_accuracy"]

    @property
    def name(self) -> str:
        return score_name(self.dataset)

    def describe(self) -> str:
        """``a digits classifier (98.9% held-out accuracy)``: the feature space, in words."""
        return f"a trained {self.dataset} classifier's features ({100 * self.accuracy:.1f}% held-out accuracy)"

    def features(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """(N, FEATURES) float64 penultimate-layer features of uint8 (N, H, W, C) images, divided
        by the training images' root mean square feature (so the scale is about 1 per feature)."""
        import torch

        body = self.model[0]
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                out.append(body(network_input(images[start:start + batch_size], self.recipe)).numpy())
        feats = np.concatenate(out).astype(np.float64) if out else np.zeros((0, FEATURES))
        return feats / self.meta["feature_scale"]


def load_or_train(dataset: str, cache_dir: str | os.PathLike | None = None) -> FeatureNet:
    """``dataset``'s feature network: from the cache, else trained (seconds) and cached."""
    if dataset not in RECIPES:
        raise UnetlabError(f"no trained feature network for {dataset!r} (those with one: {', '.join(RECIPES)})")
    return _load_or_train(dataset, str(cache_folder(cache_dir)))


@functools.lru_cache(maxsize=None)
def _load_or_train(dataset: str, folder: str) -> FeatureNet:
    recipe = RECIPES[dataset]
    path = Path(folder) / recipe.file_name
    if path.is_file():
        try:
            model, meta = _load(path, recipe)
            return FeatureNet(model, recipe, meta, path)
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways; it is only a cache
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            warnings.warn(f"{path}: not a readable {dataset} feature network ({reason}); retraining it",
                          stacklevel=3)
    model, held_out, scale = train_classifier(recipe)
    meta = _meta(recipe, held_out, scale)
    try:
        _save(path, model, meta)
    except OSError as exc:
        warnings.warn(f"{path}: cannot cache the {dataset} feature network ({exc.strerror}); "
                      f"it is kept in memory only", stacklevel=3)
        path = None
    return FeatureNet(model, recipe, meta, path)


def forget_loaded() -> None:
    """Drop the networks loaded in this process (the next use reads the cache again)."""
    _load_or_train.cache_clear()
