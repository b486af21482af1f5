"""The sections around the model in a run spec: diffusion, data, train, sample and eval.

Every section is a typed :class:`OptionSet`; ``resolve_run_spec`` validates a whole spec
(naming the key path of any problem) and returns a plain, JSON-able mapping with every
default filled in -- the resolved config recorded in each run folder.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from ..diffusion.schedules import make_betas
from ..errors import UnetlabError
from ..frameworks.torch_modes import COMPILE_MODES
from ..options import Option, OptionSet
from ..seeds import MAX_SEED
from .loading import load_mapping
from .model import resolve_model_spec

DIFFUSION = OptionSet((
    Option("T", int, 1000, "number of diffusion steps"),
    Option("schedule", str, "linear", "beta schedule", choices=("linear", "cosine", "quadratic")),
    Option("beta_start", float, 1e-4, "first beta (linear and quadratic)"),
    Option("beta_end", float, 0.02, "last beta (linear and quadratic)"),
    Option("prediction", str, "eps", "what the network predicts", choices=("eps", "v", "x0")),
    Option("timestep_sampling", str, "uniform", "how training timesteps are drawn",
           choices=("uniform", "antithetic")),
    Option("loss", str, "mse", "training loss: mse (mean over pixels and batch) or l2 (sum over each "
           "image's pixels, mean over the batch, as ermongroup/ddim)", choices=("mse", "l2")),
))

DATA = OptionSet((
    Option("dataset", str, "cifar10", "training images", choices=("digits", "shapes", "cifar10", "folder")),
    Option("root", str, "data", "folder holding cifar-10-batches-py or the image folder"),
    Option("download", bool, True, "cifar10: download with torchvision when it is missing"),
    Option("flip", bool, True, "random horizontal flips"),
    Option("limit", int, None, "use at most this many images", nullable=True),
    Option("num_images", int, 2048, "shapes: how many images to generate"),
))

TRAIN = OptionSet((
    Option("batch_size", int, 256, "images per step"),
    Option("lr", float, 1e-4, "peak learning rate"),
    Option("optimizer", str, "adam", "optimizer", choices=("adam", "adamw")),
    Option("betas", list, [0.9, 0.999], "Adam betas", item=float),
    Option("adam_eps", float, 1e-8, "Adam's epsilon (the denominator's floor)"),
    Option("weight_decay", float, 0.0, "weight decay (L2 for adam, decoupled for adamw)"),
    Option("warmup_steps", int, 0, "linear learning-rate warm-up"),
    Option("grad_clip", float, 1.0, "clip the global gradient norm (null: no clipping)", nullable=True),
    Option("ema_decay", float, 0.9999, "EMA decay of the weights used for sampling"),
    Option("ema_start", int, 0, "step from which the EMA tracks the weights (copied before)"),
    Option("steps", int, None, "budget in optimizer steps", nullable=True),
    Option("epochs", float, None, "budget in passes over the data", nullable=True),
    Option("minutes", float, None, "budget in wall-clock minutes of training", nullable=True),
    Option("precision", str, "fp32", "fp32, tf32 or bf16 (torch); fp32 or fp16 (jittor)",
           choices=("fp32", "tf32", "bf16", "fp16")),
    Option("compile", bool, False, "torch.compile the model (torch only)"),
    Option("compile_mode", str, "default", "torch.compile mode when compile is on: default, "
           "reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs",
           choices=COMPILE_MODES),
    Option("channels_last", bool, None, "run the model in channels-last layout (torch only); unset: "
           "on the CPU and when compiled on a GPU, where it measured faster", nullable=True),
    Option("noise", str, "host", "where training noise is drawn: host (numpy: identical across "
           "frameworks) or device (faster on a GPU; the images then stay on the device too)",
           choices=("host", "device")),
    Option("log_every", int, 10, "write a metrics record every N steps"),
    Option("checkpoint_every", int, 200, "write the resumable checkpoint every N steps"),
    Option("seed", int, 0, "seed of weights, data order and noise", low=0, high=MAX_SEED),
    Option("crn", bool, True, "common random numbers: variants with the same seed share data order, "
           "timesteps and noise (false: offset by a hash of the variant, to measure what pairing buys)"),
))

SAMPLE = OptionSet((
    Option("sampler", str, "ddim", "sampler", choices=("ddim", "ddpm")),
    Option("steps", int, 50, "DDIM steps S (ddpm uses all T)"),
    Option("eta", float, 0.0, "DDIM eta: 0 deterministic, 1 DDPM-like"),
    Option("skip", str, "uniform", "DDIM step selection", choices=("uniform", "quadratic")),
    Option("num_images", int, 64, "images in the sample grid"),
    Option("batch_size", int, 256, "images per sampling batch"),
    Option("ema", bool, True, "sample from the EMA weights"),
    Option("precision", str, "fp32", "network precision while sampling: fp32, tf32 or bf16 (torch); "
           "fp32 or fp16 (jittor)", choices=("fp32", "tf32", "bf16", "fp16")),
    Option("compile", bool, False, "torch.compile the sampling network (torch only; pays off for "
           "many samples, e.g. FID)"),
    Option("compile_mode", str, "default", "torch.compile mode when compile is on (reduce-overhead: "
           "CUDA graphs)", choices=COMPILE_MODES),
    Option("channels_last", bool, None, "sample in channels-last layout (torch only); unset: on the "
           "CPU and when compiled on a GPU", nullable=True),
))

EVAL = OptionSet((
    Option("fid_samples", int, 0, "images generated for FID (0: no FID)"),
    Option("every", int, None, "also score the EMA weights every N training steps (FID during training, "
           "with fid_samples images; null: only at the end)", nullable=True),
    Option("fid_mode", str, "clean", "clean-fid mode", choices=("clean", "legacy_tensorflow", "legacy_pytorch")),
    Option("reference", str, "cifar10-train", "reference statistics: cifar10-train (Inception FID) or "
           "dataset (a Frechet distance against the training images in eval.features; not FID)",
           choices=("cifar10-train", "dataset")),
    Option("features", str, "trained", "reference dataset: the feature space -- trained (a classifier "
           "trained on digits or shapes: FD-digits, FD-shapes; FD-small for datasets without one) or small "
           "(FD-small: a fixed random conv net)", choices=("trained", "small")),
    Option("bootstrap", int, 200, "bootstrap replicates over the generated samples for each score's "
           "se and 95% CI (0: none)"),
    Option("cache_dir", str, None, "folder with Inception weights and reference statistics, and the "
           "trained feature networks under features/ (default: clean-fid's own cache; "
           "$UNETLAB_CACHE_DIR/features or ~/.cache/unetlab/features)", nullable=True),
))

RESOURCES = OptionSet((
    Option("gpus", int, 1, "GPUs the run takes in a sweep's GPU pool (slots of `unetlab ablate --gpus`), "
           "trained data-parallel with one rank per GPU (N CPU ranks on a CPU pool); "
           "where it runs, not what it computes"),
))

#: Channels of the images each built-in dataset gives (a folder gives what the model asks).
DATASET_CHANNELS = {"digits": 1, "cifar10": 3, "shapes": 3}

SECTIONS = {"diffusion": DIFFUSION, "data": DATA, "train": TRAIN, "sample": SAMPLE, "eval": EVAL,
            "resources": RESOURCES}
TOP_LEVEL = ("model",) + tuple(SECTIONS)


def resolve_run_spec(spec: Any, where: str = "") -> dict:
    """Validate a run spec (mapping or YAML path) and return it with every default filled in."""
    raw = check_sections(load_mapping(spec, "run spec"), where)
    prefix = f"{where}." if where else ""
    out = {"model": resolve_model_spec(raw.get("model", {"preset": "ddpm"}), f"{prefix}model").to_config()}
    for name, options in SECTIONS.items():
        out[name] = options.resolve(raw.get(name) or {}, f"{prefix}{name}")
    _check_consistency(out, prefix)
    return out


def check_sections(raw: dict, where: str = "") -> dict:
    """``raw`` when its keys are known sections and each section (but ``model``) is a mapping or
    empty; otherwise a one-line error naming the key.  Run this before reading into a raw spec."""
    prefix = f"{where}." if where else ""
    unknown = sorted(set(raw) - set(TOP_LEVEL), key=str)
    if unknown:
        raise UnetlabError(f"{prefix}{unknown[0]}: unknown section (sections: {', '.join(TOP_LEVEL)})")
    for name in SECTIONS:
        section = raw.get(name)
        if section is not None and not isinstance(section, Mapping):
            raise UnetlabError(f"{prefix}{name}: expected a mapping of option: value, got "
                               f"{type(section).__name__} {section!r}")
    return raw


def _positive(value) -> bool:
    return value > 0  # False for NaN too


def _check_ranges(spec: dict, prefix: str) -> None:
    """Every number in the run sections within its range (NaN and infinity are out of every range)."""
    train, diffusion, sample, data, ev = (spec[k] for k in ("train", "diffusion", "sample", "data", "eval"))

    def fail(key, text, value):
        raise UnetlabError(f"{prefix}{key}: {text}, got {value}")

    if not _positive(spec["resources"]["gpus"]):
        fail("resources.gpus", "must be a positive integer", spec["resources"]["gpus"])
    for key in ("batch_size", "lr", "log_every", "checkpoint_every"):
        if not _positive(train[key]):
            fail(f"train.{key}", "must be positive", train[key])
    for key in ("steps", "epochs", "minutes"):
        if train[key] is not None and not (_positive(train[key]) and math.isfinite(train[key])):
            fail(f"train.{key}", "must be positive (a budget of at least one step)", train[key])
    for key in ("warmup_steps", "ema_start"):
        if train[key] < 0:
            fail(f"train.{key}", "must be >= 0", train[key])
    if not train["weight_decay"] >= 0:
        fail("train.weight_decay", "must be >= 0", train["weight_decay"])
    if train["grad_clip"] is not None and not (_positive(train["grad_clip"]) and math.isfinite(train["grad_clip"])):
        fail("train.grad_clip", "must be positive (null: no clipping)", train["grad_clip"])
    betas = train["betas"]
    if len(betas) != 2:
        fail("train.betas", "Adam takes two betas [beta1, beta2], e.g. [0.9, 0.999]", betas)
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            fail(f"train.betas[{i}]", "must be in [0, 1)", beta)
    if not 0.0 <= train["ema_decay"] < 1.0:
        fail("train.ema_decay", "must be in [0, 1)", train["ema_decay"])
    for key in ("batch_size", "num_images"):
        if not _positive(sample[key]):
            fail(f"sample.{key}", "must be positive", sample[key])
    if not (sample["eta"] >= 0 and math.isfinite(sample["eta"])):
        fail("sample.eta", "must be >= 0 (0: deterministic DDIM, 1: DDPM-like)", sample["eta"])
    if ev["fid_samples"] < 0 or ev["fid_samples"] == 1:
        fail("eval.fid_samples", "must be 0 (no FID) or at least 2", ev["fid_samples"])
    if ev["bootstrap"] < 0 or ev["bootstrap"] == 1:
        fail("eval.bootstrap", "must be 0 (no CI) or at least 2 replicates", ev["bootstrap"])
    if data["limit"] is not None and not _positive(data["limit"]):
        fail("data.limit", "must be positive (null: every image)", data["limit"])
    if not _positive(data["num_images"]):
        fail("data.num_images", "must be positive", data["num_images"])
    if diffusion["T"] < 2:
        fail("diffusion.T", "must be at least 2", diffusion["T"])
    if not 0 < sample["steps"] <= diffusion["T"]:
        fail("sample.steps", f"must be in 1..T={diffusion['T']}", sample["steps"])
    if diffusion["schedule"] != "cosine":
        for key in ("beta_start", "beta_end"):
            if not 0.0 < diffusion[key] < 1.0:
                fail(f"diffusion.{key}", "a beta must be in (0, 1)", diffusion[key])
    computed = make_betas(diffusion["schedule"], diffusion["T"], diffusion["beta_start"], diffusion["beta_end"])
    single = computed.astype(np.float32)  # what the networks' arithmetic holds (a beta of 1e-300 is 0 there)
    bad = np.flatnonzero(~((computed > 0) & (computed < 1) & (single > 0) & (single < 1)))
    if bad.size:
        where = next((f"diffusion.{k}" for k in ("beta_start", "beta_end")
                      if diffusion["schedule"] != "cosine" and not np.float32(diffusion[k]) > 0), "diffusion.schedule")
        raise UnetlabError(f"{prefix}{where}: the {diffusion['schedule']} schedule gives beta "
                           f"{computed[bad[0]]:g} at t={bad[0]}, which is {single[bad[0]]:g} in float32, outside (0, 1)")


def _check_model_against_run(spec: dict, prefix: str) -> None:
    """The model fits the data it is trained on and the diffusion it is trained for."""
    model, data, diffusion = spec["model"], spec["data"], spec["diffusion"]
    channels = DATASET_CHANNELS.get(data["dataset"])
    if channels is not None and model["in_channels"] != channels:
        raise UnetlabError(f"{prefix}model.in_channels: the {data['dataset']} dataset has {channels} "
                           f"channel{'s' if channels > 1 else ''}, the model takes {model['in_channels']}")
    if data["dataset"] == "folder" and model["in_channels"] not in (1, 3):
        raise UnetlabError(f"{prefix}model.in_channels: a folder dataset is read as grey (1) or RGB (3) "
                           f"images, the model takes {model['in_channels']}")
    if model["out_channels"] != model["in_channels"]:
        raise UnetlabError(f"{prefix}model.out_channels: must equal model.in_channels ({model['in_channels']}): "
                           f"the network predicts {diffusion['prediction']} with the images' channels, "
                           f"got {model['out_channels']}")
    embedding = model["blocks"].get("time_embedding") or {}
    table = embedding.get("num_embeddings")
    if embedding.get("name") == "learned" and table is not None and table < diffusion["T"]:
        raise UnetlabError(f"{prefix}model.blocks.time_embedding.num_embeddings: the learned table has {table} "
                           f"rows but diffusion.T {diffusion['T']} needs one per timestep 0..{diffusion['T'] - 1} "
                           f"(set num_embeddings: {diffusion['T']})")


def _check_consistency(spec: dict, prefix: str) -> None:
    train = spec["train"]
    budgets = [k for k in ("steps", "epochs", "minutes") if train[k] is not None]
    if len(budgets) > 1:
        raise UnetlabError(f"{prefix}train: give one budget of steps, epochs or minutes, not {' and '.join(budgets)}")
    _check_ranges(spec, prefix)
    gpus = spec["resources"]["gpus"]
    if train["batch_size"] % gpus:  # a sweep trains the run over that many data-parallel ranks
        raise UnetlabError(f"{prefix}resources.gpus: {gpus} data-parallel ranks do not split "
                           f"train.batch_size {train['batch_size']} into equal slices")
    if not _positive(train["adam_eps"]):
        raise UnetlabError(f"{prefix}train.adam_eps: must be positive, got {train['adam_eps']}")
    for section in ("train", "sample"):
        part = spec[section]
        if part["compile_mode"] != "default" and not part["compile"]:
            raise UnetlabError(f"{prefix}{section}.compile_mode: {part['compile_mode']!r} needs "
                               f"{section}.compile: true")
    every = spec["eval"]["every"]
    if every is not None and (every <= 0 or spec["eval"]["fid_samples"] < 2):
        raise UnetlabError(f"{prefix}eval.every: needs a positive N and eval.fid_samples of at least 2 "
                           f"(got every={every}, fid_samples={spec['eval']['fid_samples']})")
    _check_model_against_run(spec, prefix)


def budget_steps(train: dict, dataset_size: int) -> int | None:
    """Optimizer steps for a steps or epochs budget (None for a wall-clock budget)."""
    if train["steps"] is not None:
        return train["steps"]
    if train["epochs"] is not None:
        per_epoch = max(1, dataset_size // train["batch_size"])
        return max(1, int(round(train["epochs"] * per_epoch)))
    if train["minutes"] is not None:
        return None
    raise UnetlabError("train: no budget: give train.steps, train.epochs or train.minutes")


#: Options that change how fast a run goes, not what it computes: a run may resume under
#: other values of them (in ``train`` and ``sample``).
EXECUTION_OPTIONS = ("compile", "compile_mode", "channels_last")


def _identity(spec: dict) -> dict:
    """``spec`` without its execution options, as plain JSON values."""
    spec = json.loads(json.dumps(spec))
    spec.pop("resources", None)  # where a run runs, not what it computes
    for section in ("train", "sample"):
        for key in EXECUTION_OPTIONS:
            (spec.get(section) or {}).pop(key, None)
    return spec


def configs_match(stored: dict, current: dict) -> bool:
    """Whether a run folder's ``config.json`` (``stored``) describes the run ``current`` describes.

    The stored spec is read with today's options, so an option added to unetlab since the run
    was written takes its default instead of making every existing run look changed; the
    execution options (compiled or not, layout) are not compared.
    """
    if not isinstance(stored, dict) or stored.get("run") != json.loads(json.dumps(current.get("run"))):
        return False
    try:
        stored_spec = resolve_run_spec(stored.get("spec") or {})
    except UnetlabError:
        return False
    return _identity(stored_spec) == _identity(current["spec"])
