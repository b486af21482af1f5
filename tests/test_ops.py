"""The ops vocabulary's elementwise functions and grouped convolutions: values against numpy and
scipy in both frameworks, and PyTorch/Jittor parity of forward and gradients through check_block."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import unetlab
from unetlab import BlockDef, Option
from unetlab.frameworks import FRAMEWORKS, backend_for, ops_for
from unetlab.registry import PluginSelection, Registry, make_plugin_manager
from unetlab.testing import check_block

X = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("op, expected", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("exp", np.exp),
    ("softmax", lambda x: scipy.special.softmax(x, axis=1)),
])
def test_elementwise_ops_compute_what_they_say(framework, op, expected):
    ops, backend = ops_for(framework), backend_for(framework)
    x = backend.tensor(X)
    y = getattr(ops, op)(x, 1) if op == "softmax" else getattr(ops, op)(x)
    np.testing.assert_allclose(backend.numpy(y), expected(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv2d_groups_has_the_grouped_weight_shape(framework, groups):
    conv = ops_for(framework).Conv2d(4, 8, 3, padding=1, groups=groups)
    assert tuple(conv.weight.shape) == (8, 4 // groups, 3, 3)
    y = conv(backend_for(framework).tensor(np.ones((1, 4, 5, 5), np.float32)))
    assert tuple(y.shape) == (1, 8, 5, 5)


@unetlab.portable
def OpProbe(ops):
    """A (grouped or depthwise) 3x3 conv followed by one of the new ops."""

    class OpProbe(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels, *, op="relu", groups=1):
            super().__init__()
            self.op = op
            self.conv = ops.Conv2d(in_channels, out_channels, 3, padding=1, groups=groups)

        def forward(self, x):
            h = self.conv(x)
            return ops.softmax(h, dim=1) if self.op == "softmax" else getattr(ops, self.op)(h * 0.5)

    return OpProbe


class _Probes:
    @unetlab.hookimpl
    def unetlab_blocks(self):
        return [BlockDef("norm", "op_probe", OpProbe,
                         (Option("op", str, "relu", choices=("relu", "exp", "softmax")), Option("groups", int, 1)),
                         "conv then an op", variations=({"groups": 4}, {"groups": 16}))]


def test_new_ops_and_grouped_and_depthwise_conv_match_forward_and_backward():
    registry = Registry(make_plugin_manager(extra_plugins=[_Probes()], selection=PluginSelection(autoload=False)))
    result = check_block("norm", "op_probe", registry=registry)
    labels = {e.options for e in result.errors}
    assert labels == {"defaults", "{'op': 'exp'}", "{'op': 'softmax'}", "{'groups': 4}", "{'groups': 16}"}
    assert {"output", "grad x", "grad conv.weight", "grad conv.bias"} == {e.tensor for e in result.errors}
