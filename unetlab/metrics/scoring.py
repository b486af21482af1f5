"""Score records: which feature space a score uses, and the score with its bootstrap CI and extra metrics.

Against the training images (``eval.reference: dataset``) the features are, by default
(``eval.features: trained``), those of the dataset's trained classifier (``FD-digits``,
``FD-shapes``; see :mod:`unetlab.metrics.feature_net`); datasets without one (image folders,
CIFAR-10) and ``eval.features: small`` use FD-small's fixed random network.  Against CIFAR-10
(``cifar10-train``) the features are Inception's (FID); KID and PRDC there need the reference
*features* file beside clean-fid's statistics, and without it the record holds FID alone and says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import UnetlabError
from .bootstrap import BOOTSTRAP, score_features
from .fid import features as batched_features, inception_features, reference_features, small_extractor

#: The values of ``eval.features``.
FEATURE_CHOICES = ("trained", "small")


@dataclass
class FeatureSpace:
    """How images become feature vectors for one score."""
    name: str                                    # the score's name: FD-digits, FD-small
    description: str                             # the features, in words (stored in the record)
    extract: Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W, C) -> (N, D)
    mode: str                                    # the record's ``mode``: digits-net, small-net
    info: dict = field(default_factory=dict)     # more record fields (the network's accuracy)


def check_features(features: str, where: str = "eval.features") -> str:
    """``features`` when it is one of :data:`FEATURE_CHOICES`, else a one-line error."""
    if features not in FEATURE_CHOICES:
        raise UnetlabError(f"{where}: unknown feature space {features!r} (choose from {', '.join(FEATURE_CHOICES)})")
    return features


def dataset_space(dataset: str | None, features: str = "trained", cache_dir: str | None = None) -> FeatureSpace:
    """The feature space of a score against ``dataset``'s training images."""
    from .feature_net import has_feature_net, load_or_train

    if check_features(features) == "trained" and has_feature_net(dataset):
        net = load_or_train(dataset, cache_dir)
        info = {"feature_net": {"dataset": net.dataset, "held_out_accuracy": net.accuracy,
                                "file": str(net.path) if net.path else None}}
        return FeatureSpace(net.name, net.describe(), net.features, f"{dataset}-net", info)
    description = "a fixed random conv net's features (untrained)"
    if features == "trained":
        description += f"; {dataset or 'these images'} has no trained feature network"
    extract = small_extractor()
    return FeatureSpace("FD-small", description, lambda images: batched_features(images, extract), "small-net")


def score_record(images: np.ndarray, reference: str, mode: str = "clean", cache_dir: str | None = None,
                 train_images: np.ndarray | None = None, dataset: str | None = None, features: str = "trained",
                 bootstrap: int = BOOTSTRAP, seed: int = 0, extra: bool = True) -> dict:
    """The score of uint8 (N, H, W, C) ``images``: ``value``, ``name``, ``se``, ``ci_low``,
    ``ci_high``, ``bootstrap``, ``metrics`` (KID, PRDC; with ``extra``), ``mode`` and ``features``."""
    if reference == "dataset":
        if train_images is None:
            raise UnetlabError("reference dataset: no training images to compare with")
        space = dataset_space(dataset, features, cache_dir)
        real, fake = space.extract(train_images), space.extract(images)
        record = score_features(real, fake, bootstrap, seed, extra=extra)
        return {"name": space.name, **record, "mode": space.mode, "features": space.description, **space.info}
    return inception_record(images, mode, cache_dir, bootstrap, seed, extra)


def inception_record(images: np.ndarray, mode: str, cache_dir: str | None, bootstrap: int = BOOTSTRAP,
                     seed: int = 0, extra: bool = True) -> dict:
    """FID against CIFAR-10 train, with KID and PRDC when the reference features file is there."""

    fake, (mu, sigma) = inception_features(images, mode, cache_dir)
    real, where = reference_features(mode, cache_dir) if extra else (None, None)
    record = score_features(real, fake, bootstrap, seed, real_stats=(mu, sigma), extra=extra)
    record.update({"name": "FID", "mode": mode, "features": f"Inception-v3 pool features (clean-fid, {mode})"})
    if extra and real is None:
        record["note"] = (f"FID only: KID and PRDC need CIFAR-10 reference features ({where}), "
                          f"and only the statistics are there")
    return record


def _with_ci(value: float, entry: dict, digits: int) -> str:
    if entry.get("ci_low") is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def describe_record(record: dict) -> list[str]:
    """Lines explaining a score record: its CI, its features, its extra metrics (with CIs)."""
    lines = []
    if record.get("se") is not None:
        lines.append(f"95% CI [{record['ci_low']:.4f}, {record['ci_high']:.4f}], se {record['se']:.4f} "
                     f"({record['bootstrap']} bootstrap replicates over the generated samples)")
    if record.get("features"):
        lines.append(f"features: {record['features']}")
    metrics = record.get("metrics") or {}
    if metrics:
        parts = [f"{'KID' if name == 'kid' else name} {_with_ci(m['value'], m, 4 if name == 'kid' else 3)}"
                 for name, m in metrics.items()]
        lines.append("; ".join(parts))
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    return lines


def score(images: np.ndarray, reference: str, mode: str = "clean", cache_dir: str | None = None,
          train_images: np.ndarray | None = None, dataset: str | None = None,
          features: str = "trained") -> tuple[float, str]:
    """(value, metric name) of uint8 images: FID vs CIFAR-10, or a Frechet distance vs
    ``train_images`` in ``dataset``'s trained features (FD-small where it has none, or with
    ``features="small"``).  The full record (CI, KID, PRDC): :func:`score_record`."""
    record = score_record(images, reference, mode, cache_dir, train_images, dataset, features, bootstrap=0,
                          extra=False)
    return record["value"], record["name"]
