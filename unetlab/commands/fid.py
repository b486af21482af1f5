"""``unetlab fid PATH``: FID (or a Frechet distance in a dataset's features) of a run folder's samples
or of a folder of images, with its bootstrap CI, KID and precision/recall/density/coverage."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import load_dataset
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS
from ..fs_errors import check_writable
from ..metrics.bootstrap import BOOTSTRAP
from ..metrics.fid import load_folder, protocol
from ..metrics.scoring import FEATURE_CHOICES, score_record
from ..pretrained import cli as pretrained_cli, is_pretrained_source
from ..run import rundir, runlock
from ..run.scoring import score_run
from ..sampling import to_uint8
from ..spec.run import DATA
from ..argtypes import at_least_two, non_negative_int


def replicates(text: str) -> int:
    """An argparse type: bootstrap replicates, 0 (none) or at least 2."""
    value = non_negative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 (no CI) or at least 2, got 1")
    return value


#: the datasets ``--data`` names (anything else is an image folder)
DATA_NAMES = tuple(c for c in next(o for o in DATA.options if o.name == "dataset").choices if c != "folder")


def add_parser(sub):
    p = sub.add_parser("fid", help="score a run (written into its summary.json) or a folder of images")
    p.add_argument("path", help="a run folder, a folder of images (or holding samples.npz), or a diffusers "
                                "UNet2DModel folder or hub id (sampled with DDIM first)")
    p.add_argument("--n", type=at_least_two, help="images to generate or use (default: eval.fid_samples, else 10000; "
                                         "a folder: all of its images)")
    p.add_argument("--reference", choices=("cifar10-train", "dataset"),
                   help="cifar10-train: Inception FID vs CIFAR-10 train statistics; dataset: a Frechet distance "
                        "against the training images in --features (default: the run's eval.reference, else "
                        "cifar10-train)")
    p.add_argument("--features", choices=FEATURE_CHOICES,
                   help="--reference dataset: trained (the dataset's trained classifier: FD-digits, FD-shapes; "
                        "FD-small where there is none) or small (FD-small) (default: the run's eval.features, "
                        "else trained)")
    p.add_argument("--bootstrap", type=replicates, help="bootstrap replicates for the CI (0: none; default: "
                                                               f"the run's eval.bootstrap, else {BOOTSTRAP})")
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
        record = score_run(run_dir, args.n, args.reference, args.mode, args.cache_dir, args.framework,
                           args.features, args.bootstrap)
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
    dataset = (args.data if args.data in DATA_NAMES else "folder") if args.data else None
    bootstrap = BOOTSTRAP if args.bootstrap is None else args.bootstrap
    record = score_record(images, reference, mode, args.cache_dir, train, dataset, args.features or "trained",
                          bootstrap)
    return {**record, "n": len(images), "reference": reference}


def _explain(record: dict) -> None:
    from ..metrics.scoring import describe_record

    for line in describe_record(record):
        print(f"  {line}")


def run(args):
    path = Path(args.path)
    if is_pretrained_source(args.path):  # a diffusers UNet2DModel folder or hub id
        folder, how = pretrained_cli.sample_for_fid(args)
        record = _score_folder(args, folder)
        print(f"{args.path}: {record['name']} {record['value']:.4f} ({record['n']} images, {how}; "
              f"{record['reference']}) -> samples in {folder}")
        _explain(record)
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
    _explain(record)
    return 0
