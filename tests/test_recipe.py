"""The DDIM training recipe: the l2 loss in both frameworks, the ddim-cifar10 specs, and one
step of the recipe against an independent plain-PyTorch step."""
import numpy as np
import pytest
import torch
import yaml

from unetlab import UnetlabError
from unetlab.diffusion import make_betas, training_loss
from unetlab.frameworks.jittor.runtime import import_jittor
from unetlab.model import build_model
from unetlab.spec import resolve_run_spec
from unetlab.run.trainer import Trainer
from unetlab.weights import get_weights

from conftest import REPO_ROOT
from tiny import PARITY_MODEL

BETAS = make_betas("linear", 1000)
ABAR = np.cumprod(1.0 - BETAS)


def batch(n=4, c=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (n, c, size, size)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    return x0, rng.integers(0, 1000, n), noise


def numpy_loss(out_of_xt, x0, t, noise, loss):
    """The reference: x_t by hand, then the squared error summed per image (l2) or averaged."""
    sa = np.sqrt(ABAR[t]).reshape(-1, 1, 1, 1)
    s1 = np.sqrt(1.0 - ABAR[t]).reshape(-1, 1, 1, 1)
    x_t = sa * x0.astype(np.float64) + s1 * noise
    sq = (out_of_xt(x_t) - noise) ** 2
    return sq.reshape(len(x0), -1).sum(axis=1).mean() if loss == "l2" else sq.mean()


def to_framework(framework, array):
    return torch.from_numpy(array) if framework == "torch" else import_jittor().array(array)


@pytest.mark.parametrize("framework", ["torch", "jittor"])
@pytest.mark.parametrize("loss", ["l2", "mse"])
def test_training_loss_of_a_known_network_equals_numpy(framework, loss):
    x0, t, noise = batch()
    got = training_loss(lambda x, t: x * 0.5, to_framework(framework, x0), t, to_framework(framework, noise),
                        betas=BETAS, loss=loss)
    want = numpy_loss(lambda x_t: 0.5 * x_t, x0, t, noise, loss)
    assert float(got.item()) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("framework", ["torch", "jittor"])
def test_training_loss_l2_of_a_unet_equals_numpy(framework):
    """Same weights, same batch: l2 is the per-image sum of squares, averaged over the batch
    (C*H*W = 192 times the mse here)."""
    from unetlab.frameworks import backend_for

    model = build_model(dict(PARITY_MODEL), framework, seed=1)
    backend = backend_for(framework)
    backend.set_train(model, False)
    x0, t, noise = batch(seed=2)
    x0_t, noise_t = to_framework(framework, x0), to_framework(framework, noise)
    got = float(training_loss(model, x0_t, t, noise_t, betas=BETAS, loss="l2").item())

    def network(x_t):
        out = model(to_framework(framework, x_t.astype(np.float32)), to_framework(framework, t.astype(np.int64)))
        return backend.numpy(out).astype(np.float64)

    assert got == pytest.approx(numpy_loss(network, x0, t, noise, "l2"), rel=1e-5)
    mse = float(training_loss(model, x0_t, t, noise_t, betas=BETAS, loss="mse").item())
    assert got == pytest.approx(mse * x0[0].size, rel=1e-5)


def test_training_loss_refuses_bad_arguments():
    x0, t, noise = batch()
    with pytest.raises(UnetlabError, match="unknown loss 'l1' \\(losses: mse, l2\\)"):
        training_loss(lambda x, t: x, torch.from_numpy(x0), t, torch.from_numpy(noise), betas=BETAS, loss="l1")
    with pytest.raises(UnetlabError, match="3 timesteps for a batch of 4"):
        training_loss(lambda x, t: x, torch.from_numpy(x0), t[:3], torch.from_numpy(noise), betas=BETAS)
    with pytest.raises(UnetlabError, match="diffusion.loss"):
        resolve_run_spec({"diffusion": {"loss": "l1"}})
    with pytest.raises(UnetlabError, match="train.adam_eps: must be positive"):
        resolve_run_spec({"train": {"adam_eps": 0.0}})
    with pytest.raises(UnetlabError, match="train.grad_clip: must be positive"):
        resolve_run_spec({"train": {"grad_clip": -1.0}})


def load_spec(name):
    return yaml.safe_load((REPO_ROOT / "specs" / name).read_text())


def test_ddim_cifar10_specs_are_ermongroup_ddims_config_with_two_budgets():
    spec = resolve_run_spec(load_spec("ddim-cifar10.yaml"))
    train, diffusion = spec["train"], spec["diffusion"]
    assert (train["optimizer"], train["lr"], train["adam_eps"], train["weight_decay"]) == ("adam", 2e-4, 1e-8, 0.0)
    assert (train["grad_clip"], train["ema_decay"], train["batch_size"]) == (1.0, 0.9999, 128)
    assert (train["warmup_steps"], train["steps"]) == (0, 5_000_000)
    assert (diffusion["loss"], diffusion["timestep_sampling"], diffusion["T"]) == ("l2", "antithetic", 1000)
    assert spec["data"]["flip"] and spec["model"]["dropout"] == 0.1
    assert spec["model"]["base_channels"] == 128 and spec["model"]["channel_mult"] == [1, 2, 2, 2]
    ddpm_budget = resolve_run_spec(load_spec("ddim-cifar10-800k.yaml"))
    assert (ddpm_budget["train"]["steps"], ddpm_budget["train"]["warmup_steps"]) == (800_000, 5000)
    for section in ("train",):
        for key in ("steps", "warmup_steps"):
            ddpm_budget[section].pop(key), spec[section].pop(key)
    assert ddpm_budget == spec  # the budget is the only difference


def recipe_on_small_data():
    """ddim-cifar10's recipe (every train and diffusion key) on a small model and batch."""
    spec = load_spec("ddim-cifar10.yaml")
    spec["model"] = {**PARITY_MODEL, "dropout": 0.1}
    spec["data"] = {"dataset": "shapes", "num_images": 64, "flip": True}
    spec["train"].update({"batch_size": 8, "steps": 1, "channels_last": False})
    spec["sample"] = {"steps": 2, "num_images": 4}
    spec["eval"] = {}
    return spec


def reference_steps(spec, batches, steps, clip=1.0):
    """``steps`` steps of the recipe written out in plain PyTorch (float64 optimizer state):
    the batch and timesteps from the run's seeds, l2 loss, global-norm clip, Adam, EMA.
    Returns (losses, pre-clip norms, weights, EMA weights)."""
    net = build_model(spec["model"], "torch", seed=0).train()
    params = dict(net.named_parameters())
    w = {k: p.detach().double().clone() for k, p in params.items()}
    ema = {k: v.clone() for k, v in w.items()}
    m = {k: torch.zeros_like(v) for k, v in w.items()}
    v = {k: torch.zeros_like(x) for k, x in w.items()}
    lr, b1, b2, eps, losses, norms = 2e-4, 0.9, 0.999, 1e-8, [], []
    for step in range(steps):
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(w[k])
        x0 = torch.from_numpy(batches(step))
        rng = np.random.default_rng([0, 4, step])
        half = rng.integers(0, 1000, size=len(x0) // 2)
        t = np.concatenate([half, 999 - half])
        noise = torch.from_numpy(rng.standard_normal(tuple(x0.shape), dtype=np.float32))
        sa = torch.from_numpy(np.sqrt(ABAR[t]).astype(np.float32)).view(-1, 1, 1, 1)
        s1 = torch.from_numpy(np.sqrt(1 - ABAR[t]).astype(np.float32)).view(-1, 1, 1, 1)
        torch.manual_seed(step)  # the trainer seeds dropout with seed * 1_000_003 + step
        loss = ((net(sa * x0 + s1 * noise, torch.from_numpy(t)) - noise) ** 2).sum(dim=(1, 2, 3)).mean()
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))
        coef = min(1.0, clip / (norm + 1e-6)) if clip else 1.0
        n = step + 1
        for k, g in grads.items():
            g = g.double() * coef
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            w[k] = w[k] - lr / (1 - b1 ** n) * m[k] / (torch.sqrt(v[k]) / (1 - b2 ** n) ** 0.5 + eps)
            ema[k] = 0.9999 * ema[k] + 1e-4 * w[k]
        losses.append(float(loss))
        norms.append(norm)
    return losses, norms, w, ema


def test_steps_of_the_recipe_equal_a_plain_pytorch_implementation(tmp_path):
    """Loss, then weights after clip + Adam (and the EMA), within 1e-5, for the first two steps
    (one step alone would hardly test the clip: Adam's first update is lr * sign(g))."""
    spec = recipe_on_small_data()
    trainer = Trainer(spec, tmp_path / "run", "torch", seed=0)
    got_losses, got_norms = [], []
    for _ in range(2):
        loss, grad_norm = trainer.train_step()
        got_losses.append(float(loss.detach()))
        got_norms.append(float(grad_norm))
    w, ema = get_weights(trainer.model), get_weights(trainer.ema)
    losses, norms, want_w, want_ema = reference_steps(spec, trainer.batches, 2)
    assert min(norms) > 1.0  # the clip acts on both steps
    np.testing.assert_allclose(got_losses, losses, rtol=1e-5)
    np.testing.assert_allclose(got_norms, norms, rtol=1e-5)
    for name in want_w:
        np.testing.assert_allclose(w[name], want_w[name].numpy(), rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(ema[name], want_ema[name].numpy(), rtol=0, atol=1e-5, err_msg=name)
    # and the comparison can tell: without the clip the weights come out elsewhere
    _, _, unclipped, _ = reference_steps(spec, trainer.batches, 2, clip=None)
    assert max(float((unclipped[k] - want_w[k]).abs().max()) for k in want_w) > 1e-5
