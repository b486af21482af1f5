"""Jittor's batched product on the CPU (one oneDNN product per item, forward and backward) and
the attention built on it, against PyTorch."""
import numpy as np
import pytest
import torch

from unetlab.frameworks.jittor.runtime import import_jittor

from tiny import rel_err

jt = import_jittor()
from unetlab.frameworks import jittor_ops  # noqa: E402
from unetlab.frameworks.jittor.matmul import batched_matmul  # noqa: E402

TOL = 1e-5  # fp32, relative to the largest value


@pytest.mark.parametrize("itemwise", [True, False], ids=["itemwise (CPU)", "batched (GPU)"])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_batched_matmul_matches_torch_with_gradients(transpose_b, itemwise):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7, 4), dtype=np.float32)
    b = rng.standard_normal((5, 6, 4) if transpose_b else (5, 4, 6), dtype=np.float32)
    g = rng.standard_normal((5, 7, 6), dtype=np.float32)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ref = ta @ (tb.transpose(1, 2) if transpose_b else tb)
    (ref * torch.from_numpy(g)).sum().backward()
    ja, jb = jt.array(a), jt.array(b)
    out = batched_matmul(ja, jb, transpose_b=transpose_b, itemwise=itemwise)
    da, db = jt.grad((out * jt.array(g)).sum(), [ja, jb])
    assert out.shape == [5, 7, 6]
    assert rel_err(ref.detach().numpy(), out.numpy()) < TOL
    assert rel_err(ta.grad.numpy(), da.numpy()) < TOL
    assert rel_err(tb.grad.numpy(), db.numpy()) < TOL


def test_attention_matches_torch_sdpa_with_gradients():
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((3, 2, 16, 8), dtype=np.float32) for _ in range(4))
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    (ref * torch.from_numpy(g)).sum().backward()
    jq, jk, jv = (jt.array(x) for x in (q, k, v))
    out = jittor_ops.attention(jq, jk, jv)
    grads = jt.grad((out * jt.array(g)).sum(), [jq, jk, jv])
    assert rel_err(ref.detach().numpy(), out.numpy()) < TOL
    for t, j in zip((tq, tk, tv), grads):
        assert rel_err(t.grad.numpy(), j.numpy()) < TOL
