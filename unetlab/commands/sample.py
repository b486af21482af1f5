"""``unetlab sample RUN``: a sample grid, a PNG folder and an npz from a run or checkpoint."""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import UnetlabError
from ..readers import read_run_config
from ..frameworks import FRAMEWORKS
from ..frameworks.torch_modes import COMPILE_MODES
from ..fs_errors import check_writable
from ..model import build_model
from ..pretrained import cli as pretrained_cli, is_pretrained_source
from ..run import checkpoints, rundir, runlock
from ..run.checkpoints import run_weights
from ..sampling import generate, grid, save_png, save_samples, to_uint8
from ..spec import load_mapping, resolve_run_spec
from ..spec.run import check_sections
from ..weights import check_finite, set_weights
from ..argtypes import non_negative_float, positive_int, seed_type


def add_parser(sub):
    p = sub.add_parser("sample", help="sample images from a run folder or a checkpoint")
    p.add_argument("source", help="a run folder, a weights .npz together with --spec, or a diffusers "
                                  "UNet2DModel folder or hub id (e.g. google/ddpm-cifar10-32)")
    p.add_argument("--spec", help="run spec YAML, when SOURCE is a weights file")
    p.add_argument("-n", "--num", type=positive_int, default=64, help="number of images (default 64)")
    p.add_argument("--sampler", choices=("ddim", "ddpm"))
    p.add_argument("--steps", type=positive_int, help="DDIM steps")
    p.add_argument("--eta", type=non_negative_float, help="DDIM eta (>= 0)")
    p.add_argument("--skip", choices=("uniform", "quadratic"))
    p.add_argument("--batch-size", type=positive_int, help="images per sampling batch")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), help="network precision")
    p.add_argument("--compile", choices=("off",) + COMPILE_MODES,
                   help="torch.compile the network with this mode (reduce-overhead: CUDA graphs)")
    p.add_argument("--channels-last", action="store_true", help="channels-last layout (torch)")
    p.add_argument("--framework", choices=FRAMEWORKS, help="default: the run's")
    p.add_argument("--no-ema", action="store_true", help="use the last training weights, not the EMA")
    p.add_argument("--seed", type=seed_type, default=0)
    p.add_argument("--out", help="output folder (default SOURCE_RUN/samples-<sampler>-<steps>)")
    return p


def load_source(args):
    """(resolved spec, weights arrays, framework, default output folder)."""
    if is_pretrained_source(args.source):  # a diffusers UNet2DModel folder or hub id
        return pretrained_cli.sample_source(args)
    source = Path(args.source)
    if source.is_dir():
        config = read_run_config(source)
        _, arrays = run_weights(source, ema=not args.no_ema)
        return config["spec"], arrays, config["run"]["framework"], source
    if not source.is_file():
        raise UnetlabError(f"{source}: no such run folder or weights file")
    if not args.spec:
        raise UnetlabError("a weights file needs --spec (the run spec it was trained with)")
    arrays = checkpoints.load_arrays(source)
    if any(k.startswith("ema/") for k in arrays):
        arrays = checkpoints.split_prefix(arrays, "model" if args.no_ema else "ema")
    check_finite(arrays, source)
    return load_mapping(args.spec, "run spec"), arrays, "torch", source.parent


def run(args):
    spec, arrays, framework, out_base = load_source(args)
    framework = args.framework or framework
    spec = dict(check_sections(spec))
    spec["sample"] = dict(spec.get("sample") or {})
    for key in ("sampler", "steps", "eta", "skip", "batch_size", "precision"):
        if getattr(args, key) is not None:
            spec["sample"][key] = getattr(args, key)
    if args.compile is not None:
        spec["sample"]["compile"] = args.compile != "off"
        spec["sample"]["compile_mode"] = args.compile if args.compile != "off" else "default"
    if args.channels_last:
        spec["sample"]["channels_last"] = True
    spec = resolve_run_spec(spec)
    model = build_model(spec["model"], framework)
    set_weights(model, arrays, f"weights from {args.source}")
    s = spec["sample"]
    out = Path(args.out or out_base / f"samples-{s['sampler']}-{s['steps'] if s['sampler'] == 'ddim' else 'T'}")
    check_writable(out)  # before sampling, not after
    source = Path(args.source)
    run_folder = (not is_pretrained_source(args.source) and source.is_dir()
                  and (source / rundir.CONFIG).is_file())
    # nothing else writes a run folder while its samples are written into it
    with runlock.hold(source) if run_folder else contextlib.nullcontext():
        images, timing = generate(model, spec, args.num, seed=args.seed)
        save_samples(images, out)
        save_png(grid(to_uint8(images)), out / "grid.png")
    print(f"{args.num} samples ({s['sampler']}, {framework}) in {timing['seconds']:.1f} s -> "
          f"{out}/grid.png, {out}/samples.npz")
    return 0
