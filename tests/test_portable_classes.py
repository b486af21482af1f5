"""Blocks and the U-Net are plain classes with stable module and qualified names: built models
pickle, deep-copy and round-trip through torch.save/torch.load, also into a fresh process."""
from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from unetlab import build_model
from unetlab.blocks.norm import GroupNorm
from unetlab.blocks.residual import ResBlock, ResBlockDown, ResBlockUp
from unetlab.blocks.unet import UNet

from tiny import PARITY_MODEL

#: every slot filled by a block with parameters, a subclass and a norm that is not GroupNorm
SPEC = {**PARITY_MODEL, "blocks": {"downsample": "resblock", "upsample": "resblock", "norm": "rmsnorm",
                                   "attention": {"name": "multihead", "heads": 2}, "time_embedding": "fourier"}}


@pytest.fixture(scope="module")
def model_and_output():
    model = build_model(SPEC, "torch", seed=1).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    t = torch.tensor([3, 71])
    with torch.no_grad():
        return model, (x, t), model(x, t)


def _same_output(model, inputs, expected):
    with torch.no_grad():
        assert torch.equal(model.eval()(*inputs), expected)


def test_classes_have_stable_importable_names():
    assert (UNet.torch.__module__, UNet.torch.__qualname__) == ("unetlab.blocks.unet", "UNet.torch")
    assert (ResBlock.torch.__module__, ResBlock.torch.__qualname__) == ("unetlab.blocks.residual", "ResBlock.torch")
    assert ResBlock.torch is ResBlock.torch  # made once
    assert issubclass(ResBlockDown.torch, ResBlock.torch) and issubclass(ResBlockUp.torch, ResBlock.torch)
    assert issubclass(GroupNorm.torch, torch.nn.GroupNorm)


def test_pickle_round_trip(model_and_output):
    model, inputs, expected = model_and_output
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is UNet.torch and type(again.down[0].downsample) is ResBlockDown.torch
    _same_output(again, inputs, expected)
    assert again.unetlab_config == model.unetlab_config


def test_deepcopy(model_and_output):
    model, inputs, expected = model_and_output
    again = copy.deepcopy(model)
    assert again.conv_in.weight is not model.conv_in.weight
    _same_output(again, inputs, expected)


def test_torch_save_and_load_in_a_fresh_process(model_and_output, tmp_path):
    model, inputs, expected = model_and_output
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    _same_output(torch.load(buffer, weights_only=False), inputs, expected)

    path = tmp_path / "model.pt"
    torch.save({"model": model, "inputs": inputs}, path)
    np.save(tmp_path / "expected.npy", expected.numpy())
    script = (f"import numpy as np, torch\n"
              f"torch.set_num_threads({torch.get_num_threads()})\n"  # bit-equal needs the same threads
              f"d = torch.load({str(path)!r}, weights_only=False)\n"
              f"with torch.no_grad():\n"
              f"    out = d['model'].eval()(*d['inputs']).numpy()\n"
              f"assert np.array_equal(out, np.load({str(tmp_path / 'expected.npy')!r}))\n"
              f"print(type(d['model']).__qualname__)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "UNet.torch"
