"""Bad input, through the command line: each is refused with exit status != 0 and exactly one
clear line on stderr (no traceback), and a finished run's files stay byte-identical.

One tiny digits run is trained once for the module; every case points at it (or at a copy it
may damage) and the run folder's files are hashed before and after.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_digits_spec
from unetlab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


# -- helpers -------------------------------------------------------------------------------

#: The run's lock and its record of refused commands: a refusal may add to these, nothing else.
IGNORED = {".lock", "events.jsonl"}


def tree_hashes(folder: Path) -> dict:
    """{relative path: sha256} of every file under ``folder`` but :data:`IGNORED`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name not in IGNORED}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("jittor:")]


def refused(capsys, argv, message) -> str:
    """Run ``unetlab ARGV`` in this process; it must fail with one line holding ``message``."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusals
        rc = exc.code
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc not in (0, None), err
    assert "Traceback" not in err and len(lines) == 1, err
    assert message in lines[0], lines[0]
    return lines[0]


def write_spec(folder: Path, spec: dict | str | bytes, name="bad.yaml") -> Path:
    path = Path(folder) / name
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    else:
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return path


def changed(spec: dict, dotted: str, value) -> dict:
    """``spec`` with ``a.b.c`` set to ``value`` (``DELETE`` removes the key)."""
    out = yaml.safe_load(yaml.safe_dump(spec))
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


DELETE = object()

#: ``setpriv`` drops root's power to write anywhere, so read-only folders are read-only to tests
#: run as root too.
DROP_ROOT_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search", "--"]


def cli_without_override(argv, cwd=None):
    """``unetlab ARGV`` in a subprocess that cannot bypass file permissions."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        prefix = DROP_ROOT_OVERRIDE
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(prefix + [sys.executable, "-m", "unetlab.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def assert_one_line(done, message):
    lines = error_lines(done.stderr)
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert message in lines[0], lines[0]


def read_only(*folders):
    for folder in folders:
        for p in [folder, *Path(folder).rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)


def writable(*folders):
    for folder in folders:
        for p in [folder, *Path(folder).rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# -- the finished run every case is checked against ----------------------------------------

SPEC = tiny_digits_spec(steps=4, log_every=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A done run: runs/demo/tiny-torch-s0 under a module temp folder, and its good spec."""
    base = tmp_path_factory.mktemp("bad_input")
    spec = write_spec(base, SPEC, "tiny.yaml")
    run = base / "runs" / "demo" / "tiny-torch-s0"
    assert main(["train", str(spec), "--run", str(run), "--no-progress"]) == 0
    assert (run / "checkpoints" / "ema.npz").is_file() and (run / "checkpoints" / "last.npz").is_file()
    return run, spec


@pytest.fixture
def run(finished, capsys):
    """The finished run; the test fails if it changed a byte of it."""
    run_dir, _ = finished
    capsys.readouterr()
    before = tree_hashes(run_dir)
    yield run_dir
    assert tree_hashes(run_dir) == before, "a refused command changed the finished run"


@pytest.fixture
def good_spec(finished):
    return finished[1]


@pytest.fixture
def damaged(finished, tmp_path):
    """A copy of the finished run, free to damage."""
    copy = tmp_path / "runs" / "copy-torch-s0"
    shutil.copytree(finished[0], copy)
    return copy


# -- specs: refused before training, pointed at the finished run's folder ------------------

SPEC_CASES = {
    # tracebacks before
    "steps 0": (changed(SPEC, "train.steps", 0), "train.steps: must be positive"),
    "steps negative": (changed(SPEC, "train.steps", -3), "train.steps: must be positive"),
    "sample batch_size 0": (changed(SPEC, "sample.batch_size", 0), "sample.batch_size: must be positive"),
    "sample num_images 0": (changed(SPEC, "sample.num_images", 0), "sample.num_images: must be positive"),
    "learned embedding T 2000": (changed(changed(SPEC, "model.blocks", {"time_embedding": "learned"}),
                                         "diffusion.T", 2000),
                                 "model.blocks.time_embedding.num_embeddings: the learned table has 1000 rows"),
    "betas one": (changed(SPEC, "train.betas", [0.9]), "train.betas: Adam takes two betas"),
    "betas out of range": (changed(SPEC, "train.betas", [0.9, 1.0]), "train.betas[1]: must be in [0, 1)"),
    "out_channels 2 on 1 channel": (changed(SPEC, "model.out_channels", 2),
                                    "model.out_channels: must equal model.in_channels (1)"),
    # silently accepted before
    "grad_clip -1": (changed(SPEC, "train.grad_clip", -1), "train.grad_clip: must be positive"),
    "grad_clip 0": (changed(SPEC, "train.grad_clip", 0), "train.grad_clip: must be positive"),
    "warmup_steps -10": (changed(SPEC, "train.warmup_steps", -10), "train.warmup_steps: must be >= 0"),
    "epochs -1": (changed(changed(SPEC, "train.steps", DELETE), "train.epochs", -1),
                  "train.epochs: must be positive"),
    "epochs 0": (changed(changed(SPEC, "train.steps", DELETE), "train.epochs", 0), "train.epochs: must be positive"),
    "minutes 0": (changed(changed(SPEC, "train.steps", DELETE), "train.minutes", 0),
                  "train.minutes: must be positive"),
    "eta -1": (changed(SPEC, "sample.eta", -1), "sample.eta: must be >= 0"),
    "seed -1": (changed(SPEC, "train.seed", -1), "train.seed: must be in [0, 4294967295], got -1"),
    "seed 2**32": (changed(SPEC, "train.seed", 2**32), "train.seed: must be in [0, 4294967295], got 4294967296"),
    "train a list": (changed(SPEC, "train", [1, 2]), "train: expected a mapping of option: value, got list [1, 2]"),
    "sample a number": (changed(SPEC, "sample", 3), "sample: expected a mapping of option: value, got int 3"),
    "max_period 0": (changed(SPEC, "model.blocks", {"time_embedding": {"name": "ddpm", "max_period": 0}}),
                     "model.blocks.time_embedding.max_period: must be > 1, got 0.0"),
    "freq_shift 2": (changed(SPEC, "model.blocks", {"time_embedding": {"name": "ddpm", "freq_shift": 2.0}}),
                     "model.blocks.time_embedding.freq_shift: must be in [0, 1], got 2.0"),
    "heads 0": (changed(changed(SPEC, "model.attn_resolutions", [8]), "model.blocks",
                        {"attention": {"name": "multihead", "heads": 0}}),
                "model.blocks.attention.heads: must be >= 1, got 0"),
    "fourier seed 2**32": (changed(SPEC, "model.blocks", {"time_embedding": {"name": "fourier", "seed": 2**32}}),
                           "model.blocks.time_embedding.seed: must be in [0, 4294967295]"),
    "beta_end 1e-300": (changed(SPEC, "diffusion.beta_end", 1e-300),
                        "diffusion.beta_end: the linear schedule gives beta 1e-300 at t=49, which is 0 in float32"),
    "lr .nan": (changed(SPEC, "train.lr", float("nan")), "train.lr: must be a finite number, got nan"),
    "weight_decay -1": (changed(SPEC, "train.weight_decay", -1.0), "train.weight_decay: must be >= 0"),
    "fid_samples 1": (changed(SPEC, "eval.fid_samples", 1), "eval.fid_samples: must be 0 (no FID) or at least 2"),
    "data limit 0": (changed(SPEC, "data.limit", 0), "data.limit: must be positive"),
    # failed late, as a NaN loss naming no key, before
    "norm_eps -1": (changed(SPEC, "model.norm_eps", -1.0), "model.norm_eps: must be positive"),
    "norm_eps 0": (changed(SPEC, "model.norm_eps", 0.0), "model.norm_eps: must be positive"),
    "beta_end 2": (changed(SPEC, "diffusion.beta_end", 2.0), "diffusion.beta_end: a beta must be in (0, 1)"),
    "beta_start 0": (changed(SPEC, "diffusion.beta_start", 0.0), "diffusion.beta_start: a beta must be in (0, 1)"),
    "in_channels 3 on digits": (changed(changed(SPEC, "model.in_channels", 3), "model.out_channels", 3),
                                "model.in_channels: the digits dataset has 1 channel"),
}

TEXT_CASES = {
    "not UTF-8": (yaml.safe_dump(SPEC).encode() + b"# caf\xe9\n", "not UTF-8 text (byte 0xe9 on line"),
    "model with no value": (yaml.safe_dump({k: v for k, v in SPEC.items() if k != "model"}) + "model:\n",
                            "model: no value"),
    "model not a preset": (yaml.safe_dump({**SPEC, "model": "unet9000"}), "model: 'unet9000' is neither a preset"),
    "duplicate key, block mapping": (yaml.safe_dump(SPEC) + "diffusion:\n  T: 20\n",
                                     "duplicate key 'diffusion' (first given on line"),
    "duplicate nested key": (yaml.safe_dump(SPEC).replace("  lr: 0.001\n", "  lr: 0.001\n  lr: 0.5\n"),
                             "duplicate key 'lr'"),
}


@pytest.mark.parametrize("spec,message", SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_bad_spec_is_one_line_and_the_run_is_untouched(run, tmp_path, capsys, spec, message):
    refused(capsys, ["train", write_spec(tmp_path, spec), "--run", run, "--no-progress"], message)


@pytest.mark.parametrize("text,message", TEXT_CASES.values(), ids=TEXT_CASES.keys())
def test_bad_spec_file_is_one_line_and_the_run_is_untouched(run, tmp_path, capsys, text, message):
    line = refused(capsys, ["train", write_spec(tmp_path, text), "--run", run, "--no-progress"], message)
    assert str(tmp_path / "bad.yaml") in line or line.split("error: ")[1].startswith("model")


MIXED_KEY_CASES = {
    "sections": (yaml.safe_dump(SPEC) + "1: x\nfoo: y\n", "1: unknown section (sections: model"),
    "options": (yaml.safe_dump(SPEC).replace("train:\n", "train:\n  1: x\n  foo: y\n"),
                "train: unknown option 1 (valid options:"),
    "slots": (yaml.safe_dump(SPEC).replace("model:\n", "model:\n  blocks: {1: x, foo: y}\n"),
              "model.blocks: unknown slot 1"),
}


@pytest.mark.parametrize("text,message", MIXED_KEY_CASES.values(), ids=MIXED_KEY_CASES.keys())
def test_unknown_keys_of_mixed_types_are_one_line(run, tmp_path, capsys, text, message):
    refused(capsys, ["train", write_spec(tmp_path, text), "--run", run, "--no-progress"], message)


def test_flow_mapping_duplicate_is_refused(run, tmp_path, capsys):
    text = yaml.safe_dump({k: v for k, v in SPEC.items() if k != "train"}) + \
        "train: {steps: 4, batch_size: 16, lr: 0.001, lr: 0.5}\n"
    refused(capsys, ["train", write_spec(tmp_path, text), "--run", run], "duplicate key 'lr'")


def test_duplicate_key_in_an_ablation_file(run, tmp_path, capsys):
    text = (f"name: dup\nbase: {write_spec(tmp_path, SPEC, 'base.yaml')}\n"
            "variants:\n  a: {}\n  a: {train.lr: 0.5}\n")
    refused(capsys, ["ablate", write_spec(tmp_path, text, "abl.yaml"), "--runs", run.parent, "--dry-run"],
            "duplicate key 'a'")


def test_bad_range_in_an_ablation_variant_names_the_variant(run, tmp_path, capsys):
    ablation = {"name": "demo", "base": SPEC, "variants": {"ok": {}, "bad": {"train.grad_clip": -1}}}
    refused(capsys, ["ablate", write_spec(tmp_path, ablation, "abl.yaml"), "--runs", run.parent.parent],
            "variants.bad.train.grad_clip: must be positive")


def test_spec_that_is_a_folder(run, tmp_path, capsys):
    refused(capsys, ["train", tmp_path, "--run", run], "is a folder")


def test_corrupt_image_in_a_folder_dataset_is_named(run, tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("L", (16, 16), 40 * i).save(images / f"{i}.png")
    good = (images / "0.png").read_bytes()
    (images / "1.png").write_bytes(good[: len(good) // 2])  # truncated
    (images / "2.png").write_bytes(b"not an image at all")
    spec = changed(changed(SPEC, "data", {"dataset": "folder", "root": str(images)}), "train.batch_size", 2)
    refused(capsys, ["train", write_spec(tmp_path, spec), "--run", tmp_path / "new-run"],
            f"data.root: {images / '1.png'}: not a readable image")
    assert not (tmp_path / "new-run").exists()
    (images / "1.png").write_bytes(good)
    refused(capsys, ["train", write_spec(tmp_path, spec), "--run", tmp_path / "new-run"],
            f"data.root: {images / '2.png'}: not a readable image")


def test_corrupt_image_stops_an_ablation_before_any_run(run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    spec = changed(SPEC, "data", {"dataset": "folder", "root": str(images)})
    ablation = write_spec(tmp_path, {"name": "imgs", "base": spec, "variants": {"a": {}}}, "abl.yaml")
    refused(capsys, ["ablate", ablation, "--runs", tmp_path / "runs", "--no-progress"],
            f"data: data.root: {images / 'broken.png'}: not a readable image")
    assert not (tmp_path / "runs").exists()


def test_corrupt_image_in_a_folder_scored_by_fid(run, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "samples"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"nope")
    refused(capsys, ["fid", folder, "--reference", "dataset", "--data", "digits"],
            f"{folder / 'b.png'}: not a readable image (cannot identify image file); fix or remove it")


def test_other_config_in_the_run_folder_is_refused_before_writing(run, tmp_path, capsys):
    refused(capsys, ["train", write_spec(tmp_path, changed(SPEC, "train.lr", 2e-4)), "--run", run],
            "holds a run with a different config")


# -- command-line numbers ------------------------------------------------------------------

CLI_CASES = {
    "sample -n 0": (["sample", "{run}", "-n", "0"], "argument -n/--num: must be a positive integer, got 0"),
    "sample -n -5": (["sample", "{run}", "-n", "-5"], "argument -n/--num: must be a positive integer, got -5"),
    "sample --batch-size 0": (["sample", "{run}", "--batch-size", "0"], "argument --batch-size: must be a positive"),
    "sample --steps 0": (["sample", "{run}", "--steps", "0"], "argument --steps: must be a positive integer"),
    "sample --steps above T": (["sample", "{run}", "--steps", "51", "--out", "{tmp}/s"], "sample.steps: must be in 1..T=50"),
    "sample --eta -1": (["sample", "{run}", "--eta", "-1"], "argument --eta: must be >= 0"),
    "sample -n text": (["sample", "{run}", "-n", "many"], "argument -n/--num: expected an integer, got 'many'"),
    "fid --n 0": (["fid", "{run}", "--n", "0"], "argument --n: must be at least 2, got 0"),
    "fid --n 1": (["fid", "{run}", "--n", "1"], "argument --n: must be at least 2, got 1"),
    "train -epoch 0": (["train", "{spec}", "--run", "{run}", "-epoch", "0"], "argument -epoch/--epochs: must be positive"),
    "train -epoch -1": (["train", "{spec}", "--run", "{run}", "-epoch", "-1"], "argument -epoch/--epochs: must be positive"),
    "train -epoch nan": (["train", "{spec}", "--run", "{run}", "-epoch", "nan"], "expected a finite number"),
    "train -BS 0": (["train", "{spec}", "--run", "{run}", "-BS", "0"], "argument -BS/--batch-size: must be a positive"),
    "train -lr 0": (["train", "{spec}", "--run", "{run}", "-lr", "0"], "argument -lr: must be positive"),
    "train -lr=-1e-4": (["train", "{spec}", "--run", "{run}", "-lr=-1e-4"], "argument -lr: must be positive"),
    "train -lr -0.5": (["train", "{spec}", "--run", "{run}", "-lr", "-0.5"], "argument -lr: must be positive"),
    "train -T 0": (["train", "{spec}", "--run", "{run}", "-T", "0"], "argument -T: must be a positive integer"),
    "train -T 1": (["train", "{spec}", "--run", "{run}", "-T", "1"], "diffusion.T: must be at least 2"),
    "train --steps 0": (["train", "{spec}", "--run", "{run}", "--steps", "0"], "argument --steps: must be a positive"),
    "train --seed -1": (["train", "{spec}", "--run", "{run}", "--seed", "-1"],
                        "argument --seed: must be in [0, 4294967295], got -1"),
    "train --seed above 2**64": (["train", "{spec}", "--run", "{run}", "--seed", str(2**64 + 1)],
                                 f"argument --seed: must be in [0, 4294967295], got {2**64 + 1}"),
    "sample --seed 2**32": (["sample", "{run}", "--seed", str(2**32)], "argument --seed: must be in [0, 4294967295]"),
    "bench --frameworks tf": (["bench", "ddpm", "--frameworks", "tf"],
                              "argument --frameworks: 'tf' is not one of torch, jittor"),
    "bench --frameworks empty": (["bench", "ddpm", "--frameworks", ""],
                                 "argument --frameworks: expected a comma list of torch, jittor, got ''"),
    "bench --precisions fp8": (["bench", "ddpm", "--precisions", "fp32,fp8"], "argument --precisions: 'fp8' is not one of"),
    "table --filter unknown key": (["table", "{runs}", "--filter", "colour=red"],
                                   "--filter 'colour=red': 'colour' is neither a column nor a spec path"),
    "table --filter unknown spec key": (["table", "{runs}", "--filter", "train.colour=1"],
                                        "train.colour is not a key of these runs' specs"),
    "table --filter matching nothing": (["table", "{runs}", "--filter", "model.mid_attention=true"],
                                        "no run matches --filter model.mid_attention=true (of 1 run(s) under"),
    "bench --steps 0": (["bench", "ddpm", "--steps", "0"], "argument --steps: must be a positive integer"),
    "bench --batch-sizes 16,0": (["bench", "ddpm", "--batch-sizes", "16,0"], "argument --batch-sizes: must be a positive"),
    "unknown option": (["sample", "{run}", "--bogus"], "unrecognized arguments: --bogus"),
}


@pytest.mark.parametrize("argv,message", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_bad_command_line_number_is_one_line(run, good_spec, tmp_path, capsys, argv, message):
    argv = [a.format(run=run, spec=good_spec, tmp=tmp_path, runs=run.parent) for a in argv]
    refused(capsys, argv, message)


# -- damaged run folders -------------------------------------------------------------------

def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_last_checkpoint_is_named_with_the_ema_offered(damaged, capsys):
    truncate(damaged / "checkpoints" / "last.npz")
    line = refused(capsys, ["sample", damaged, "--no-ema", "-n", "2"],
                   f"{damaged / 'checkpoints' / 'last.npz'}: truncated or corrupt checkpoint")
    assert str(damaged / "checkpoints" / "ema.npz") in line.split("other checkpoints here")[1]


def test_truncated_ema_is_named_with_last_offered(damaged, capsys):
    truncate(damaged / "checkpoints" / "ema.npz")
    line = refused(capsys, ["sample", damaged, "-n", "2"],
                   f"{damaged / 'checkpoints' / 'ema.npz'}: truncated or corrupt checkpoint")
    assert str(damaged / "checkpoints" / "last.npz") in line


def test_garbage_checkpoint_when_resuming_training(damaged, good_spec, capsys):
    # an interrupted run (a done one has nothing to resume: train leaves it as it is)
    (damaged / "summary.json").write_text(json.dumps({"status": "interrupted", "step": 3}))
    (damaged / "checkpoints" / "ema.npz").unlink()
    (damaged / "checkpoints" / "last.npz").write_bytes(b"\x00" * 100)
    refused(capsys, ["train", good_spec, "--run", damaged, "--no-progress"],
            f"{damaged / 'checkpoints' / 'last.npz'}: truncated or corrupt checkpoint")


def test_weights_file_that_is_not_a_checkpoint(run, good_spec, tmp_path, capsys):
    weights = tmp_path / "weights.npz"
    weights.write_text("hello")
    refused(capsys, ["sample", weights, "--spec", good_spec, "--out", tmp_path / "out"],
            f"{weights}: truncated or corrupt checkpoint")


def test_full_disk_is_one_line_naming_the_file(run, good_spec, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    line = refused(capsys, ["train", good_spec, "--run", tmp_path / "new", "--no-progress"],
                   "no space left on device")
    assert str(tmp_path / "new") in line


# -- read-only folders (a subprocess that cannot bypass permissions, also as root) ----------

@pytest.fixture
def read_only_runs(finished, tmp_path):
    """A copy of the finished run's runs folder, made read-only (and writable again afterwards)."""
    runs = tmp_path / "runs"
    shutil.copytree(finished[0].parent.parent, runs)
    before = tree_hashes(runs)
    read_only(runs)
    yield runs
    writable(runs)
    assert tree_hashes(runs) == before


def test_read_only_runs_folder_for_train(read_only_runs, good_spec):
    target = read_only_runs / "demo" / "other-run"
    assert_one_line(cli_without_override(["train", good_spec, "--run", target, "--no-progress"]),
                    f"run folder {target}: permission denied")


def test_read_only_run_for_sample(read_only_runs):
    run_dir = read_only_runs / "demo" / "tiny-torch-s0"
    assert_one_line(cli_without_override(["sample", run_dir, "-n", "2"]),
                    f"output folder {run_dir / 'samples-ddim-5'}: permission denied")


def test_read_only_run_for_fid(read_only_runs):
    run_dir = read_only_runs / "demo" / "tiny-torch-s0"
    assert_one_line(cli_without_override(["fid", run_dir, "--n", "4", "--reference", "dataset"]),
                    f"run folder {run_dir}: permission denied")


def test_read_only_runs_folder_for_table_prints_then_one_line(read_only_runs):
    done = cli_without_override(["table", read_only_runs / "demo"])
    assert "tiny" in done.stdout  # the table itself is printed
    assert_one_line(done, f"{read_only_runs / 'demo' / 'plots'}")


def test_read_only_runs_folder_for_ablate(read_only_runs, tmp_path):
    ablation = write_spec(tmp_path, {"name": "fresh", "base": SPEC, "variants": {"a": {}}}, "abl.yaml")
    done = cli_without_override(["ablate", ablation, "--runs", read_only_runs, "--no-progress"])
    assert_one_line(done, f"{read_only_runs / 'fresh'}")


def test_unreadable_spec(finished, tmp_path):
    spec = write_spec(tmp_path, SPEC)
    spec.chmod(0)
    assert_one_line(cli_without_override(["train", spec, "--run", tmp_path / "r"]),
                    f"{spec}: cannot read the YAML file: Permission denied")


def test_merge_keys_may_be_overridden_but_written_keys_not_repeated():
    from unetlab.errors import UnetlabError
    from unetlab.spec.loading import parse_yaml

    text = "base: &b {lr: 0.001, steps: 4}\nfast: {<<: *b, lr: 0.01}\n"
    assert parse_yaml(text) == {"base": {"lr": 0.001, "steps": 4}, "fast": {"lr": 0.01, "steps": 4}}
    with pytest.raises(UnetlabError, match=r"f.yaml: invalid YAML \(line 2, column 23\): duplicate key 'lr' "
                                           r"\(first given on line 2\)"):
        parse_yaml("base: &b {lr: 0.001}\nfast: {<<: *b, lr: 1, lr: 2}\n", "f.yaml")


def test_full_disk_while_sampling_names_the_file(run, tmp_path, capsys, monkeypatch):
    import PIL.Image

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PIL.Image.Image, "save", full)
    refused(capsys, ["sample", run, "-n", "2", "--out", tmp_path / "out"],
            f"{tmp_path / 'out' / '000000.png'}: no space left on device (free some space and rerun)")


# -- damaged files read through the one reader (JSON, JSON lines, npz) ------------------------

def test_truncated_samples_npz_given_to_fid(run, tmp_path, capsys):
    folder = tmp_path / "samples"
    folder.mkdir()
    import numpy as np

    np.savez(folder / "samples.npz", images=np.zeros((4, 16, 16, 1), np.uint8))
    truncate(folder / "samples.npz")
    refused(capsys, ["fid", folder, "--reference", "dataset", "--data", "digits"],
            f"{folder / 'samples.npz'}: truncated or corrupt samples file")


def test_samples_npz_without_images_given_to_fid(run, tmp_path, capsys):
    import numpy as np

    folder = tmp_path / "samples"
    folder.mkdir()
    np.savez(folder / "samples.npz", pictures=np.zeros((4, 16, 16, 1), np.uint8))
    refused(capsys, ["fid", folder, "--reference", "dataset", "--data", "digits"],
            f"{folder / 'samples.npz'}: the samples file has no 'images' array (it has: pictures)")


def rewrite_metrics(run_dir: Path, change) -> None:
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    change(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_loss_that_is_text_is_named_by_table(damaged, capsys):
    def text_loss(records):
        records[-1]["loss"] = "abc"
    rewrite_metrics(damaged, text_loss)
    refused(capsys, ["table", damaged.parent], f"{damaged / 'metrics.jsonl'}, line 2: loss is 'abc', not a number")


def test_a_broken_line_inside_metrics_is_named_by_table(damaged, capsys):
    path = damaged / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    refused(capsys, ["table", damaged.parent], f"{path}, line 1: not a JSON record")


@pytest.mark.parametrize("key", ["spec", "run"])
def test_a_run_config_without_its_spec_or_run_is_refused_by_sample_and_fid(damaged, capsys, key):
    config = json.loads((damaged / "config.json").read_text())
    del config[key]
    (damaged / "config.json").write_text(json.dumps(config))
    message = f"{damaged / 'config.json'}: not a run config (its '{key}' mapping is missing)"
    refused(capsys, ["sample", damaged, "-n", "2"], message)
    refused(capsys, ["fid", damaged, "--n", "2", "--reference", "dataset"], message)


def test_a_done_run_without_its_ema_is_refused_and_no_ema_is_offered(damaged, capsys):
    (damaged / "checkpoints" / "ema.npz").unlink()
    line = refused(capsys, ["sample", damaged, "-n", "2"],
                   f"{damaged / 'checkpoints' / 'ema.npz'}: missing, though the run is done")
    assert "--no-ema" in line
    assert main(["sample", str(damaged), "-n", "2", "--no-ema", "--out", str(damaged / "raw")]) == 0
    assert (damaged / "raw" / "samples.npz").is_file()


def test_a_torn_last_metrics_line_is_dropped_on_resume_and_the_figures_come_from_the_good_records(
        damaged, good_spec, capsys):
    path = damaged / "metrics.jsonl"
    good, last = path.read_text().splitlines()
    path.write_text(good + "\n" + last[: len(last) // 2])  # killed while writing the step-4 record
    (damaged / "summary.json").write_text(json.dumps({"status": "interrupted", "step": 4}))
    (damaged / "checkpoints" / "ema.npz").unlink()
    capsys.readouterr()
    assert main(["train", str(good_spec), "--run", str(damaged), "--no-progress"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(good)
    assert f"final loss {figures['trailing_loss']:.4f}" in out and f"{figures['img_s']:.1f} img/s" in out, out
    assert path.read_text() == good + "\n"  # repaired: the torn line is gone, the good one kept
    summary = json.loads((damaged / "summary.json").read_text())
    assert summary["status"] == "done" and summary["final_loss"] == figures["trailing_loss"]


# -- ablations and searches: every value checked before anything runs ---------------------

def ablation_file(folder: Path, **extra) -> Path:
    return write_spec(folder, {"name": "abl", "base": SPEC, "variants": {"a": {}}, **extra}, "abl.yaml")


def test_ablation_seed_of_2_to_the_32_is_refused(run, tmp_path, capsys):
    refused(capsys, ["ablate", ablation_file(tmp_path, seeds=[0, 2**32]), "--runs", tmp_path / "r", "--dry-run"],
            "seeds[1]: must be in [0, 4294967295], got 4294967296")


def test_search_seed_of_2_to_the_32_is_refused(run, tmp_path, capsys):
    pytest.importorskip("optuna")
    search = {"method": "random", "trials": 2, "seed": 2**32, "space": {"train.lr": {"log_uniform": [1e-4, 1e-3]}}}
    refused(capsys, ["ablate", ablation_file(tmp_path, search=search), "--runs", tmp_path / "r", "--dry-run"],
            "search.seed: must be in [0, 4294967295], got 4294967296")


def test_search_int_range_with_invalid_interior_values_is_refused_before_anything_runs(run, tmp_path, capsys):
    pytest.importorskip("optuna")
    search = {"method": "random", "trials": 2, "space": {"model.norm_groups": {"int_uniform": [4, 8]}}}
    refused(capsys, ["ablate", ablation_file(tmp_path, search=search), "--runs", tmp_path / "r", "--no-progress"],
            "model.norm_groups: 5 groups do not divide 16 channels")
    assert not (tmp_path / "r").exists()


def test_search_pruning_on_fid_that_is_never_logged_is_refused(run, tmp_path, capsys):
    pytest.importorskip("optuna")
    search = {"method": "random", "trials": 2, "space": {"train.lr": {"log_uniform": [1e-4, 1e-3]}},
              "objective": {"metric": "fid"}, "pruner": {"asha": {"metric": "fid"}}}
    base = changed(SPEC, "eval", {"fid_samples": 4, "reference": "dataset"})
    path = write_spec(tmp_path, {"name": "abl", "base": base, "variants": {"a": {}}, "search": search}, "abl.yaml")
    refused(capsys, ["ablate", path, "--runs", tmp_path / "r", "--no-progress"],
            "search.pruner.asha.metric: fid is logged during training only with eval.every, which a does not set")
    assert not (tmp_path / "r").exists()


def test_ablate_status_on_a_runs_folder_that_does_not_exist(run, tmp_path, capsys):
    missing = tmp_path / "no-such-runs"
    refused(capsys, ["ablate", ablation_file(tmp_path), "--runs", missing, "--status"],
            f"--runs {missing}: no such folder, so no run of abl to report")
    assert not missing.exists()


def test_gpu_ids_on_a_machine_without_gpus(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    refused(capsys, ["ablate", ablation_file(tmp_path), "--runs", tmp_path / "r", "--gpus", "0,1"],
            "--gpus 0,1: no GPU is visible here")
    assert not (tmp_path / "r").exists()


# -- weights holding NaN ------------------------------------------------------------------

@pytest.mark.slow
def test_diffusers_weights_holding_nan_are_refused_naming_the_tensor(run, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from diffusers import UNet2DModel

    folder = tmp_path / "unet"
    model = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                        block_out_channels=(8, 8), norm_num_groups=4,
                        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    with torch.no_grad():
        model.conv_in.weight[0, 0, 0, 0] = float("nan")
    model.save_pretrained(folder)
    refused(capsys, ["sample", folder, "-n", "2", "--out", tmp_path / "out"],
            "tensor 'conv_in.weight' holds 1 NaN value(s)")
    assert not (tmp_path / "out").exists()


def test_a_weights_file_holding_nan_is_refused_naming_the_tensor(run, good_spec, tmp_path, capsys):
    import numpy as np

    arrays = dict(np.load(run / "checkpoints" / "ema.npz"))
    name = sorted(arrays)[0]
    arrays[name] = np.full_like(arrays[name], np.inf)
    weights = tmp_path / "weights.npz"
    np.savez(weights, **arrays)
    refused(capsys, ["sample", weights, "--spec", good_spec, "--out", tmp_path / "out"],
            f"{weights}: tensor {name!r} holds {arrays[name].size} infinite value(s)")
    assert not (tmp_path / "out").exists()


# -- other programs' failures, in one line -----------------------------------------------

def test_failing_ranks_are_one_line_pointing_at_their_log(damaged, good_spec, capsys, monkeypatch):
    from unetlab.run import distributed

    def failing_launch(framework, nproc, module_args, log=None):
        with open(log, "a") as f:
            f.write("".join(f"rank {i % 2}: starting\n" for i in range(60)))
            f.write("Traceback (most recent call last):\n  File \"x\", line 1\n"
                    "RuntimeError: jittor was built without MPI\n" + "-" * 70 + "\n"
                    "mpirun detected that one or more processes exited with non-zero status\n")
        return 1

    monkeypatch.setattr(distributed, "launch_ranks", failing_launch)
    monkeypatch.setattr(distributed, "check_launcher", lambda framework: "mpirun")
    (damaged / "summary.json").unlink()  # killed while training: a partial run
    line = refused(capsys, ["train", good_spec, "--run", damaged, "--nproc", "2", "--no-progress"],
                   "torch on 2 processes: the ranks exited with status 1: RuntimeError: jittor was built without MPI")
    assert line.endswith(f"(full output: {damaged / 'ranks.log'})")
