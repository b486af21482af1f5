"""PyTorch speed options (channels-last layout, compile modes) and the benchmark harness's
parts: what they compute must not change, and misuse is a one-line error."""
import threading

import numpy as np
import pytest
import torch

from unetlab import UnetlabError, build_model, get_registry, get_weights, set_weights
from unetlab.bench import BenchCase, file_lock, measure
from unetlab.commands.bench import compile_modes
from unetlab.frameworks import torch_backend
from unetlab.frameworks.jittor.runtime import import_jittor
from unetlab.run.jsonfiles import read_jsonl
from unetlab.spec.run import resolve_run_spec
from unetlab.run.trainer import train_run

from conftest import TINY_MODEL, tiny_digits_spec
from tiny import PARITY_MODEL, rel_err

pytestmark = pytest.mark.usefixtures("one_thread")


def test_channels_last_forward_equals_the_plain_forward():
    model = build_model(dict(TINY_MODEL), "torch", seed=0).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 900])
    with torch.no_grad():
        plain = model(x, t).numpy()
        fast = torch_backend.fast_forward(model, None, channels_last=True)
        assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert rel_err(plain, fast(x, t).numpy()) < 1e-5


def test_training_in_channels_last_follows_the_same_losses(tmp_path):
    plain = train_run(tiny_digits_spec(6, channels_last=False), tmp_path / "plain", "torch", progress=False)
    fast = train_run(tiny_digits_spec(6, channels_last=True), tmp_path / "cl", "torch", progress=False)
    assert plain["status"] == fast["status"] == "done"
    a, b = ([r["loss"] for r in read_jsonl(p / "metrics.jsonl")] for p in (tmp_path / "plain", tmp_path / "cl"))
    assert len(a) == len(b) > 0
    assert np.allclose(a, b, rtol=1e-4)


def test_unset_layout_is_channels_last_on_the_cpu_and_when_compiled():
    assert resolve_run_spec(tiny_digits_spec(2))["train"]["channels_last"] is None
    assert torch_backend.channels_last_default(None)  # these tests run on the CPU
    assert torch_backend.channels_last_default("reduce-overhead")
    model = build_model(dict(TINY_MODEL), "torch", seed=0)
    torch_backend.fast_forward(model, None, channels_last=None)
    assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    kept = build_model(dict(TINY_MODEL), "torch", seed=0)
    assert torch_backend.fast_forward(kept, None, channels_last=False) is kept
    assert not kept.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_weights_of_a_channels_last_model_are_c_ordered_and_move_to_jittor():
    jt = import_jittor()
    model = build_model(dict(PARITY_MODEL), "torch", seed=0).eval()
    forward = torch_backend.fast_forward(model, None, channels_last=True)
    weights = get_weights(model)
    assert all(a.flags.c_contiguous for a in weights.values())
    jittor_model = build_model(dict(PARITY_MODEL), "jittor", seed=3)
    jittor_model.eval()
    set_weights(jittor_model, weights)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    t = np.array([3, 70])
    with torch.no_grad():
        expected = forward(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    assert rel_err(expected, jittor_model(jt.array(x), jt.array(t)).numpy()) < 1e-5


def test_jittor_runs_with_the_layout_unset():
    from unetlab.sampling import sampling_network

    jittor_model = build_model(dict(TINY_MODEL), "jittor", seed=0)
    assert sampling_network(jittor_model, _sample_spec()["sample"]) is jittor_model


def test_torch_options_are_refused_for_jittor(tmp_path):
    with pytest.raises(UnetlabError, match="train.channels_last: a torch option, not for jittor"):
        train_run(tiny_digits_spec(2, channels_last=True), tmp_path / "r", "jittor", progress=False)


def test_compile_mode_needs_compile_and_a_known_mode():
    with pytest.raises(UnetlabError, match="train.compile_mode: 'reduce-overhead' needs train.compile: true"):
        resolve_run_spec(tiny_digits_spec(2, compile_mode="reduce-overhead"))
    with pytest.raises(UnetlabError, match="train.compile_mode"):
        resolve_run_spec(tiny_digits_spec(2, compile=True, compile_mode="fastest"))
    spec = resolve_run_spec(tiny_digits_spec(2, compile=True, compile_mode="reduce-overhead"))
    assert spec["train"]["compile_mode"] == "reduce-overhead"


def test_bench_compile_list():
    assert compile_modes("off") == [None]
    assert compile_modes("both,reduce-overhead") == [None, "default", "reduce-overhead"]
    assert compile_modes("on,default") == ["default"]
    with pytest.raises(UnetlabError, match="--compile 'fast': expected off, on, both or one of default, reduce-overhead"):
        compile_modes("off,fast")


def test_measure_holds_the_lock_only_while_timing_and_times_the_given_model():
    held = []

    class Recorder:
        def __enter__(self):
            held.append("in")

        def __exit__(self, *exc):
            held.append("out")

    model = torch_backend.prepare_model(build_model(dict(TINY_MODEL), "torch", seed=1))
    row = measure(dict(TINY_MODEL), BenchCase("torch", "fp32", 2), steps=1, warmup=1, model=model,
                  exclusive=Recorder, repeats=2)
    assert held == ["in", "out", "in", "out"]  # the training part, then the sampling part
    assert row["train_img_s"] > 0 and row["sample_img_s"] > 0 and row["compile"] == "off"
    assert not model.training  # the given model itself was timed (measure leaves it in eval mode)


def test_file_lock_excludes_a_second_holder(tmp_path):
    lock = file_lock(tmp_path / "gpu.lock")
    order = []

    def second():
        with lock():
            order.append("second")

    with lock():
        other = threading.Thread(target=second)
        other.start()
        other.join(0.3)
        order.append("first")
        assert other.is_alive()  # still waiting for the lock
    other.join(5)
    assert order == ["first", "second"]


def _sample_spec(**sample):
    return resolve_run_spec({"model": dict(TINY_MODEL), "diffusion": {"T": 50}, "data": {"dataset": "shapes"},
                             "train": {"steps": 1}, "sample": {"steps": 3, "batch_size": 4, **sample}})


def test_sampling_in_channels_last_gives_the_same_images():
    from unetlab.sampling import generate

    model = build_model(dict(TINY_MODEL), "torch", seed=0)
    plain, _ = generate(model, _sample_spec(channels_last=False), 4)
    fast, _ = generate(build_model(dict(TINY_MODEL), "torch", seed=0), _sample_spec(channels_last=True), 4)
    assert plain.shape == (4, 3, 16, 16)
    assert np.abs(plain - fast).max() < 1e-5


def test_sampling_options_are_checked():
    from unetlab.sampling import sampling_network

    with pytest.raises(UnetlabError, match="sample.compile_mode: 'reduce-overhead' needs sample.compile: true"):
        _sample_spec(compile_mode="reduce-overhead")
    model = build_model(dict(TINY_MODEL), "torch", seed=0)
    assert sampling_network(model, _sample_spec(channels_last=False)["sample"]) is model  # nothing asked
    jittor_model = build_model(dict(TINY_MODEL), "jittor", seed=0)
    with pytest.raises(UnetlabError, match="sample.channels_last: a torch option, not for jittor"):
        sampling_network(jittor_model, _sample_spec(channels_last=True)["sample"])
    with pytest.raises(UnetlabError, match="sample.precision: 'bf16' is not supported by jittor"):
        sampling_network(jittor_model, _sample_spec(precision="bf16")["sample"])


def _block_specs():
    for (slot, name) in sorted(get_registry().blocks):
        options = {"num_embeddings": 100} if (slot, name) == ("time_embedding", "learned") else {}
        yield pytest.param({**PARITY_MODEL, "blocks": {slot: {"name": name, **options}}}, id=f"{slot}/{name}")
    yield pytest.param("ddpm", id="preset/ddpm")


@pytest.mark.parametrize("spec", _block_specs())
@pytest.mark.slow
def test_every_block_compiles_into_one_graph(spec):
    """torch.compile sees each built-in block (and the ``ddpm`` preset) as one graph: no graph
    break, so no host round-trip in the middle of a step."""
    model = build_model(spec, "torch", seed=0)
    size = 32 if spec == "ddpm" else spec["image_size"]
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, size, size), torch.tensor([3, 71]))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
