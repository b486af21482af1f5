"""What ``unetlab sample`` and ``unetlab fid`` do with a pretrained folder or hub id.

The commands keep one branch each that hands such a source over to these functions.
"""
from __future__ import annotations

from pathlib import Path
import re

from . import read_pretrained
from ..argtypes import seed_type
from ..errors import UnetlabError
from ..metrics.fid import ensure_fid_files
from ..model import build_model
from ..sampling import generate, save_samples
from ..spec import resolve_run_spec
from ..weights import set_weights

OUTPUT_ROOT = Path("runs") / "pretrained"


def output_folder(source) -> Path:
    """``runs/pretrained/<name>``: outputs never go into the weights folder (or the hub cache)."""
    path = Path(source)
    name = path.resolve().name if path.is_dir() else str(source).replace("/", "--")
    return OUTPUT_ROOT / re.sub(r"[^\w.-]+", "_", name)


def sample_source(args):
    """(run spec, weights arrays, framework, default output folder) for ``unetlab sample``."""
    if args.spec:
        raise UnetlabError(f"{args.source}: --spec is for weights files; a pretrained folder brings its "
                           "config.json and scheduler_config.json")
    pretrained = read_pretrained(args.source)
    return pretrained.run_spec(), pretrained.arrays, "torch", output_folder(args.source)


#: ``unetlab fid`` options that only a pretrained SOURCE uses, and their defaults there
FID_SAMPLING_DEFAULTS = {"steps": 100, "eta": 0.0, "skip": "quadratic", "batch_size": None, "seed": 0, "out": None}


def add_sampling_arguments(parser) -> None:
    """The DDIM options of ``unetlab fid`` for a pretrained SOURCE."""
    group = parser.add_argument_group("a pretrained SOURCE (diffusers UNet2DModel folder or hub id)")
    group.add_argument("--steps", type=int, help="DDIM steps (default 100)")
    group.add_argument("--eta", type=float, help="DDIM eta (default 0)")
    group.add_argument("--skip", choices=("uniform", "quadratic"),
                       help="DDIM step selection (default quadratic, as the DDIM paper's CIFAR-10 table)")
    group.add_argument("--batch-size", type=int, help="images per sampling batch")
    group.add_argument("--seed", type=seed_type, help="seed of the initial noise (default 0)")
    group.add_argument("--out", help="folder for the samples (default runs/pretrained/<name>/fid-...)")


def reject_sampling_arguments(args) -> None:
    """A run or image folder is not sampled by these options: giving one is an error, not a no-op."""
    given = [k for k in FID_SAMPLING_DEFAULTS if getattr(args, k, None) is not None]
    if given:
        raise UnetlabError(f"--{given[0].replace('_', '-')} applies to a pretrained SOURCE only (a run samples "
                           "as its spec's sample section says; an image folder is scored as it is)")


def sample_for_fid(args) -> tuple[Path, str]:
    """Generate ``--n`` (default 10000) DDIM samples of a pretrained source into a folder, after
    checking that the score can be computed; returns the folder and how it was sampled."""
    o = {k: default if getattr(args, k, None) is None else getattr(args, k)
         for k, default in FID_SAMPLING_DEFAULTS.items()}
    pretrained = read_pretrained(args.path)
    spec = pretrained.run_spec()
    spec["sample"] = {"sampler": "ddim", "steps": o["steps"], "eta": o["eta"], "skip": o["skip"]}
    if o["batch_size"] is not None:
        spec["sample"]["batch_size"] = o["batch_size"]
    spec = resolve_run_spec(spec)
    n = args.n or 10_000
    if (args.reference or "cifar10-train") == "dataset":
        if not args.data:
            raise UnetlabError("--reference dataset needs --data (digits, shapes, cifar10 or a folder of "
                               "training images)")
    else:  # fail before sampling, not after
        ensure_fid_files(args.mode or "clean", args.cache_dir)
    framework = args.framework or "torch"
    model = build_model(spec["model"], framework)
    set_weights(model, pretrained.arrays, f"weights of {pretrained.files.weights}")
    how = f"ddim{o['steps']} eta{o['eta']:g} {o['skip']}"
    folder = Path(o["out"] or output_folder(args.path) / f"fid-{how.replace(' ', '-')}-n{n}-{framework}")
    images, _ = generate(model, spec, n, seed=o["seed"])
    save_samples(images, folder)
    return folder, f"{how}, {framework}"
