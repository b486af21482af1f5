"""``unetlab fid PATH``: FID (or FD-small) of a run folder's samples or of a folder of images."""
from __future__ import annotations

from pathlib import Path

from ..data import load_dataset
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS
from ..fs_errors import check_writable
from ..metrics.fid import load_folder, protocol, score
from ..pretrained import cli as pretrained_cli, is_pretrained_source
from ..run import rundir, runlock
from ..run.scoring import score_run
from ..sampling import to_uint8
from ..spec.run import DATA
from .argtypes import at_least_two

#: the datasets ``--data`` names (anything else is an image folder)
DATA_NAMES = tuple(c for c in next(o for o in DATA.options if o.name == "dataset").choices if c != "folder")


def add_parser(sub):
    p = sub.add_parser("fid", help="score a run (written into its summary.json) or a folder of images")
    p.add_argument("path", help="a run folder, a folder of images (or holding samples.npz), or a diffusers "
                                "UNet2DModel folder or hub id (sampled with DDIM first)")
    p.add_argument("--n", type=at_least_two, help="images to generate or use (default: eval.fid_samples, else 10000; "
                                         "a folder: all of its images)")
    p.add_argument("--reference", choices=("cifar10-train", "dataset"),
                   help="cifar10-train: Inception FID vs CIFAR-10 train statistics; dataset: FD-small against "
                        "training images (default: the run's eval.reference, else cifar10-train)")
    p.add_argument("--mode", choices=("clean", "legacy_tensorflow", "legacy_pytorch"), help="clean-fid mode")
    p.add_argument("--cache-dir", help="folder holding the Inception weights and reference statistics")
    p.add_argument("--data", help="a folder: the training images for --reference dataset "
                                  "(digits, shapes, cifar10, or an image folder)")
    p.add_argument("--framework", choices=FRAMEWORKS, help="a run: sample in this framework")
    pretrained_cli.add_sampling_arguments(p)
    return p


def _score_run(args, run_dir: Path) -> dict:
    check_writable(run_dir, "run folder")  # the score goes into its summary.json: fail before sampling
    with runlock.hold(run_dir):
        record = score_run(run_dir, args.n, args.reference, args.mode, args.cache_dir, args.framework)
        rundir.update_summary(run_dir, fid=record)
    return record


def _score_folder(args, folder: Path) -> dict:
    images = load_folder(folder, args.n)
    reference, mode = args.reference or "cifar10-train", args.mode or "clean"
    train = None
    if reference == "dataset":
        if not args.data:
            raise UnetlabError("--reference dataset on an image folder needs --data (digits, shapes, cifar10 "
                               "or a folder of training images)")
        named = args.data in DATA_NAMES
        data = DATA.resolve({"dataset": args.data, "flip": False} if named
                            else {"dataset": "folder", "root": args.data, "flip": False}, "--data")
        channels = 1 if args.data == "digits" else 3
        train = to_uint8(load_dataset(data, images.shape[1], channels))
    value, name = score(images, reference, mode, args.cache_dir, train)
    return {"value": value, "name": name, "n": len(images), "mode": mode if name == "FID" else "small-net",
            "reference": reference}


def run(args):
    path = Path(args.path)
    if is_pretrained_source(args.path):  # a diffusers UNet2DModel folder or hub id
        folder, how = pretrained_cli.sample_for_fid(args)
        record = _score_folder(args, folder)
        print(f"{args.path}: {record['name']} {record['value']:.4f} ({record['n']} images, {how}; "
              f"{record['reference']}) -> samples in {folder}")
        return 0
    pretrained_cli.reject_sampling_arguments(args)
    if not path.is_dir():
        raise UnetlabError(f"{path}: no such run folder or image folder")
    if (path / rundir.CONFIG).is_file():
        record = _score_run(args, path)
        print(f"{path}: {record['name']} {record['value']:.4f} ({protocol(record)}; "
              f"{record['reference']}) -> {path / rundir.SUMMARY}")
    else:
        record = _score_folder(args, path)
        print(f"{path}: {record['name']} {record['value']:.4f} ({record['n']} images vs {record['reference']})")
    return 0
