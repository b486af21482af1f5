"""FID through clean-fid (offline cache), FD-small, FD in trained features, and scoring runs and image folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetlab.run import jsonfiles, rundir
from unetlab.sweeps.ablation import parse_ablation
from unetlab.cli import main
from unetlab.data import digits
from unetlab.errors import UnetlabError
from unetlab.metrics import fid
from unetlab.sampling import save_samples, to_uint8
from unetlab.run.worker import work
from unetlab.run.scoring import score_run

from conftest import tiny_digits_spec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    """300 training digits as uint8 (N, 16, 16, 1), and the same digits 0.5 brighter."""
    x = digits(16)[:300]
    return to_uint8(x), to_uint8(np.clip(x + 0.5, -1, 1))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run whose worker measured FD-digits on 64 samples."""
    base = tiny_digits_spec(10)
    base["eval"] = {"fid_samples": 64, "reference": "dataset"}
    run = parse_ablation({"name": "f", "base": base}).runs[0]
    path = tmp_path_factory.mktemp("fid") / run.name
    jsonfiles.write_json(path / rundir.CONFIG, run.config())
    work(path)
    return path


def test_small_extractor_is_deterministic(images):
    real, _ = images
    a = fid.features(real, fid.small_extractor())
    b = fid.features(real, fid.small_extractor())
    assert a.shape == (300, 64) and np.array_equal(a, b)


def test_fd_small_is_zero_for_the_same_images_and_clearly_positive_for_shifted_ones(images):
    real, shifted = images
    moved = fid.fd_small(shifted, real)
    same = fid.fd_small(real, real)
    assert moved > 0.5
    assert abs(same) < 1e-3 * moved
    assert fid.fd_small(real[:150], real[150:]) < moved / 10  # two halves of one set: close


def test_missing_inception_files_fail_in_one_line_naming_what_goes_where(tmp_path, images):
    with pytest.raises(UnetlabError) as exc:
        fid.fid_cifar10(images[0], "clean", str(tmp_path / "cache"))
    message = str(exc.value)
    assert "\n" not in message
    assert f"{tmp_path / 'cache' / 'inception-2015-12-05.pt'}" in message
    assert f"{tmp_path / 'cache' / 'cifar10_clean_train_32.npz'}" in message
    assert "https://" in message
    assert not (tmp_path / "cache").exists()


def _stand_in_inception_cache(tmp_path, real):
    """A cache folder holding a stand-in Inception weights file and CIFAR-10 statistics computed
    from ``real`` in the small network's features; returns (folder, that network, the
    reference features)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "inception-2015-12-05.pt").write_bytes(b"stand-in")
    small = fid.small_extractor()
    ref = fid.features(real, small)
    np.savez(cache / "cifar10_legacy_tensorflow_train_32.npz", mu=ref.mean(0), sigma=np.cov(ref, rowvar=False))
    return cache, small, ref


def test_fid_reads_weights_and_statistics_from_the_cache_folder(tmp_path, images, monkeypatch):
    """The FID pipeline (clean-fid resizer, extractor, reference statistics) on a stand-in network."""
    real, shifted = images
    cache, small, ref = _stand_in_inception_cache(tmp_path, real)
    seen = []
    monkeypatch.setattr(fid, "inception_extractor", lambda mode, weights, device: seen.append(weights) or small)
    same = fid.fid_cifar10(real, "legacy_tensorflow", str(cache), device="cpu")
    moved = fid.fid_cifar10(shifted, "legacy_tensorflow", str(cache), device="cpu")
    assert seen == [cache / "inception-2015-12-05.pt"] * 2
    assert abs(same) < 1e-3 * moved and moved > 0.5


def test_the_worker_records_the_score_with_its_protocol(run_dir):
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY)
    assert summary["status"] == "done" and summary["gflops"] > 0
    record = summary["fid"]
    assert record["name"] == "FD-digits" and record["value"] > 0
    assert {k: record[k] for k in ("n", "sampler", "steps", "eta", "ema", "mode", "reference", "framework")} == {
        "n": 64, "sampler": "ddim", "steps": 5, "eta": 0.0, "ema": True, "mode": "digits-net",
        "reference": "dataset", "framework": "torch"}
    assert fid.protocol(record) == "FD-digits 64 ddim5 ema"
    assert record["features"].startswith("a trained digits classifier's features (")
    assert record["feature_net"]["held_out_accuracy"] >= 0.97
    assert fid.protocol({"name": "FID", "mode": "clean", "n": 10000, "sampler": "ddim", "steps": 100,
                         "eta": 0.0, "ema": True}) == "FID clean 10k ddim100 ema"


def test_fid_command_scores_a_run_and_writes_its_summary(run_dir, capsys):
    assert main(["fid", str(run_dir), "--n", "32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run_dir}: FD-digits ") and "FD-digits 32 ddim5 ema" in out
    assert "95% CI [" in out and "(200 bootstrap replicates over the generated samples)" in out
    assert "held-out accuracy)" in out and "; precision " in out and "KID " in out
    summary = jsonfiles.read_json(run_dir / rundir.SUMMARY)
    assert summary["fid"]["n"] == 32 and summary["status"] == "done" and summary["params"] > 0
    assert main(["fid", str(run_dir), "--n", "32", "--features", "small", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run_dir}: FD-small ") and "95% CI" not in out
    record = rundir.read_json(run_dir / rundir.SUMMARY)["fid"]
    assert record["name"] == "FD-small" and record["mode"] == "small-net" and record["se"] is None
    with pytest.raises(SystemExit) as exc:
        main(["fid", str(run_dir), "--features", "big"])
    assert exc.value.code == 2 and "argument --features: invalid choice: 'big'" in capsys.readouterr().err
    assert rundir.read_json(run_dir / rundir.SUMMARY)["fid"] == record  # a refused command changes nothing


def test_fid_command_scores_an_image_folder(tmp_path, images, capsys):
    real, shifted = images
    folder = tmp_path / "imgs"
    save_samples(real.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0, folder)
    np.savez(tmp_path / "samples.npz", images=shifted)
    # 300 real digits: FD-digits keeps a small-sample bias of about 0.8 (of 7 for the shifted ones)
    for name, how, factor in (("FD-digits", [], 5), ("FD-small", ["--features", "small"], 10)):
        assert main(["fid", str(folder), "--reference", "dataset", "--data", "digits", *how]) == 0
        near = float(capsys.readouterr().out.split(f"{name} ")[1].split()[0])
        assert main(["fid", str(tmp_path), "--reference", "dataset", "--data", "digits", *how]) == 0
        far = float(capsys.readouterr().out.split(f"{name} ")[1].split()[0])
        assert near < far / factor
    assert main(["fid", str(folder), "--reference", "dataset"]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert fid.load_folder(folder, 10).shape == (10, 16, 16, 1)
    (Path(folder) / "samples.npz").unlink()
    assert fid.load_folder(folder, 10).shape == (10, 16, 16, 3)


def test_contract_fields_of_a_run_score(run_dir):
    """What other tools read from summary.json's ``fid``: the score, its bootstrap CI, the extra metrics."""
    record = score_run(run_dir, n=48)
    assert {"value", "name", "se", "ci_low", "ci_high", "bootstrap", "metrics"} <= set(record)
    assert record["bootstrap"] == 200 and record["se"] > 0
    assert record["ci_low"] <= record["value"] <= record["ci_high"]
    assert set(record["metrics"]) == {"kid", "precision", "recall", "density", "coverage"}
    for name, entry in record["metrics"].items():
        assert {"value", "se", "ci_low", "ci_high"} <= set(entry), name
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    for name in ("precision", "recall", "coverage"):
        assert 0 <= record["metrics"][name]["value"] <= 1


def test_a_folder_dataset_keeps_fd_small_and_says_why(tmp_path, images):
    from unetlab.metrics.scoring import dataset_space, score_record

    real, shifted = images
    space = dataset_space("folder")
    assert space.name == "FD-small" and "folder has no trained feature network" in space.description
    record = score_record(shifted[:40], "dataset", train_images=real, dataset="folder", bootstrap=20)
    assert record["name"] == "FD-small" and record["mode"] == "small-net"
    assert "no trained feature network" in record["features"] and record["bootstrap"] == 20
    assert dataset_space("digits", "small").name == "FD-small"
    with pytest.raises(UnetlabError, match="eval.features: unknown feature space 'big' \\(choose from trained, small\\)"):
        dataset_space("digits", "big")


def test_inception_path_adds_kid_and_prdc_only_with_reference_features(tmp_path, images, monkeypatch):
    """The CIFAR-10 path on a stand-in network: FID alone from statistics (and says so), KID and
    PRDC too once the reference features file is there."""
    from unetlab.metrics.scoring import inception_record

    real, shifted = images
    cache, small, ref = _stand_in_inception_cache(tmp_path, real)
    monkeypatch.setattr(fid, "inception_extractor", lambda mode, weights, device: small)
    alone = inception_record(shifted[:100], "legacy_tensorflow", str(cache), bootstrap=20)
    assert alone["name"] == "FID" and alone["metrics"] == {} and alone["se"] > 0
    assert "FID only: KID and PRDC need CIFAR-10 reference features" in alone["note"]
    assert str(cache / "cifar10_legacy_tensorflow_train_32_features.npz") in alone["note"]
    np.savez(cache / "cifar10_legacy_tensorflow_train_32_features.npz", features=ref)
    full = inception_record(shifted[:100], "legacy_tensorflow", str(cache), bootstrap=20)
    assert full["value"] == pytest.approx(alone["value"]) and "note" not in full
    assert set(full["metrics"]) == {"kid", "precision", "recall", "density", "coverage"}
    (cache / "cifar10_legacy_tensorflow_train_32_features.npz").write_bytes(b"damaged")
    with pytest.raises(UnetlabError, match="cifar10_legacy_tensorflow_train_32_features.npz: not a reference features file"):
        inception_record(shifted[:100], "legacy_tensorflow", str(cache), bootstrap=20)


@pytest.mark.parametrize("section, message", [
    ({"features": "big"}, "eval.features: 'big' is not one of 'trained', 'small'"),
    ({"bootstrap": 1}, "eval.bootstrap: must be 0 (no CI) or at least 2 replicates, got 1"),
    ({"bootstrap": -5}, "eval.bootstrap: must be 0 (no CI) or at least 2 replicates, got -5"),
])
def test_bad_eval_options_are_one_line(section, message):
    from unetlab.spec import resolve_run_spec

    with pytest.raises(UnetlabError) as exc:
        resolve_run_spec({"eval": section})
    assert str(exc.value) == message
