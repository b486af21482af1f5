"""The written contracts: the Ops and Backend protocols both frameworks fulfil, the Block
protocol, one calling path that honours takes_time_embedding in every slot, the norm slot,
and einops on Jittor arrays."""
from __future__ import annotations

import inspect

import einops
import numpy as np
import pytest
import torch

import unetlab
from unetlab import BlockDef, UnetlabError, build_model, resolve_model_spec
from unetlab.blocks.contract import Block, BuildContext
from unetlab.blocks.norm import ChannelRMSNorm
from unetlab.frameworks import FRAMEWORKS, backend_for, ops_for
from unetlab.frameworks.contract import Backend, Ops, missing_members
from unetlab.frameworks.jittor.einops import JittorBackend
from unetlab.registry import PluginSelection, Registry, make_plugin_manager

from tiny import PARITY_MODEL


@pytest.mark.parametrize("protocol, module_for", [(Ops, ops_for), (Backend, backend_for)])
def test_both_frameworks_fulfil_the_protocols_with_the_same_parameters(protocol, module_for):
    modules = {fw: module_for(fw) for fw in FRAMEWORKS}
    for fw, module in modules.items():
        assert missing_members(module, protocol) == [], fw
        assert module.NAME == fw
    for name, member in inspect.getmembers(protocol, inspect.isfunction):
        if name.startswith("_"):
            continue
        expected = [p for p in inspect.signature(member).parameters if p != "self"]
        for fw, module in modules.items():
            assert list(inspect.signature(getattr(module, name)).parameters) == expected, (fw, name)


def test_every_block_of_a_built_model_is_a_block():
    model = build_model({**PARITY_MODEL, "blocks": {"norm": "rmsnorm"}}, "torch")
    blocks = [model.temb, model.down[0].block[0], model.down[0].downsample, model.up[1].upsample,
              model.mid.attn_1, model.norm_out, model.mid.block_1.norm1]
    for block in blocks:
        assert isinstance(block, Block), type(block)
        assert isinstance(type(block).takes_time_embedding, bool)


# --- one calling path ----------------------------------------------------------------------

CALLS: list[tuple[str, bool]] = []


@unetlab.portable(frameworks=("torch",))
def Probe(ops):
    """A block for any slot that records whether it was given the time embedding."""

    class Probe(ops.Module):
        takes_time_embedding = True

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.proj = ops.Conv2d(in_channels, out_channels, 1)

        def forward(self, x, emb=None):
            CALLS.append((type(self).__name__, emb is not None))
            return self.proj(x)

    return Probe


@unetlab.portable(frameworks=("torch",))
def PlainProbe(ops):
    class PlainProbe(Probe.of(ops)):
        takes_time_embedding = False

    return PlainProbe


class _Probes:
    @unetlab.hookimpl
    def unetlab_blocks(self):
        return [
            BlockDef("resblock", "plain_probe", PlainProbe),
            BlockDef("attention", "probe", Probe),
            BlockDef("norm", "probe", Probe),
        ]


def test_every_slot_gets_the_time_embedding_exactly_when_its_block_takes_it(make_tiny_spec):
    registry = Registry(make_plugin_manager(extra_plugins=[_Probes()], selection=PluginSelection(autoload=False)))
    spec = resolve_model_spec({**PARITY_MODEL, "blocks": {"resblock": "plain_probe", "attention": "probe",
                                                           "norm": "probe"}}, registry=registry)
    model = build_model(spec, "torch")
    CALLS.clear()
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 8), torch.tensor([4]))
    # resblocks (they take none) get none; attention and the output norm (they take it) get it
    assert ("PlainProbe", False) in CALLS and ("PlainProbe", True) not in CALLS
    # attention at 4x4: one down, one in the middle, two up; then the output norm
    assert CALLS.count(("Probe", True)) == 4 + 1
    assert ("Probe", False) not in CALLS


# --- the norm slot -------------------------------------------------------------------------

def test_rmsnorm_normalises_each_pixel_over_its_channels():
    from unetlab.frameworks import torch_ops

    ctx = BuildContext(torch_ops, emb_channels=8, dropout=0.0, norm_groups=4, norm_eps=1e-6)
    norm = ChannelRMSNorm.torch(ctx, 6, 6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
        x = np.random.default_rng(0).standard_normal((2, 6, 3, 3)).astype(np.float32)
        out = norm(torch.from_numpy(x)).numpy()
    expected = x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + 1e-6) * np.arange(1.0, 7.0).reshape(1, 6, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_the_norm_slot_reaches_every_residual_and_attention_block():
    model = build_model({**PARITY_MODEL, "blocks": {"norm": "rmsnorm"}}, "torch")
    norms = [n for n, m in model.named_modules() if isinstance(m, ChannelRMSNorm.torch)]
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert {"norm_out", "mid.block_1.norm1", "mid.block_1.norm2", "mid.attn_1.norm"} <= set(norms)
    assert model.unetlab_config["blocks"]["norm"] == {"name": "rmsnorm"}
    default = build_model(PARITY_MODEL, "torch")
    assert default.unetlab_config["blocks"]["norm"] == {"name": "groupnorm"}
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in default.parameters())


def test_the_norm_is_model_wide(make_tiny_spec):
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(level_blocks={0: {"norm": "rmsnorm"}}))
    assert str(info.value) == "model.level_blocks.0.norm: the norm block is model-wide, not per level"


# --- einops on Jittor arrays ---------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_einops_rearrange_and_reduce_in_both_frameworks(framework):
    backend = backend_for(framework)
    a = np.random.default_rng(1).standard_normal((2, 6, 3, 4)).astype(np.float32)
    x = backend.tensor(a)
    if framework == "jittor":
        assert isinstance(einops._backends.get_backend(x), JittorBackend)
    pattern = "b (heads c) h w -> b heads (h w) c"
    np.testing.assert_array_equal(backend.numpy(einops.rearrange(x, pattern, heads=2)),
                                  einops.rearrange(a, pattern, heads=2))
    for op in ("mean", "sum", "max", "min"):
        np.testing.assert_allclose(backend.numpy(einops.reduce(x, "b c h w -> b 1 h w", op)),
                                   einops.reduce(a, "b c h w -> b 1 h w", op), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(backend.numpy(einops.repeat(x, "b c h w -> b c h w r", r=2)),
                                  einops.repeat(a, "b c h w -> b c h w r", r=2))
