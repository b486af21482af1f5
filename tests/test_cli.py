"""The train and sample commands end to end, and their one-line errors."""
import subprocess
import sys

import numpy as np
import pytest
import yaml

from unetlab.cli import main
from unetlab.commands.train import apply_overrides
from unetlab.run.jsonfiles import read_json, read_jsonl

from tiny import DIGITS_MODEL


def write_spec(path, **train):
    spec = {"model": DIGITS_MODEL, "data": {"dataset": "digits"}, "diffusion": {"T": 50}, "train": {"batch_size": 16, "log_every": 2, **train},
            "sample": {"steps": 4, "num_images": 4}}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_train_then_sample(tmp_path, capsys):
    spec = write_spec(tmp_path / "digits.yaml")
    run = tmp_path / "run"
    assert main(["train", str(spec), "-T", "40", "-BS", "8", "-lr", "3e-4", "--steps", "6",
                 "--run", str(run), "--no-progress"]) == 0
    assert "done after 6 steps" in capsys.readouterr().out
    config = read_json(run / "config.json")["spec"]
    assert config["diffusion"]["T"] == 40 and config["train"]["batch_size"] == 8
    assert config["train"]["lr"] == 3e-4 and config["train"]["steps"] == 6
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [2, 4, 6]

    out = tmp_path / "samples"
    assert main(["sample", str(run), "-n", "5", "--steps", "3", "--out", str(out)]) == 0
    with np.load(out / "samples.npz") as f:
        images = f["images"]
    assert images.shape == (5, 16, 16, 1) and images.dtype == np.uint8
    assert (out / "grid.png").is_file() and (out / "000004.png").is_file()
    # the same run sampled in the other framework gives the same images (same x_T, same weights)
    out_j = tmp_path / "samples_jittor"
    assert main(["sample", str(run), "-n", "5", "--steps", "3", "--framework", "jittor", "--out", str(out_j)]) == 0
    with np.load(out_j / "samples.npz") as f:
        assert np.abs(f["images"].astype(int) - images.astype(int)).max() <= 1


def test_seed_script_defaults_fill_a_missing_budget():
    class Args:
        T = batch_size = lr = epochs = steps = None
    raw = apply_overrides({"train": {}}, Args)
    assert raw["train"] == {"epochs": 150.0}
    Args.epochs = 2
    assert apply_overrides({"train": {"steps": 10}}, Args)["train"] == {"epochs": 2}


@pytest.mark.parametrize("content,message", [
    ("model: [1, 2\n", "invalid YAML (line 2, column 1)"),
    ("model: {blocks: {resblock: resnet}}\n", "model.blocks.resblock: unknown resblock block 'resnet'"),
    ("model: {base_channels: wide}\n", "model.base_channels: expected int, got str 'wide'"),
    ("trian: {steps: 3}\n", "trian: unknown section"),
])
def test_bad_specs_give_one_line_and_write_nothing(tmp_path, content, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(content)
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "unetlab.cli", "train", str(spec), "--run", str(run)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("jittor:")]
    assert len(lines) == 1 and lines[0].startswith("unetlab train: error: ") and message in lines[0], done.stderr
    assert not run.exists()


def test_missing_spec_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"unetlab train: error: {tmp_path / 'nope.yaml'}: no such file"
