"""``unetlab.load_run``: a run folder as a model with its weights, its spec and its config."""
from __future__ import annotations

import numpy as np
import pytest

import unetlab
from unetlab.run import checkpoints, rundir
from unetlab.run.trainer import train_run
from unetlab.sampling import generate

from conftest import tiny_digits_spec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("load_run") / "run"
    train_run(tiny_digits_spec(4), run_dir, "torch", seed=3, progress=False)
    return run_dir


def assert_same_weights(model, arrays):
    got = unetlab.get_weights(model)
    assert sorted(got) == sorted(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.slow
def test_a_run_loads_with_its_ema_weights_spec_and_identity(trained):
    loaded = unetlab.load_run(trained)
    assert loaded.framework == "torch" and loaded.seed == 3
    assert loaded.weights_path == trained / rundir.EMA
    assert loaded.spec["train"]["steps"] == 4 and loaded.spec["model"]["base_channels"] == 16
    assert_same_weights(loaded.model, checkpoints.load_arrays(trained / rundir.EMA))
    images, _ = generate(loaded.model, loaded.spec, 2, seed=0)
    assert images.shape == (2, 1, 16, 16) and np.isfinite(images).all()


@pytest.mark.slow
def test_without_ema_the_last_training_weights_load(trained):
    loaded = unetlab.load_run(trained, ema=False)
    assert loaded.weights_path == trained / rundir.LAST
    last = checkpoints.split_prefix(checkpoints.load_arrays(trained / rundir.LAST), "model")
    assert_same_weights(loaded.model, last)
    ema = checkpoints.load_arrays(trained / rundir.EMA)
    assert any(not np.array_equal(last[k], ema[k]) for k in ema)  # the two are different weights


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "no such run folder"),
    (lambda tmp: tmp, "not a run folder (no config.json)"),
])
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, make, message):
    with pytest.raises(unetlab.UnetlabError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        unetlab.load_run(make(tmp_path))
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_a_run_without_weights_yet_is_one_line(trained, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / rundir.CONFIG).write_bytes((trained / rundir.CONFIG).read_bytes())
    with pytest.raises(unetlab.UnetlabError, match="no weights yet"):
        unetlab.load_run(fresh)
