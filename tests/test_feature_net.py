"""The trained feature networks: held-out accuracy, determinism, the cache, any image size."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from unetlab.data import digits, labelled_shapes, shapes
from unetlab.errors import UnetlabError
from unetlab.metrics import feature_net
from unetlab.metrics.feature_net import RECIPES, accuracy, labelled_split, load_or_train, train_classifier
from unetlab.sampling import to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shape_labels_name_the_shape_drawn_and_leave_the_images_unchanged():
    images, labels = labelled_shapes(16, 64, seed=5)
    assert np.array_equal(images, shapes(16, 64, seed=5))
    assert set(labels) == {0, 1}
    for img, label in zip(to_uint8(images), labels):
        colours, inverse, counts = np.unique(img.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True)
        assert len(colours) == 2  # a background and a shape, the shape the smaller (under half the image)
        fg = (inverse.reshape(16, 16) == counts.argmin())
        rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
        box = fg[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert (box.mean() == 1.0) == (label == 1)  # a square fills its bounding box, a disc does not


@pytest.mark.slow
def test_digits_network_reaches_97_percent_on_held_out_digits_and_is_cached(feature_net_cache):
    net = load_or_train("digits")
    assert net.accuracy >= 0.97
    assert net.path == feature_net_cache / "features" / "digits-16px-1ch-v1.npz" and net.path.is_file()
    with np.load(net.path) as f:
        stored = json.loads(str(f["meta"]))
    assert stored["held_out_accuracy"] == net.accuracy and stored["dataset"] == "digits"
    _, _, x_test, y_test = labelled_split(RECIPES["digits"])
    assert accuracy(net.model, x_test, y_test, RECIPES["digits"]) == net.accuracy
    # the same held-out digits at 32x32 in RGB are resized and averaged to the network's input
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    _, index = train_test_split(np.arange(len(labels)), test_size=feature_net.DIGITS_HELD_OUT, random_state=0,
                                stratify=labels)
    assert np.array_equal(labels[index], y_test)
    rgb = np.repeat(to_uint8(digits(32))[index[:100]], 3, axis=-1)
    assert accuracy(net.model, rgb, y_test[:100], RECIPES["digits"]) >= 0.95
    feats = net.features(rgb)
    assert feats.shape == (100, feature_net.FEATURES) and np.isfinite(feats).all()
    assert load_or_train("digits") is net  # loaded once per process


@pytest.mark.slow
def test_shapes_network_tells_discs_from_squares():
    net = load_or_train("shapes")
    assert net.accuracy >= 0.95
    assert net.features(to_uint8(shapes(32, 8, seed=1))).shape == (8, feature_net.FEATURES)


def test_training_is_deterministic_and_the_seed_matters():
    recipe = RECIPES["digits"]
    first, _, scale = train_classifier(recipe, epochs=1, limit=256)
    again, _, scale_again = train_classifier(recipe, epochs=1, limit=256)
    other, _, _ = train_classifier(feature_net.Recipe(**{**recipe.__dict__, "seed": 1}), epochs=1, limit=256)
    a, b, c = first.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and scale == scale_again
    assert not all(torch.equal(a[k], c[k]) for k in a)


def quick_training(monkeypatch):
    """Retraining in these tests: one short epoch (the recipe's own takes seconds)."""
    real = feature_net.train_classifier
    monkeypatch.setattr(feature_net, "train_classifier", lambda recipe: real(recipe, epochs=1, limit=256))
    feature_net.forget_loaded()


@pytest.mark.parametrize("damage", ["garbage", "another network"])
def test_a_damaged_cached_network_is_retrained_with_a_warning_naming_it(tmp_path, monkeypatch, damage):
    quick_training(monkeypatch)
    path = tmp_path / "features" / RECIPES["digits"].file_name
    path.parent.mkdir()
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    else:
        np.savez(path, meta=np.array(json.dumps({"dataset": "shapes", "version": 1})))
    with pytest.warns(UserWarning) as caught:
        net = load_or_train("digits", cache_dir=tmp_path)
    message = str(caught[0].message)
    assert message.startswith(f"{path}: not a readable digits feature network (") and "\n" not in message
    assert message.endswith("retraining it")
    feature_net.forget_loaded()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file reads back without a warning
        again = load_or_train("digits", cache_dir=tmp_path)
    assert again.meta == net.meta and again.path == path
    feature_net.forget_loaded()


def test_an_unwritable_cache_keeps_the_network_in_memory(tmp_path, monkeypatch):
    quick_training(monkeypatch)
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache folder should be
    with pytest.warns(UserWarning, match="cannot cache the digits feature network"):
        net = load_or_train("digits", cache_dir=blocked)
    assert net.path is None and net.features(to_uint8(digits(16)[:3])).shape == (3, feature_net.FEATURES)
    feature_net.forget_loaded()


def test_datasets_without_a_network_are_named():
    with pytest.raises(UnetlabError, match="no trained feature network for 'cifar10' \\(those with one: digits, shapes\\)"):
        load_or_train("cifar10")
