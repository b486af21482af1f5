"""``unetlab train SPEC``: train one run, with the original training script's knobs."""
from __future__ import annotations

from pathlib import Path

from ..frameworks import FRAMEWORKS
from ..spec import load_mapping, resolve_run_spec, set_dotted

#: The original script's defaults: -T 1000, -BS 256, -epoch 150, -lr 1e-4.
DEFAULT_EPOCHS = 150.0


def add_parser(sub):
    p = sub.add_parser("train", help="train a model from a run spec (YAML)")
    p.add_argument("spec", help="run spec YAML (model, diffusion, data, train, sample, eval sections)")
    p.add_argument("-T", type=int, help="diffusion steps (default: the spec's, else 1000)")
    p.add_argument("-BS", "--batch-size", dest="batch_size", type=int, help="batch size (default 256)")
    p.add_argument("-epoch", "--epochs", dest="epochs", type=float,
                   help=f"epochs (default: the spec's budget, else {DEFAULT_EPOCHS:g})")
    p.add_argument("-lr", type=float, help="learning rate (default 1e-4)")
    p.add_argument("--steps", type=int, help="budget in steps instead of epochs")
    p.add_argument("--framework", choices=FRAMEWORKS, default="torch")
    p.add_argument("--seed", type=int, help="seed (default: train.seed)")
    p.add_argument("--run", help="run folder (default runs/train/<spec name>-<framework>-s<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def apply_overrides(raw: dict, args) -> dict:
    """The spec with the command line's knobs laid over it."""
    for key, value in (("diffusion.T", args.T), ("train.batch_size", args.batch_size), ("train.lr", args.lr)):
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


def run(args):
    from ..train import train_run

    spec = resolve_run_spec(apply_overrides(load_mapping(args.spec, "run spec"), args))
    seed = spec["train"]["seed"] if args.seed is None else args.seed
    run_dir = Path(args.run or f"runs/train/{Path(args.spec).stem}-{args.framework}-s{seed}")
    summary = train_run(spec, run_dir, args.framework, seed=seed, progress=not args.no_progress)
    print(f"{run_dir}: {summary['status']} after {summary['step']} steps, "
          f"final loss {summary.get('final_loss', float('nan')):.4f}, "
          f"{summary.get('train_img_s') or 0:.1f} img/s; samples in {run_dir / 'samples.png'}")
    return 0
