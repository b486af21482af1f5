"""``unetlab table RUNS --compare framework``: Jittor/PyTorch ratios per variant."""
import pytest

from unetlab.cli import main
from unetlab.reports.compare import compare
from unetlab.errors import UnetlabError
from unetlab.reports.table import load_table

from study_runs import fake_run, two_framework_ablation


def test_ratios_per_variant_that_ran_in_both(tmp_path):
    root = two_framework_ablation(tmp_path / "abl")
    fake_run(root, "a", "torch", seed=1, loss=0.30, img_s=600.0, sample_img_s=3000.0, peak_mem=2**20, fid=4.0)
    df = compare(load_table(root), "framework")
    assert list(df["variant"]) == ["a"]  # b ran in PyTorch only
    row = df.iloc[0]
    assert row["seeds"] == 1  # seed-paired: PyTorch's seed 1 has no Jittor run, so it is left out
    assert row["final loss J/T"] == pytest.approx(0.11 / 0.10)
    assert row["train img/s J/T"] == pytest.approx(100 / 200)
    assert row["sample img/s J/T"] == pytest.approx(1500 / 1000)
    assert row["peak mem J/T"] == pytest.approx(3.0)
    assert row["FID J/T"] == pytest.approx(3.0 / 2.0)
    fake_run(root, "a", "jittor", seed=1, loss=0.33, img_s=300.0, sample_img_s=3000.0, peak_mem=2**20, fid=6.0)
    row = compare(load_table(root), "framework").iloc[0]
    assert row["seeds"] == 2  # both seeds in both: averaged first
    assert row["final loss J/T"] == pytest.approx((0.11 + 0.33) / (0.10 + 0.30))
    assert row["FID J/T"] == pytest.approx((3.0 + 6.0) / (2.0 + 4.0))


def test_compare_command(tmp_path, capsys):
    root = two_framework_ablation(tmp_path / "abl")
    assert main(["table", str(root), "--compare", "framework", "--no-plots"]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["variant", "seeds", "final", "loss", "J/T", "train", "img/s", "J/T", "sample",
                              "img/s", "J/T", "peak", "mem", "J/T", "FID", "J/T"]
    assert row.split() == ["a", "1", "1.100", "0.500", "1.500", "3.000", "1.500"]
    assert main(["table", str(root), "--compare", "seed", "--no-plots"]) == 2
    assert "--compare 'seed': unknown comparison (valid: framework)" in capsys.readouterr().err


def test_compare_needs_both_frameworks(tmp_path):
    root = tmp_path / "abl"
    fake_run(root, "b", "torch")
    with pytest.raises(UnetlabError, match="no variant ran in both torch and jittor"):
        compare(load_table(root), "framework")


def test_comparison_as_json_keeps_numbers(tmp_path):
    import json

    from unetlab.reports.compare import compare_frameworks, format_comparison
    from unetlab.reports.table import load_table

    [row] = json.loads(format_comparison(compare_frameworks(load_table(two_framework_ablation(tmp_path / "abl"))),
                                         "json"))
    assert row["variant"] == "a" and row["train img/s J/T"] == 0.5 and row["FID J/T"] == 1.5
