"""The ``ddpm`` preset is the DDPM CIFAR-10 network: same parameter count, and it loads an
independently written implementation's state dict and computes the same function."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_ddpm import Reference  # noqa: E402

from unetlab import UnetlabError, build_model, count_parameters, load_ddpm_state_dict

from tiny import rel_err


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = Reference().eval()
    with torch.no_grad():  # default init leaves norms at 1/0: perturb them so they matter
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return ref


def test_parameter_count_matches_ddpm(reference):
    assert sum(p.numel() for p in reference.parameters()) == 35_746_307
    assert count_parameters(build_model("ddpm", "torch")) == 35_746_307
    assert count_parameters(build_model("ddpm", "jittor")) == 35_746_307


@pytest.mark.parametrize("framework", ["torch", "jittor"])
def test_loads_reference_weights_and_matches(reference, framework):
    model = build_model("ddpm", framework)
    model.eval()
    load_ddpm_state_dict(model, {"module." + k: v for k, v in reference.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    t = np.array([17, 901])
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    if framework == "torch":
        with torch.no_grad():
            got = model(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    else:
        import jittor as jt

        with jt.no_grad():
            got = model(jt.array(x), jt.array(t)).numpy()
    assert rel_err(expected, got) <= 1e-5


def test_mismatched_state_dict_is_one_clear_error(reference):
    model = build_model({"preset": "ddpm", "base_channels": 64}, "torch")
    with pytest.raises(UnetlabError, match=r"DDPM state dict entries do not fit the model: .*other shapes \(e\.g\. "):
        load_ddpm_state_dict(model, reference.state_dict())
    sd = dict(reference.state_dict())
    sd.pop("conv_out.bias")
    with pytest.raises(UnetlabError, match=r"1 missing \(e\.g\. conv_out\.bias\)"):
        load_ddpm_state_dict(build_model("ddpm", "torch"), sd)
