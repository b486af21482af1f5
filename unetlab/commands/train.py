"""``unetlab train SPEC``: train one run, with the original training script's knobs."""
from __future__ import annotations

from pathlib import Path

from ..data import check_available
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS, check_run_section
from ..fs_errors import check_writable
from ..run import distributed, jsonfiles, rundir
from ..run.loss_log import FINAL_LOSS_STEPS
from ..run.trainer import train_run
from ..spec import load_mapping, resolve_run_spec, set_dotted
from ..spec.run import DIFFUSION, TRAIN, check_sections
from ..argtypes import positive_float, positive_int, seed_type

#: The original script's budget when neither the command line nor the spec gives one. Its other
#: defaults (-T 1000, -BS 256, -lr 1e-4) are the spec's own defaults, so they need no copy here.
DEFAULT_EPOCHS = 150.0

#: Which spec key each knob sets: a flag given wins, an absent flag keeps the spec's value, and a
#: spec without the key gets the spec's default.
KNOB_KEYS = {"T": "diffusion.T", "batch_size": "train.batch_size", "lr": "train.lr"}


def _spec_default(key: str):
    section, name = key.split(".")
    options = {"diffusion": DIFFUSION, "train": TRAIN}[section].options
    return next(o.default for o in options if o.name == name)


def _knob_help(what: str, key: str) -> str:
    default = _spec_default(key)
    shown = f"{default:.0e}".replace("e-0", "e-") if isinstance(default, float) and default < 1e-2 else f"{default:g}"
    return f"{what}; sets {key} (default: the spec's value, else {shown})"


def add_parser(sub):
    p = sub.add_parser("train", help="train a model from a run spec (YAML)",
                       description="Train one run. A flag given replaces the spec's value; a flag left out "
                                   "keeps it; what neither gives takes the spec's default.")
    p.add_argument("spec", help="run spec YAML (model, diffusion, data, train, sample, eval sections)")
    p.add_argument("-T", type=positive_int, help=_knob_help("diffusion steps", KNOB_KEYS["T"]))
    p.add_argument("-BS", "--batch-size", dest="batch_size", type=positive_int,
                   help=_knob_help("batch size", KNOB_KEYS["batch_size"]))
    p.add_argument("-epoch", "--epochs", dest="epochs", type=positive_float,
                   help=f"budget in epochs; replaces the spec's budget (default: the spec's train.steps, "
                        f"train.epochs or train.minutes, else {DEFAULT_EPOCHS:g} epochs)")
    p.add_argument("-lr", type=positive_float, help=_knob_help("peak learning rate", KNOB_KEYS["lr"]))
    p.add_argument("--steps", type=positive_int, help="budget in steps; replaces the spec's budget, as -epoch does")
    p.add_argument("--framework", choices=FRAMEWORKS, default="torch")
    p.add_argument("--seed", type=seed_type, help="seed (default: train.seed)")
    p.add_argument("--run", help="run folder (default runs/train/<spec name>-<framework>-s<seed>)")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="train data-parallel over N processes (torchrun for torch: NCCL on GPUs, gloo on the "
                        "CPU; mpirun for jittor); train.batch_size stays the global batch (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def apply_overrides(raw: dict, args) -> dict:
    """The spec with the command line's knobs laid over it: a knob given replaces the spec's value,
    an absent one (None) leaves it; the spec's own defaults fill what neither gives, except a
    missing budget, which becomes ``DEFAULT_EPOCHS`` epochs."""
    check_sections(raw)
    for attr, key in KNOB_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            set_dotted(raw, key, value)
    train = raw.setdefault("train", {}) or {}
    if args.epochs is not None or args.steps is not None:
        for key in ("steps", "epochs", "minutes"):
            train.pop(key, None)
        train.update({"epochs": args.epochs} if args.epochs is not None else {"steps": args.steps})
    elif all(train.get(k) is None for k in ("steps", "epochs", "minutes")):
        train["epochs"] = DEFAULT_EPOCHS
    raw["train"] = train
    return raw


def preflight(spec: dict, run_dir: Path, framework: str, nproc: int = 1) -> None:
    """Refuse, before the run folder is touched, what would fail once training starts: data that
    is missing or unreadable, a config.json that is not JSON, a folder that cannot be written, a
    batch that does not split over ``nproc`` processes or a missing launcher.
    (A folder holding another run is refused by ``train_run``, which records the refusal.)"""
    check_run_section(framework, "train", spec["train"])
    if nproc > 1:
        distributed.check_batch_divides(spec["train"]["batch_size"], nproc)
        distributed.check_launcher(framework)
    check_run_section(framework, "sample", spec["sample"])
    check_available(spec["data"])
    existing = jsonfiles.read_json(run_dir / rundir.CONFIG)
    if (run_dir / rundir.CONFIG).exists() and existing is None:
        raise UnetlabError(f"{run_dir / rundir.CONFIG}: unreadable or not JSON; use another run folder")
    check_writable(run_dir, "run folder")


def run(args):
    spec = resolve_run_spec(apply_overrides(load_mapping(args.spec, "run spec"), args))
    seed = spec["train"]["seed"] if args.seed is None else args.seed
    run_dir = Path(args.run or f"runs/train/{Path(args.spec).stem}-{args.framework}-s{seed}")
    preflight(spec, run_dir, args.framework, args.nproc)
    was_done = rundir.run_status(run_dir) == rundir.Status.DONE
    summary = train_run(spec, run_dir, args.framework, seed=seed, progress=not args.no_progress,
                        nproc=args.nproc)
    loss = summary.get("final_loss")
    print(f"{run_dir}: {summary['status']}{' already (nothing to train)' if was_done else ''} after "
          f"{summary['step']} steps, final loss {'?' if loss is None else f'{loss:.4f}'} "
          f"(mean of the last {FINAL_LOSS_STEPS} steps), {summary.get('train_img_s') or 0:.1f} img/s; "
          f"samples in {run_dir / 'samples.png'}")
    return 0
