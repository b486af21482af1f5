"""Training: framework parity of the loss, exact resume, learning on the digits, failures."""
import json

import numpy as np
import pytest

from unetlab import UnetlabError
from unetlab.metrics.model_report import forward_gflops
from unetlab.run.jsonfiles import read_json, read_jsonl
from unetlab.run.trainer import train_run

from conftest import tiny_digits_spec
from tiny import digits_run

#: PyTorch and Jittor losses from the same weights, batches and noise, step by step
#: (measured: about 3e-6 over 20 steps on the CPU)
LOSS_RTOL = 1e-4


def losses(run_dir):
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "torch"
    summary = train_run(digits_run(20), run, "torch", progress=False)
    return run, summary


def test_run_folder_contents(torch_run):
    run, summary = torch_run
    assert summary["status"] == "done" and summary["step"] == 20
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoints/last.npz",
                 "checkpoints/ema.npz", "samples.png"):
        assert (run / name).is_file(), name
    config = read_json(run / "config.json")
    assert config["run"] == {"framework": "torch", "seed": 0}
    assert config["spec"]["model"]["blocks"]["resblock"]["name"] == "ddpm"
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 21))
    assert set(records[0]) >= {"loss", "lr", "grad_norm", "step_time", "img_s", "peak_mem"}
    assert summary["params"] > 0 and summary["train_img_s"] > 0 and summary["sample_img_s"] > 0
    assert summary["gflops"] == pytest.approx(forward_gflops(config["spec"]["model"])) and summary["gflops"] > 0


@pytest.mark.slow
def test_jittor_loss_matches_torch_for_20_steps(torch_run, tmp_path):
    run, _ = torch_run
    train_run(digits_run(20), tmp_path / "jittor", "jittor", progress=False)
    t, j = np.array(losses(run)), np.array(losses(tmp_path / "jittor"))
    assert len(t) == len(j) == 20
    np.testing.assert_allclose(j, t, rtol=LOSS_RTOL)


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_loss_sequence(torch_run, tmp_path):
    run, _ = torch_run
    spec = digits_run(20, checkpoint_every=4)
    spec["model"]["dropout"] = 0.1  # the framework RNG must be reproduced too
    full = tmp_path / "full"
    train_run(spec, full, "torch", progress=False)
    cut = tmp_path / "cut"
    partial = train_run(spec, cut, "torch", progress=False, stop_after=10)
    assert partial["status"] == "partial" and partial["step"] == 10
    # a crash between checkpoints: records beyond the last checkpoint are redone, not duplicated
    with open(cut / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 11, "loss": 123.0}) + "\n" + '{"step": 12, "lo')
    done = train_run(spec, cut, "torch", progress=False)
    assert done["status"] == "done"
    assert [r["step"] for r in read_jsonl(cut / "metrics.jsonl")] == list(range(1, 21))
    assert losses(cut) == losses(full)
    elapsed = [r["elapsed"] for r in read_jsonl(cut / "metrics.jsonl")]
    assert elapsed == sorted(elapsed)  # the training clock continues across the resume


@pytest.mark.slow
def test_digits_loss_falls_clearly(tmp_path):
    summary = train_run(digits_run(150, log_every=10, lr=1e-3, warmup_steps=10), tmp_path / "r", "torch",
                        progress=False)
    records = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    first, last = records[0]["loss"], summary["final_loss"]
    assert last < 0.35 * first, (first, last)


def test_divergence_is_recorded_as_failed(tmp_path):
    spec = digits_run(5, lr=1e12, grad_clip=None)
    spec["diffusion"]["prediction"] = "x0"
    with pytest.raises(UnetlabError, match="loss became (nan|inf)"):
        train_run(spec, tmp_path / "r", "torch", progress=False)
    summary = read_json(tmp_path / "r" / "summary.json")
    assert summary["status"] == "failed" and "loss became" in summary["reason"]


def test_a_run_folder_refuses_another_config(torch_run):
    run, _ = torch_run
    with pytest.raises(UnetlabError, match="holds a run with a different config"):
        train_run(digits_run(30), run, "torch", progress=False)


def test_a_run_written_before_an_option_existed_is_the_same_run(tmp_path):
    """Options added to unetlab after a run was written take their defaults: the run resumes
    instead of looking changed."""
    import json

    run = tmp_path / "r"
    train_run(tiny_digits_spec(4), run, "torch", progress=False, stop_after=2)
    config = json.loads((run / "config.json").read_text())
    del config["spec"]["train"]["channels_last"], config["spec"]["sample"]["precision"]
    (run / "config.json").write_text(json.dumps(config))
    (run / ".config.sha256").unlink()  # runs of that time had no digest of their config
    assert train_run(tiny_digits_spec(4), run, "torch", progress=False)["step"] == 4
    with pytest.raises(UnetlabError, match="holds a run with a different config"):
        train_run(tiny_digits_spec(4, lr=5e-4), run, "torch", progress=False)


def test_a_run_resumes_compiled_or_in_another_layout(tmp_path):
    """Compile and layout change speed, not the experiment: a run started in one layout resumes
    in the other, optimizer moments and all, on the losses of an uninterrupted run."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    nchw, cl = tiny_digits_spec(6, channels_last=False, log_every=1), tiny_digits_spec(6, channels_last=True, log_every=1)
    train_run(nchw, whole, "torch", progress=False)
    train_run(nchw, split, "torch", progress=False, stop_after=3)
    assert train_run(cl, split, "torch", progress=False)["step"] == 6
    a, b = ([r["loss"] for r in read_jsonl(p / "metrics.jsonl")] for p in (whole, split))
    assert len(a) == len(b) == 6
    assert np.allclose(a, b, rtol=1e-4)


def test_bad_budget_and_dataset_errors(tmp_path):
    spec = digits_run(5)
    spec["train"]["epochs"] = 1
    with pytest.raises(UnetlabError, match="train: give one budget of steps, epochs or minutes, not steps and epochs"):
        train_run(spec, tmp_path / "a", "torch", progress=False)
    spec = digits_run(5, precision="fp16")
    with pytest.raises(UnetlabError, match=r"train.precision: 'fp16' is not supported by torch "
                                           r"\(valid precisions: fp32, tf32, bf16\)"):
        train_run(spec, tmp_path / "c", "torch", progress=False)
    spec = digits_run(5)
    spec["data"] = {"dataset": "folder", "root": str(tmp_path / "nowhere")}
    with pytest.raises(UnetlabError, match="no images .* found under"):
        train_run(spec, tmp_path / "b", "torch", progress=False)


@pytest.mark.parametrize("framework", ["torch", "jittor"])
def test_device_batches_are_the_host_batches(framework):
    from unetlab.data import Batches, DeviceBatches, digits
    from unetlab.frameworks import backend_for, ops_for

    batches = Batches(digits(16)[:100], 8, seed=3, flip=True)
    on_device = DeviceBatches(batches, backend_for(framework), ops_for(framework))
    for step in (0, 1, 12, 13):  # 12 steps per epoch: 12 and 13 are in the next epoch's order
        np.testing.assert_array_equal(backend_for(framework).numpy(on_device(step)), batches(step))
    assert batches.flips(0).any() and not batches.flips(0).all()


@pytest.mark.slow
def test_device_noise_trains_and_learns(tmp_path):
    summary = train_run(digits_run(40, noise="device", lr=1e-3), tmp_path / "r", "torch", progress=False)
    records = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert summary["status"] == "done" and summary["final_loss"] < 0.6 * records[0]["loss"]
