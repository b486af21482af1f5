"""Permutations as gathers (the GPU path without cuTT), checked on the CPU against Jittor's own."""
import numpy as np
import pytest

from unetlab.frameworks import jittor_backend
from unetlab.frameworks.jittor.layout import permute
from unetlab.frameworks.jittor.matmul import batched_matmul

jt = jittor_backend.jt


@pytest.mark.parametrize("axes", [(0, 1, 3, 2), (0, 2, 1), (1, 0, 2, 3), (3, 1, 0, 2)])
def test_gather_permute_matches_jittor_forward_and_gradient(axes):
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 5)[:len(axes)]
    x_np = rng.standard_normal(shape).astype(np.float32)
    w_np = rng.standard_normal([shape[a] for a in axes]).astype(np.float32)
    outs, grads = [], []
    for gather in (False, True):
        x = jt.array(x_np)
        y = permute(x, axes, gather=gather)
        outs.append(y.numpy())
        grads.append(jt.grad((y * jt.array(w_np)).sum(), x).numpy())
    np.testing.assert_array_equal(outs[1], np.transpose(x_np, axes))
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(grads[1], grads[0])


def test_permute_rejects_what_is_not_a_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        permute(jt.zeros((2, 3, 4)), (0, 0, 1))


def test_batched_product_with_transposed_operand_as_on_the_gpu():
    """The GPU path (one batched product, the transpose as a gather) equals the per-item one."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((3, 5, 4)).astype(np.float32) for _ in range(2))
    gpu_like = batched_matmul(jt.array(a), jt.array(b), transpose_b=True, itemwise=False)
    np.testing.assert_allclose(gpu_like.numpy(), a @ b.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


def test_einops_on_jittor_permutes_through_the_gather_path(monkeypatch):
    """einops' Jittor backend permutes with ``permute``, so rearranges stay on the GPU there."""
    import einops

    from unetlab.frameworks.jittor import layout as jittor_layout

    calls = []
    original = jittor_layout.permute
    monkeypatch.setattr(jittor_layout, "permute", lambda x, axes, gather=None: calls.append(tuple(axes))
                        or original(x, axes, gather=True))
    x_np = np.arange(2 * 6 * 2 * 2, dtype=np.float32).reshape(2, 6, 2, 2)
    out = einops.rearrange(jt.array(x_np), "b (h c) x y -> b h (x y) c", h=2)
    expected = x_np.reshape(2, 2, 3, 4).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert calls, "einops did not permute through jittor_layout.permute"
