"""Schedules and samplers: DDIM against an independent reading of Song et al. (2021, eq. 12),
DDIM(eta=1, all T steps) == DDPM ancestral sampling, determinism, and both frameworks."""

import numpy as np
import pytest
import torch

from unetlab import UnetlabError
from unetlab.diffusion import (ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, make_betas,
                               noisy_inputs, sample_timesteps)
from unetlab.frameworks.jittor.runtime import import_jittor

from tiny import rel_err

T = 60
BETAS = make_betas("linear", T, 1e-4, 0.2)  # a short schedule with the same shape


def toy_eps(x, t):
    """A fixed 'model': smooth, t-dependent, framework-agnostic arithmetic."""
    tf = t.float() if hasattr(t, "float") and not hasattr(t, "float32") else t.float32()
    return x * 0.3 + (tf.reshape(-1, 1, 1, 1) / T) * 0.1


def independent_ddim(x, betas, seq, eta, noises):
    """The DDIM update written from the paper's equation 12, in float64 numpy."""
    abar = np.cumprod(1 - betas)
    prev = [-1] + seq[:-1]
    for i, (t, tp) in enumerate(zip(reversed(seq), reversed(prev))):
        a, ap = abar[t], (abar[tp] if tp >= 0 else 1.0)
        eps = x * 0.3 + (t / T) * 0.1
        pred_x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        sigma = eta * np.sqrt((1 - ap) / (1 - a)) * np.sqrt(1 - a / ap)
        x = np.sqrt(ap) * pred_x0 + np.sqrt(1 - ap - sigma ** 2) * eps + sigma * noises[i]
    return x


def test_schedules():
    lin = make_betas("linear", 1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02) and len(lin) == 1000
    quad = make_betas("quadratic", 1000)
    assert quad[0] == pytest.approx(1e-4) and quad[-1] == pytest.approx(0.02) and quad[500] < lin[500]
    cos = make_betas("cosine", 1000)
    assert np.all(cos > 0) and cos.max() <= 0.999 and np.all(np.diff(cos[:900]) > 0)
    with pytest.raises(UnetlabError, match="unknown schedule 'sigmoid'"):
        make_betas("sigmoid", 10)


def test_timestep_selection_follows_the_ddim_code():
    assert ddim_timesteps(1000, 10, "uniform") == list(range(0, 1000, 100))
    quad = ddim_timesteps(1000, 10, "quadratic")
    assert quad == [int(s) for s in np.linspace(0, np.sqrt(800), 10) ** 2]
    assert quad[0] == 0 and quad[-1] == 800
    with pytest.raises(UnetlabError, match="DDIM steps must be in 1..1000"):
        ddim_timesteps(1000, 0)


@pytest.mark.parametrize("skip", ["uniform", "quadratic"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_independent_implementation(skip, eta):
    steps = 12
    seq = ddim_timesteps(T, steps, skip)
    rng = np.random.default_rng(0)
    x_T = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    noises = [rng.standard_normal(x_T.shape).astype(np.float32) for _ in seq]
    expected = independent_ddim(x_T.astype(np.float64), BETAS, seq, eta, noises)
    got = ddim_sample(toy_eps, torch.from_numpy(x_T), betas=BETAS, steps=steps, eta=eta, skip=skip,
                      noises=[torch.from_numpy(n) for n in noises]).numpy()
    assert rel_err(expected, got) <= 1e-5


def test_ddim_eta1_all_steps_equals_ddpm_ancestral():
    rng = np.random.default_rng(1)
    x_T = torch.from_numpy(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    noises = [torch.from_numpy(rng.standard_normal((2, 3, 4, 4)).astype(np.float32)) for _ in range(T)]
    a = ddim_sample(toy_eps, x_T, betas=BETAS, steps=T, eta=1.0, noises=noises).numpy()
    b = ddpm_sample(toy_eps, x_T, betas=BETAS, noises=noises, variance="fixedsmall").numpy()
    assert rel_err(b, a) <= 1e-5
    c = ddpm_sample(toy_eps, x_T, betas=BETAS, noises=noises, variance="fixedlarge").numpy()
    assert rel_err(b, c) > 1e-3  # the other variance is a different sampler


def test_ddim_eta0_is_deterministic_and_needs_no_noise():
    x_T = torch.randn(2, 3, 4, 4)
    a = ddim_sample(toy_eps, x_T, betas=BETAS, steps=10)
    torch.manual_seed(123)
    b = ddim_sample(toy_eps, x_T, betas=BETAS, steps=10)
    assert torch.equal(a, b)
    with pytest.raises(UnetlabError, match="eta > 0 needs noise"):
        ddim_step(x_T, x_T, 0.5, 0.9, 1.0, None)


@pytest.mark.slow
def test_ddim_runs_the_same_in_jittor():
    jt = import_jittor()
    rng = np.random.default_rng(2)
    x_T = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    noises = [rng.standard_normal(x_T.shape).astype(np.float32) for _ in range(10)]
    t = ddim_sample(toy_eps, torch.from_numpy(x_T), betas=BETAS, steps=10, eta=0.5,
                    noises=[torch.from_numpy(n) for n in noises]).numpy()
    j = ddim_sample(toy_eps, jt.array(x_T), betas=BETAS, steps=10, eta=0.5,
                    noises=[jt.array(n) for n in noises]).numpy()
    assert rel_err(t, j) <= 1e-5


def test_training_targets():
    rng = np.random.default_rng(3)
    x0, noise = rng.standard_normal((4, 1, 2, 2)), rng.standard_normal((4, 1, 2, 2))
    a = np.array([0.9, 0.5, 0.1, 0.99]).reshape(-1, 1, 1, 1)
    sa, s1 = np.sqrt(a), np.sqrt(1 - a)
    x_t, eps = noisy_inputs(x0, noise, sa, s1, "eps")
    np.testing.assert_allclose(x_t, sa * x0 + s1 * noise)
    np.testing.assert_array_equal(eps, noise)
    _, v = noisy_inputs(x0, noise, sa, s1, "v")
    np.testing.assert_allclose(sa * x_t - s1 * v, x0)  # x0 recovered from v
    _, x0_target = noisy_inputs(x0, noise, sa, s1, "x0")
    np.testing.assert_array_equal(x0_target, x0)


def test_antithetic_timesteps_pair_up():
    t = sample_timesteps(np.random.default_rng(0), 8, 1000, "antithetic")
    np.testing.assert_array_equal(t[:4] + t[4:], np.full(4, 999))
    u = sample_timesteps(np.random.default_rng(0), 10000, 1000)
    assert u.min() >= 0 and u.max() <= 999 and abs(u.mean() - 499.5) < 15
