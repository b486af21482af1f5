"""The plugin author's kit: check_block and ``unetlab check-block``, option errors at build time,
failed runs that take a corrected config, misspelled hooks, and ``unetlab plugins`` filtering
and details.  The test plugins are tests/pluginkit_blocks.py and tests/pluginkit_misspelled.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

import pluginkit_blocks
from unetlab import UnetlabError, build_model, cli
from unetlab.run import rundir
from unetlab.registry import (DISABLE_AUTOLOAD_ENV, PLUGINS_ENV, SLOTS, PluginSelection, Registry, get_registry,
                              make_plugin_manager)
from unetlab.testing import check_block, relative_error
from unetlab.testing.variations import option_sets


@pytest.fixture
def kit_registry():
    return Registry(make_plugin_manager(extra_plugins=[pluginkit_blocks], selection=PluginSelection(autoload=False)))


@pytest.fixture(autouse=True)
def plugin_environment(monkeypatch):
    """``unetlab -p NAME`` selects plugins through the environment: restore it after each test."""
    monkeypatch.setenv(PLUGINS_ENV, "")
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "")
    yield
    get_registry.cache_clear()


@pytest.fixture
def kit_plugins(monkeypatch):
    """The process-wide registry with the kit's test blocks (as ``unetlab -p pluginkit_blocks``)."""
    monkeypatch.setenv(PLUGINS_ENV, "pluginkit_blocks")
    get_registry.cache_clear()
    yield


# --- check_block -----------------------------------------------------------------------------

def test_option_sets_are_the_defaults_derived_changes_and_declared_ones(kit_registry):
    adm = get_registry().block("resblock", "adm")
    sets, notes = option_sets(adm)
    assert sets[0] == {"conditioning": "scale_shift", "shortcut": "conv1x1", "zero_init": True, "output_scale": 1.0}
    changed = [{k: v for k, v in s.items() if v != sets[0][k]} for s in sets[1:]]
    assert changed == [{"conditioning": "add"}, {"shortcut": "conv3x3"}, {"zero_init": False}]
    assert notes == []
    multihead, _ = option_sets(get_registry().block("attention", "multihead"))
    assert {"heads": 2, "head_channels": None, "fp32_softmax": False, "fused": True} in multihead
    given, _ = option_sets(adm, {"conditioning": "add"})
    assert given == [{**sets[0], "conditioning": "add"}]
    convnext, _ = option_sets(kit_registry.block("resblock", "convnext"))
    assert convnext == [{"expansion": 4, "pw_groups": 1}, {"expansion": 4, "pw_groups": 2},
                        {"expansion": 2, "pw_groups": 1}]


def test_relative_error_is_symmetric_and_has_a_noise_floor():
    a = np.array([1.0, -2.0, 0.5])
    assert relative_error(a, 3 * a) == relative_error(3 * a, a) == pytest.approx(2 / 3)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    noise = np.full(3, 1e-7)
    assert relative_error(np.zeros(3), noise) == 1.0
    assert relative_error(np.zeros(3), noise, floor=0.01) == pytest.approx(1e-5)
    assert relative_error(a, a[:2]) == float("inf")


def test_a_convnext_block_written_only_against_ops_passes(kit_registry):
    result = check_block("resblock", "convnext", registry=kit_registry)
    tensors = {e.tensor for e in result.errors}
    assert {"output", "grad x", "grad emb", "grad dwconv.weight", "grad pwconv1.weight", "grad gamma",
            "grad shortcut.weight"} <= tensors
    assert len(result.option_sets) == 3 and result.worst.error < 1e-4


def test_check_block_report_names_every_tensor_once(kit_registry):
    result = check_block("attention", "linear", registry=kit_registry)
    table = result.table().splitlines()
    assert table[0].split()[:4] == ["tensor", "worst", "rel", "err"]
    names = [e.tensor for e in result.per_tensor()]
    assert names[0] == "output" and len(names) == len(set(names)) == len(table) - 2
    assert all(line.startswith(name + " ") for line, name in zip(table[2:], names))
    assert "grad log_temperature" in names and "grad proj_out.weight" in names
    assert result.summary().startswith("attention/linear: ok, 2 option sets, ")


def test_check_block_command_exits_1_naming_the_worst_tensor(capsys):
    assert cli.main(["-p", "pluginkit_blocks", "check-block", "attention/linear_jittor_x3", "-o", "heads=2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and out.splitlines()[-1].startswith("attention/linear_jittor_x3: FAILED, 1 option sets")
    assert "with {'heads': 2}" in out.splitlines()[-1]
    assert cli.main(["-p", "pluginkit_blocks", "check-block", "attention/linear", "--option", "heads=2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("attention/linear: ok, 1 option sets")


def test_check_block_command_refuses_bad_options_in_one_line(capsys):
    assert cli.main(["-p", "pluginkit_blocks", "check-block", "attention/linear", "-o", "heads=3"]) == 2
    assert capsys.readouterr().err.strip() == ("unetlab check-block: error: attention/linear: "
                                               "heads must divide 16 channels")
    assert cli.main(["check-block", "attention/multihead", "-o", "heads"]) == 2
    assert "--option 'heads': expected KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["check-block", "attention/multihed"]) == 2
    assert "did you mean attention/multihead?" in capsys.readouterr().err


# --- option errors at build time, failed runs ------------------------------------------------

def test_a_value_error_for_an_option_names_the_block_slot_and_level(kit_plugins, make_tiny_spec):
    spec = make_tiny_spec(blocks={"attention": {"name": "linear", "heads": 3}})
    with pytest.raises(UnetlabError) as info:
        build_model(spec, "torch")
    assert str(info.value) == "attention/linear at level 1: heads must divide 64 channels"


def _digits_with_attention(attention, steps=1):
    from conftest import tiny_digits_spec

    spec = tiny_digits_spec(steps=steps)
    spec["model"].update(attn_resolutions=[8], blocks={"attention": attention})
    spec["sample"]["num_images"] = 4
    return spec


def test_a_bad_option_is_refused_before_the_run_folder_is_written(kit_plugins, tmp_path, capsys):
    from unetlab.run.trainer import train_run

    run_dir = tmp_path / "run"
    with pytest.raises(UnetlabError, match=r"^attention/linear at level 1: heads must divide 32 channels$"):
        train_run(_digits_with_attention({"name": "linear", "heads": 3}), run_dir, "torch", progress=False)
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_step_takes_a_corrected_config(kit_plugins, tmp_path):
    from unetlab.run.trainer import train_run

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="fails_in_forward cannot run"):
        train_run(_digits_with_attention("fails_in_forward"), run_dir, "torch", progress=False)
    state = rundir.read_state(run_dir)
    assert state.status == rundir.Status.FAILED and state.step == 0
    summary = train_run(_digits_with_attention({"name": "linear", "heads": 2}), run_dir, "torch", progress=False)
    assert summary["status"] == "done" and summary["step"] == 1
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    assert config["spec"]["model"]["blocks"]["attention"] == {"name": "linear", "heads": 2}
    events = rundir.read_jsonl(run_dir / rundir.EVENTS)
    assert [e["event"] for e in events] == ["config replaced"]
    assert "fails_in_forward cannot run" in events[0]["reason"]


def test_a_failed_run_with_steps_behind_it_keeps_its_config(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = {"spec": {"a": 1}, "run": {"framework": "torch", "seed": 0}}
    rundir.claim_config(run_dir, first)
    rundir.append_jsonl(run_dir / rundir.METRICS, [{"step": 3, "loss": 1.0}])
    rundir.write_summary(run_dir, {"status": "failed", "reason": "RuntimeError: boom", "step": 3})
    before = (run_dir / rundir.CONFIG).read_bytes()
    with pytest.raises(rundir.ConfigChanged, match="holds a run with a different config"):
        rundir.claim_config(run_dir, {**first, "spec": {"a": 2}})
    assert (run_dir / rundir.CONFIG).read_bytes() == before


# --- hook names ------------------------------------------------------------------------------

def test_a_misspelled_hook_is_one_line_naming_the_plugin_and_the_hook(capsys):
    with pytest.raises(UnetlabError) as info:
        make_plugin_manager(selection=PluginSelection(autoload=False, named=("pluginkit_misspelled",)))
    assert str(info.value) == ("plugin pluginkit_misspelled: unknown hook 'unetlab_blokcs' (unetlab's hooks: "
                               "unetlab_blocks, unetlab_presets); did you mean 'unetlab_blocks'?")
    assert cli.main(["--disable-plugin-autoload", "-p", "pluginkit_misspelled", "plugins"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown hook 'unetlab_blokcs'" in err


# --- unetlab plugins -------------------------------------------------------------------------

def _listed(out: str) -> set:
    """(slot, name) of each listed block (wrapped option lines start with no slot)."""
    return {tuple(line.split()[:2]) for line in out.splitlines()[2:] if line.split() and line.split()[0] in SLOTS}


def test_plugins_filter_matches_slot_and_name(capsys):
    assert cli.main(["plugins", "--filter", "attention/*"]) == 0
    listed = _listed(capsys.readouterr().out)
    assert listed == {("attention", n) for s, n in get_registry().blocks if s == "attention"}
    assert cli.main(["plugins", "--filter", "*/adm"]) == 0
    assert _listed(capsys.readouterr().out) == {("resblock", "adm"), ("time_embedding", "adm")}
    assert cli.main(["plugins", "--filter", "nothing/*"]) == 2
    assert "no block matches 'nothing/*'" in capsys.readouterr().err


def test_plugins_describes_one_block(capsys):
    assert cli.main(["plugins", "resblock/adm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resblock/adm: scale-shift (FiLM) conditioning, zero-initialised conv2\n")
    assert "GroupNorm-SiLU-conv twice" in out  # the implementation's docstring
    assert "provider:        unetlab (unetlab.plugins.adm)" in out
    assert "time embedding:  takes it: called as block(x, emb)" in out
    assert "  conditioning (str, default 'scale_shift') one of 'add', 'scale_shift': " in out
    assert "  zero_init (bool, default True): " in out
    assert cli.main(["plugins", "attention/multihead"]) == 0
    out = capsys.readouterr().out
    assert "time embedding:  no: called as block(x)" in out and "  heads (int or null, default None)" in out
    assert "check_block also tries: {'heads': 2}; {'head_channels': 4}" in out


def test_plugins_unknown_block_offers_close_matches(capsys):
    assert cli.main(["plugins", "attention/multihaed"]) == 2
    err = capsys.readouterr().err
    assert err == "unetlab plugins: error: unknown block 'attention/multihaed'; did you mean attention/multihead?\n"
    assert cli.main(["plugins", "adm"]) == 2
    assert "did you mean resblock/adm, time_embedding/adm?" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_run_that_failed_before_its_first_step_takes_the_corrected_ablation(tmp_path):
    import yaml

    from conftest import tiny_digits_spec
    from unetlab.sweeps.ablation import load_ablation
    from unetlab.sweeps.sweep import plan_rows, run_sweep

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": tiny_digits_spec(steps=2), "variants": {"a": {}}}))
    ablation = load_ablation(path)
    run_dir = tmp_path / "runs" / "t" / "a-torch-s0"
    old = ablation.runs[0].config()
    old["spec"]["train"]["lr"] = 0.5
    run_dir.mkdir(parents=True)
    rundir.write_config(run_dir, old)
    rundir.write_summary(run_dir, {"status": "failed", "reason": "ValueError: bad option", "step": 0})
    assert [r["status"] for r in plan_rows(ablation, tmp_path / "runs" / "t")] == ["failed"]
    result = run_sweep(ablation, tmp_path / "runs" / "t", progress=False, echo=lambda line: None)
    assert result.failed == []
    assert rundir.read_state(run_dir).status == rundir.Status.DONE
    assert rundir.read_json(run_dir / rundir.CONFIG)["spec"]["train"]["lr"] == 1e-3
    assert [e["event"] for e in rundir.read_jsonl(run_dir / rundir.EVENTS)] == ["config replaced"]
