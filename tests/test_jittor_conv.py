"""Jittor convolution as im2col + one matrix product (the path used on GPUs without cuDNN):
outputs and gradients against PyTorch's conv2d, batch splitting, and the mode switch."""
import numpy as np
import pytest
import torch

from unetlab import build_model
from unetlab.errors import UnetlabError
from unetlab.frameworks.jittor.runtime import import_jittor

from tiny import PARITY_MODEL, rel_err

jt = import_jittor()
from unetlab.frameworks.jittor import conv as jittor_conv  # noqa: E402

TOL = 1e-5  # fp32, relative to the largest value


@pytest.mark.parametrize("n,c,size,co,k,stride,pad", [
    (3, 5, 9, 4, 3, 1, 1),   # DDPM's 3x3 conv
    (2, 4, 8, 6, 3, 2, 0),   # DDPM's downsample (padding applied before)
    (2, 4, 8, 6, 3, 2, 1),   # symmetric stride-2 downsample
    (3, 6, 5, 7, 1, 1, 0),   # 1x1 (nin shortcut, attention projections)
    (2, 3, 7, 2, 4, 2, 1),   # even kernel, odd size
])
def test_gemm_conv_matches_torch_forward_and_gradients(n, c, size, co, k, stride, pad):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((n, c, size, size), dtype=np.float32), rng.standard_normal((co, c, k, k), dtype=np.float32)
    b = rng.standard_normal(co, dtype=np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad)
    gy = rng.standard_normal(tuple(ty.shape), dtype=np.float32)
    (ty * torch.from_numpy(gy)).sum().backward()
    jx, jw, jb = jt.array(x), jt.array(w), jt.array(b)
    jy = jittor_conv.conv2d_gemm(jx, jw, jb, stride, pad)
    assert tuple(jy.shape) == tuple(ty.shape)
    grads = jt.grad((jy * jt.array(gy)).sum(), [jx, jw, jb])
    assert rel_err(ty.detach().numpy(), jy.numpy()) < TOL
    for name, t, g in zip("xwb", (tx, tw, tb), grads):
        assert rel_err(t.grad.numpy(), g.numpy()) < TOL, name


def test_gemm_conv_splits_large_batches(monkeypatch):
    monkeypatch.setattr(jittor_conv, "MAX_PATCH_ELEMENTS", 3 * 9 * 36 * 2)  # two images at a time
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((5, 3, 6, 6), dtype=np.float32), rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert rel_err(ref, jittor_conv.conv2d_gemm(jt.array(x), jt.array(w), None, 1, 1).numpy()) < TOL


def test_model_in_gemm_mode_matches_jittor_mode(monkeypatch):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((2, 3, 8, 8), dtype=np.float32), np.array([3, 700])
    outs = {}
    for mode in ("jittor", "gemm"):
        monkeypatch.setenv("UNETLAB_JITTOR_CONV", mode)
        model = build_model(dict(PARITY_MODEL), "jittor", seed=0)
        model.eval()
        outs[mode] = model(jt.array(x), jt.array(t)).numpy()
    assert rel_err(outs["jittor"], outs["gemm"]) < TOL


def test_conv_mode_auto_uses_jittor_on_the_cpu_and_rejects_unknown_modes(monkeypatch):
    monkeypatch.delenv("UNETLAB_JITTOR_CONV", raising=False)
    assert jittor_conv.conv_mode() == ("gemm" if jt.flags.use_cuda else "jittor")
    monkeypatch.setenv("UNETLAB_JITTOR_CONV", "cudnn")
    with pytest.raises(UnetlabError, match="UNETLAB_JITTOR_CONV='cudnn': expected one of auto, jittor, gemm"):
        jittor_conv.conv_mode()


def test_gemm_conv_and_attention_run_under_jittor_mixed_precision():
    """Under Jittor's mixed precision a float32 product cannot be relayed to oneDNN/cuBLAS:
    convolutions and attention multiply in float16 there, and stay close to float32."""
    from unetlab.frameworks import jittor_ops

    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 5, 5), dtype=np.float32), rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    q, k, v = (jt.array(rng.standard_normal((2, 1, 16, 8), dtype=np.float32)) for _ in range(3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    ref_attn = jittor_ops.attention(q, k, v).numpy()
    with jt.flag_scope(auto_mixed_precision_level=5):
        y = jittor_conv.conv2d_gemm(jt.array(x), jt.array(w), jt.array(b), 1, 1)
        assert y.dtype == "float16"
        y = y.float32().numpy()
        attn = jittor_ops.attention(q, k, v, fp32_softmax=True).float32().numpy()
    assert rel_err(ref, y) < 5e-3  # float16 rounding
    assert rel_err(ref_attn, attn) < 5e-3
