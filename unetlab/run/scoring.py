"""Scoring a run: samples from its weights, with its sampler, against its reference (FID, or a
Frechet distance in a dataset's features, with its bootstrap CI and extra metrics); ``unetlab fid
RUN`` and the worker after training both use it."""
from __future__ import annotations

from pathlib import Path

from ..data import load_dataset
from ..errors import UnetlabError
from ..metrics.fid import ensure_fid_files
from ..metrics.scoring import check_features, score_record
from ..readers import read_run_config
from ..sampling import generate, to_uint8
from ..spec import resolve_run_spec
from .crn import stream_seed
from .loading import load_run


def score_run(run_dir, n: int | None = None, reference: str | None = None, mode: str | None = None,
              cache_dir: str | None = None, framework: str | None = None, features: str | None = None,
              bootstrap: int | None = None) -> dict:
    """Generate ``n`` samples from a run's weights with its sampler and score them.

    Returns the record stored under ``fid`` in the run's summary (not written here): the score
    (``value``, ``name``), its bootstrap ``se``/``ci_low``/``ci_high`` over ``bootstrap``
    replicates, the extra ``metrics`` (KID, precision, recall, density, coverage) and the protocol.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    spec, run = resolve_run_spec(config["spec"]), config["run"]
    ev, sample = spec["eval"], spec["sample"]
    if n is not None and n < 2:
        raise UnetlabError(f"a Frechet distance needs at least 2 images, not {n}")
    n = n or ev["fid_samples"] or 10_000
    reference, mode = reference or ev["reference"], mode or ev["fid_mode"]
    cache_dir = cache_dir or ev["cache_dir"]
    features = check_features(features or ev["features"], "--features" if features else "eval.features")
    bootstrap = ev["bootstrap"] if bootstrap is None else bootstrap
    framework = framework or run["framework"]
    if reference != "dataset":
        ensure_fid_files(mode, cache_dir)  # fail before sampling, not after
    model = load_run(run_dir, framework, sample["ema"]).model
    seed = stream_seed(run.get("seed", 0), spec["train"]["crn"], run.get("variant"), spec)
    images, _ = generate(model, spec, n, seed=seed)
    train_images = None
    if reference == "dataset":
        m = spec["model"]
        train_images = to_uint8(load_dataset(spec["data"], m["image_size"], m["in_channels"], seed))
    record = score_record(to_uint8(images), reference, mode, cache_dir, train_images, spec["data"]["dataset"],
                          features, bootstrap, seed=seed)
    return {**record, "n": n, "sampler": sample["sampler"],
            "steps": sample["steps"] if sample["sampler"] == "ddim" else spec["diffusion"]["T"],
            "eta": sample["eta"], "ema": sample["ema"], "reference": reference, "framework": framework}
