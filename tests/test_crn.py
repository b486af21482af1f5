"""Common random numbers: variants of one seed share data order, timesteps and noise."""
import numpy as np
import pytest

from tiny import digits_run
from unetlab.run.distributed import framework_seed
from unetlab.errors import UnetlabError
from unetlab.run.trainer import Trainer


def _trainer(tmp_path, name, variant, seed=0, noise="host", crn=True, **model):
    spec = digits_run(4, noise=noise, crn=crn)
    spec["model"].update(model)
    return Trainer(spec, tmp_path / name, "torch", seed=seed, identity={"variant": variant})


def _draws(trainer, step):
    x0, t, noise = trainer._batch(step)
    return trainer.backend.numpy(x0), np.asarray(t), trainer.backend.numpy(noise)


def test_variants_of_one_seed_share_batches_timesteps_and_noise(tmp_path):
    a = _trainer(tmp_path, "a", "attn")
    b = _trainer(tmp_path, "b", "no_attn", attn_resolutions=[], base_channels=16)
    for step in (0, 3):
        for x, y in zip(_draws(a, step), _draws(b, step)):
            np.testing.assert_array_equal(x, y)
    other_seed = _trainer(tmp_path, "c", "attn", seed=1)
    assert not np.array_equal(_draws(a, 0)[1], _draws(other_seed, 0)[1])


def test_device_noise_is_shared_too(tmp_path):
    a = _trainer(tmp_path, "a", "attn", noise="device")
    b = _trainer(tmp_path, "b", "no_attn", noise="device", attn_resolutions=[])
    noises = []
    for trainer in (a, b):  # as train_step does: the framework RNG seeded from (seed, step)
        trainer.step = 2
        trainer.backend.seed(framework_seed(trainer.stream_seed, 2, 0))
        noises.append(_draws(trainer, 2)[2])
    np.testing.assert_array_equal(*noises)


def test_crn_off_makes_the_variants_independent_and_keeps_the_recorded_seed(tmp_path):
    a = _trainer(tmp_path, "a", "attn", crn=False)
    b = _trainer(tmp_path, "b", "no_attn", crn=False)
    same = _trainer(tmp_path, "c", "attn", crn=False)
    assert a.seed == b.seed == 0 and a.stream_seed != b.stream_seed
    assert not np.array_equal(_draws(a, 0)[1], _draws(b, 0)[1])
    for x, y in zip(_draws(a, 1), _draws(same, 1)):  # a function of (seed, variant): resumable
        np.testing.assert_array_equal(x, y)


def test_crn_must_be_a_bool(tmp_path):
    with pytest.raises(UnetlabError, match="crn"):
        _trainer(tmp_path, "a", "attn", crn="sometimes")


def test_stochastic_sampling_noise_is_a_function_of_the_seed():
    from tiny import DIGITS_MODEL
    from unetlab.model import build_model
    from unetlab.sampling import generate
    from unetlab.spec import resolve_run_spec

    spec = resolve_run_spec({**digits_run(1), "sample": {"sampler": "ddim", "steps": 3, "eta": 1.0}})
    model = build_model(DIGITS_MODEL, "torch", seed=0)
    first, _ = generate(model, spec, 2, seed=5)
    model(*_probe())  # any draw from the framework RNG in between
    again, _ = generate(model, spec, 2, seed=5)
    other, _ = generate(model, spec, 2, seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def _probe():
    import torch

    return torch.randn(1, 1, 16, 16), torch.randint(0, 10, (1,))
