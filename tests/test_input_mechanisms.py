"""The mechanisms that turn bad input into one-line errors: option bounds, the seed range, the
reader of run files, the one-line account of another program's failure, table filters, weights
checks, search candidates."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from unetlab.errors import UnetlabError
from unetlab.options import Option, OptionSet, check_number


# -- options: types, bounds, finite floats --------------------------------------------------

def test_option_bounds_and_finite_floats():
    rate = Option("rate", float, 0.5, low=0.0, high=1.0, low_open=True)
    assert rate.check(1, "x.rate") == 1.0
    with pytest.raises(UnetlabError, match=r"^x.rate: must be in \(0, 1\], got 0.0$"):
        rate.check(0.0, "x.rate")
    with pytest.raises(UnetlabError, match=r"^x.rate: must be a finite number, got inf$"):
        rate.check(float("inf"), "x.rate")
    with pytest.raises(UnetlabError, match=r"^x.rate: must be a finite number, got nan$"):
        Option("free", float, 0.0).check(float("nan"), "x.rate")
    count = Option("count", int, 1, low=1, nullable=True)
    assert count.check(None, "x.count") is None
    with pytest.raises(UnetlabError, match=r"^x.count: must be >= 1, got 0$"):
        count.check(0, "x.count")
    assert "(in (0, 1])" in rate.describe()
    with pytest.raises(UnetlabError, match=r"^n: must be <= 3, got 4$"):
        check_number(4, "n", high=3)


def test_option_set_refuses_a_non_mapping_and_unknown_keys_of_mixed_types():
    options = OptionSet((Option("a", int, 0),))
    with pytest.raises(UnetlabError, match=r"^s: expected a mapping of option: value, got list \[1\]$"):
        options.resolve([1], "s")
    with pytest.raises(UnetlabError, match=r"^s: unknown option 1 \(valid options: a\)$"):
        options.resolve({1: 0, "zz": 0}, "s")


# -- seeds ------------------------------------------------------------------------------------

def test_seeds_lie_in_zero_to_two_to_the_32():
    from unetlab.argtypes import seed_type
    from unetlab.seeds import MAX_SEED, check_seed

    assert check_seed(0) == 0 and check_seed(MAX_SEED) == 2**32 - 1
    for bad in (-1, 2**32, 2**64 + 1):
        with pytest.raises(UnetlabError, match=rf"^seeds\[2\]: must be in \[0, 4294967295\], got {bad}$"):
            check_seed(bad, "seeds[2]")
    with pytest.raises(UnetlabError, match=r"expected an integer seed, got bool True"):
        check_seed(True)
    assert seed_type("7") == 7
    with pytest.raises(Exception, match=r"^must be in \[0, 4294967295\], got 4294967296$"):
        seed_type(str(2**32))


# -- the reader of run files --------------------------------------------------------------------

def test_read_json_names_the_file_and_the_problem(tmp_path):
    from unetlab.readers import read_json, read_run_config

    path = tmp_path / "config.json"
    with pytest.raises(UnetlabError, match=r"config.json: no such run config"):
        read_json(path, "run config")
    path.write_text('{"spec": ')
    with pytest.raises(UnetlabError, match=r"config.json: the run config is not valid JSON \(Expecting value"):
        read_json(path, "run config")
    path.write_text("[1]")
    with pytest.raises(UnetlabError, match=r"config.json: the JSON file holds list, not a JSON object"):
        read_json(path)
    path.write_text(json.dumps({"spec": {}, "run": {"framework": "torch"}}))
    assert read_run_config(tmp_path)["run"] == {"framework": "torch"}
    path.write_text(json.dumps({"run": {}}))
    with pytest.raises(UnetlabError, match=r"not a run config \(its 'spec' mapping is missing\)"):
        read_run_config(tmp_path)


def test_read_records_drops_a_torn_last_line_and_names_other_damage(tmp_path):
    from unetlab.readers import read_records

    path = tmp_path / "metrics.jsonl"
    assert read_records(path) == []
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert read_records(path, ("loss",)) == [{"step": 1, "loss": 0.5}]
    path.write_text('{"step": 1, "lo\n{"step": 2, "loss": 0.5}\n')
    with pytest.raises(UnetlabError, match=r"metrics.jsonl, line 1: not a JSON record \(a damaged line\)$"):
        read_records(path)
    path.write_text('{"step": 1, "loss": "abc"}\n')
    with pytest.raises(UnetlabError, match=r"metrics.jsonl, line 1: loss is 'abc', not a number$"):
        read_records(path, ("loss",))
    path.write_text('{"step": 1, "loss": NaN}\n[1, 2]\n')
    with pytest.raises(UnetlabError, match=r"line 1: loss is nan, not a number"):
        read_records(path, ("loss",))
    with pytest.raises(UnetlabError, match=r"line 2: not a JSON object, got list"):
        read_records(path)


def test_keep_records_until_repairs_a_torn_tail(tmp_path):
    from unetlab.run import jsonfiles

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "loss": 0.5}\n{"step": 4, "loss": 0.4}\n{"step": 6, "lo')
    jsonfiles.keep_records_until(path, 4)
    assert path.read_text() == '{"step": 2, "loss": 0.5}\n{"step": 4, "loss": 0.4}\n'


def test_read_npz_names_the_file_the_kind_and_the_damage(tmp_path):
    from unetlab.readers import read_npz, read_npz_array

    path = tmp_path / "samples.npz"
    with pytest.raises(UnetlabError, match=r"samples.npz: no such samples file$"):
        read_npz(path, "samples file")
    np.savez(path, images=np.ones((2, 4, 4, 1), np.uint8))
    assert read_npz_array(path, "images", "samples file").shape == (2, 4, 4, 1)
    with pytest.raises(UnetlabError, match=r"has no 'labels' array \(it has: images\)"):
        read_npz_array(path, "labels", "samples file")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnetlabError, match=r"samples.npz: truncated or corrupt samples file \(.*\); see$"):
        read_npz(path, "samples file", hint=lambda p: "; see")


# -- another program's failure in one line ----------------------------------------------------

def test_telling_line_picks_the_error_and_joins_a_two_line_refusal():
    from unetlab.tool_output import telling_line

    sbatch = ("sbatch: error: Memory specification can not be satisfied\n"
              "sbatch: error: Batch job submission failed: Requested node configuration is not available\n")
    assert telling_line(sbatch) == ("sbatch: error: Memory specification can not be satisfied; sbatch: error: "
                                    "Batch job submission failed: Requested node configuration is not available")
    ranks = ("rank 0 starting\n" * 40 + "Traceback (most recent call last):\n  File \"x\"\n"
             "RuntimeError: MPI is missing\n" + "-" * 60 + "\nPrimary job terminated normally\n"
             "mpirun detected that one or more processes exited with non-zero status\n")
    assert telling_line(ranks) == "RuntimeError: MPI is missing"
    assert telling_line("all went well\nbye\n") == "bye"
    assert telling_line("") == "" and len(telling_line("error: " + "x" * 1000)) == 300


def test_tool_error_is_one_line_with_a_hint_and_the_log(tmp_path):
    from unetlab.sweeps.engines.on_slurm import refusal_hint
    from unetlab.tool_output import tool_error

    output = "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification\n"
    log = tmp_path / "jobs" / "sbatch.log"
    exc = tool_error("sbatch refused the job array", output, log, hint=refusal_hint(output, 1))
    text = str(exc)
    assert "\n" not in text and isinstance(exc, UnetlabError)
    assert text.startswith("sbatch refused the job array: sbatch: error: Batch job submission failed: Invalid "
                           "generic resource (gres) specification; each run asks Slurm for 1 GPU(s)")
    assert "--gpus none" in text and text.endswith(f"(full output: {log})")
    assert log.read_text() == output
    assert refusal_hint(output, 0) == "" and refusal_hint("sbatch: error: invalid account", 1) == ""


def test_output_into_sends_this_process_and_its_children_to_the_log(tmp_path, capfd):
    import os
    import subprocess

    from unetlab.tool_output import log_size, output_into, read_log

    log = tmp_path / "tool.log"
    with output_into(log):
        os.write(1, b"from this process\n")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('from a child\\n')"], check=True)
    start = log_size(log)
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"
    assert read_log(log) == "from this process\nfrom a child\n" and read_log(log, start) == ""


def test_launch_ranks_writes_the_launchers_output_into_the_log(tmp_path, monkeypatch):
    from unetlab.run import distributed

    script = "import sys\nfor i in range(80): print('line', i)\nsys.exit(3)"
    monkeypatch.setattr(distributed, "launch_command", lambda framework, nproc, args: [sys.executable, "-c", script])
    log = tmp_path / "ranks.log"
    assert distributed.launch_ranks("torch", 2, [], log=log) == 3
    assert log.read_text().splitlines() == [f"line {i}" for i in range(80)]


# -- table filters --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("false", False), ("True", True), ("1e-3", 1e-3), ("0.0002", 2e-4),
                                        ("[8]", [8]), ("16", 16), ("no_attn", "no_attn"), ("no", "no"),
                                        ("null", None), ("a: b", {"a": "b"})])
def test_filter_values_are_read_as_yaml(text, value):
    from unetlab.reports.table import filter_value

    assert filter_value(text) == value and type(filter_value(text)) is type(value)


def test_filter_matching():
    from unetlab.reports.table import _matches

    assert _matches(False, False) and not _matches(False, 0) and not _matches(0, False)
    assert _matches(0.001, 1e-3) and _matches([8, 16], [8, 16]) and not _matches([8], 8)
    assert _matches(None, None) and _matches(float("nan"), None) and _matches("done 4/4", "done")


# -- weights --------------------------------------------------------------------------------------

def test_check_finite_names_the_first_bad_tensor():
    from unetlab.weights import check_finite

    arrays = {"a": np.ones(3, np.float32), "b": np.array([1.0, np.nan, np.nan], np.float32),
              "c": np.array([np.inf])}
    with pytest.raises(UnetlabError, match=r"^w.npz: tensor 'b' holds 2 NaN value\(s\) of 3; "):
        check_finite(arrays, "w.npz")
    with pytest.raises(UnetlabError, match=r"tensor 'c' holds 1 infinite value\(s\) of 1"):
        check_finite({"c": arrays["c"], "step": np.asarray(3)}, "w.npz")
    assert check_finite({"a": arrays["a"], "step": np.asarray(3)}, "w.npz")["step"] == 3


def test_nan_in_a_safetensors_file_is_refused_naming_the_tensor(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    from unetlab.pretrained.files import read_weights

    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({"conv_in.weight": np.array([[np.nan, 1.0]], np.float32), "conv_in.bias": np.zeros(2, np.float32)},
              str(path))
    with pytest.raises(UnetlabError, match=rf"^{path}: tensor 'conv_in.weight' holds 1 NaN value\(s\) of 2"):
        read_weights(path)


@pytest.mark.parametrize("framework", ["torch", pytest.param("jittor", marks=pytest.mark.slow)])
def test_get_weights_returns_copies(framework):
    from conftest import tiny_digits_spec

    from unetlab.model import build_model
    from unetlab.weights import get_weights

    model = build_model(tiny_digits_spec()["model"], framework, device=False)
    first = get_weights(model)
    before = {k: v.copy() for k, v in first.items()}
    for value in first.values():
        value += 1.0
    after = get_weights(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)


# -- search candidates ------------------------------------------------------------------------------

def test_int_ranges_offer_every_value_or_a_bounded_spread():
    from unetlab.sweeps.search_spec import MAX_CANDIDATES, Dimension

    assert Dimension("model.norm_groups", "int_uniform", (4, 8)).candidates() == [4, 5, 6, 7, 8]
    wide = Dimension("train.warmup_steps", "int_uniform", (0, 10_000)).candidates()
    assert wide[0] == 0 and wide[-1] == 10_000 and len(wide) == MAX_CANDIDATES
    assert Dimension("train.lr", "log_uniform", (1e-5, 1e-3)).candidates() == [1e-5, 1e-3]


def test_sbatch_refusing_gpus_on_a_cluster_without_them_names_gpus_none(tmp_path, monkeypatch):
    import types

    from conftest import tiny_digits_spec

    from unetlab.sweeps.ablation import parse_ablation
    from unetlab.sweeps.engines import on_slurm

    refusal = ("sbatch: error: Invalid generic resource (gres) specification\n"
               "sbatch: error: Batch job submission failed: Invalid generic resource (gres) specification\n")

    class Executor:  # submitit's SlurmExecutor, as far as submit() uses it, with sbatch refusing
        def __init__(self, folder, python):
            pass

        def update_parameters(self, **params):
            assert params["gpus_per_task"] == 1

        def map_array(self, task, args):
            raise RuntimeError(f"Could not submit the job array:\n{refusal}")

    monkeypatch.setattr(on_slurm, "require", lambda engine: types.SimpleNamespace(SlurmExecutor=Executor))
    runs = parse_ablation({"name": "g", "base": tiny_digits_spec(), "variants": {"a": {}}}).runs
    with pytest.raises(UnetlabError) as caught:
        on_slurm.SlurmEngine({}).submit(tmp_path, runs)
    text = str(caught.value)
    log = tmp_path / on_slurm.JOBS_DIR / on_slurm.SBATCH_LOG
    assert "\n" not in text and text.startswith("sbatch refused the job array: sbatch: error: Invalid generic "
                                                "resource (gres) specification; sbatch: error: Batch job")
    assert "run on its CPUs with --gpus none" in text and text.endswith(f"(full output: {log})")
    assert refusal in log.read_text()
