"""The framework figure and the self-contained HTML report (rendered in headless Chromium)."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from unetlab.cli import main
from unetlab.reports.plots_frameworks import loss_difference, run_curves, write_framework_plots
from unetlab.reports.html import render_report, upscaled_png

from study_runs import fake_run, two_framework_ablation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_framework_curves_difference_and_time_axis(tmp_path):
    root = two_framework_ablation(tmp_path / "abl")
    torch_curve, jittor_curve = run_curves(root / "a-torch-s0"), run_curves(root / "a-jittor-s0")
    steps, diff = loss_difference(torch_curve, jittor_curve)
    assert list(steps) == list(range(1, 21))
    assert diff[-1] == pytest.approx(0.01) and diff[0] == pytest.approx(0.01 * (1 + 15 / 20))
    # the first step (Jittor's 80 s of compilation) is off the time axis: it starts at 0
    np.testing.assert_allclose(jittor_curve["time"], np.arange(20) * 0.32)
    np.testing.assert_allclose(torch_curve["time"], np.arange(20) * 0.16)
    assert torch_curve["mem"][0] == 1.0  # MiB
    [png] = write_framework_plots([root / "a-torch-s0", root / "a-jittor-s0", root / "b-torch-s0"], tmp_path / "p")
    assert png.name == "abl-frameworks.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_fid_during_training_is_drawn_when_recorded(tmp_path):
    root = tmp_path / "abl"
    run = fake_run(root, "a", "torch", fid_curve=[(10, 5.0), (20, 3.0)])
    curve = run_curves(run)
    assert list(curve["fid_step"]) == [10, 20] and list(curve["fid"]) == [5.0, 3.0]
    assert write_framework_plots([run], tmp_path / "p")[0].is_file()


def test_sample_grids_are_upscaled_by_a_whole_factor(tmp_path):
    from PIL import Image

    root = two_framework_ablation(tmp_path / "abl")
    small = Image.open(root / "a-torch-s0" / "samples.png")
    import io
    big = Image.open(io.BytesIO(upscaled_png(root / "a-torch-s0" / "samples.png")))
    factor = big.width // small.width
    assert factor >= 2 and big.size == (small.width * factor, small.height * factor) and big.width >= 384
    assert big.getpixel((factor * 3 + factor - 1, factor * 3)) == small.getpixel((3, 3))  # nearest: blocks


def test_report_holds_table_plots_grids_and_configs(tmp_path):
    root = two_framework_ablation(tmp_path / "abl")
    page = render_report(root)
    assert page.count("<table") == 2  # the results and the Jittor/PyTorch ratios
    assert "Jittor / PyTorch" in page and "final loss J/T" in page
    images = re.findall(r'<img src="data:image/png;base64,', page)
    assert len(images) == 3 + 4  # 3 sample grids; loss-steps, loss-time, torch-vs-jittor, frameworks
    for run in ("a-torch-s0", "a-jittor-s0", "b-torch-s0"):
        assert f"<h3>{run}</h3>" in page
    assert "FD-small 64 ddim5 ema" in page and "&quot;framework&quot;: &quot;jittor&quot;" in page
    assert "src=\"http" not in page and "href=\"http" not in page  # nothing to fetch


def test_table_html_flag_writes_the_file(tmp_path, capsys):
    root = two_framework_ablation(tmp_path / "abl")
    out = tmp_path / "report.html"
    assert main(["table", str(root), "--no-plots", "--html", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                              "./dev and .ci/run install it)")
@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    root = two_framework_ablation(tmp_path / "abl")
    page = tmp_path / "report.html"
    assert main(["table", str(root), "--no-plots", "--html", str(page)]) == 0
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=5000", "--window-size=1400,2000"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    shown = re.search(r'data-images="(\d+)" data-images-shown="(\d+)"', dom)
    assert shown, dom[:2000]
    assert int(shown.group(1)) == 7 and shown.group(2) == shown.group(1)  # every image decoded
    assert re.search(r"<td>a</td>\s*<td>jittor</td>", dom) or "<td>jittor</td>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a rendered page, not a blank one
