"""Every registered block and preset computes the same in PyTorch and Jittor (fp32, CPU).

Tolerance: relative error max|y_torch - y_jittor| / max|y_torch| <= 1e-5 on the same weights
and inputs.  A new block without a Jittor implementation, or one that computes differently,
fails here.
"""
import numpy as np
import pytest
import torch

from unetlab import build_model, get_registry, get_weights, resolve_model_spec, set_weights
from unetlab.frameworks.jittor_runtime import import_jittor

from tiny import PARITY_MODEL, rel_err

TOL = 1e-5
jt = import_jittor()


def _outputs(spec, seed=0, batch=2):
    tm = build_model(spec, "torch", seed=seed).eval()
    jm = build_model(spec, "jittor", seed=seed + 1)  # different init: the transfer must fix it
    jm.eval()
    set_weights(jm, get_weights(tm))
    rng = np.random.default_rng(0)
    resolved = resolve_model_spec(spec)
    size, ch = resolved.image_size, resolved.in_channels
    x = rng.standard_normal((batch, ch, size, size)).astype(np.float32)
    t = np.array([3, 71][:batch], dtype=np.int64)
    with torch.no_grad():
        yt = tm(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    with jt.no_grad():
        yj = jm(jt.array(x), jt.array(t)).numpy()
    return yt, yj


def _block_cases():
    cases = []
    for (slot, name), block in sorted(get_registry().blocks.items()):
        cases.append(pytest.param(slot, name, id=f"{slot}/{name}"))
    return cases


@pytest.mark.parametrize("slot,name", _block_cases())
def test_block_parity(slot, name):
    block = get_registry().block(slot, name)
    assert set(block.frameworks) == {"torch", "jittor"}, f"{slot}/{name} lacks a framework"
    spec = {**PARITY_MODEL, "blocks": {slot: name}}
    if slot == "time_embedding" and name == "learned":
        spec["blocks"] = {slot: {"name": name, "num_embeddings": 100}}
    yt, yj = _outputs(spec)
    assert yt.shape == (2, 3, 8, 8)
    assert np.abs(yt).max() > 0
    assert rel_err(yt, yj) <= TOL


@pytest.mark.parametrize("preset", sorted(get_registry().presets))
@pytest.mark.slow
def test_preset_parity(preset):
    yt, yj = _outputs(preset, batch=1)
    assert yt.shape == (1, 3, 32, 32)
    assert rel_err(yt, yj) <= TOL


def test_same_seed_gives_same_weights_in_both_frameworks():
    wt = get_weights(build_model(PARITY_MODEL, "torch", seed=5))
    wj = get_weights(build_model(PARITY_MODEL, "jittor", seed=5))
    assert set(wt) == set(wj)
    for k in wt:
        np.testing.assert_array_equal(wt[k], wj[k])
    other = get_weights(build_model(PARITY_MODEL, "torch", seed=6))
    assert any(not np.array_equal(wt[k], other[k]) for k in wt if wt[k].ndim >= 2)


def test_weights_round_trip_both_ways():
    tm = build_model(PARITY_MODEL, "torch", seed=1)
    jm = build_model(PARITY_MODEL, "jittor", seed=2)
    original = get_weights(tm)
    set_weights(jm, original)
    set_weights(tm, {k: np.zeros_like(v) for k, v in original.items()})
    set_weights(tm, get_weights(jm))
    back = get_weights(tm)
    for k in original:
        np.testing.assert_array_equal(original[k], back[k])
