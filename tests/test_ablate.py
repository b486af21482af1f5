"""Ablation files: expansion into runs, naming, overrides, and whole-file validation."""
from __future__ import annotations

import re

import pytest
import yaml

from unetlab.sweeps.ablation import grid_label, load_ablation, parse_ablation
from unetlab.cli import main
from unetlab.errors import UnetlabError

from conftest import tiny_digits_spec


def ablation(**top) -> dict:
    raw = {"name": "t", "base": tiny_digits_spec(), "variants": {"a": {}}}
    raw.update(top)
    return raw


def error(raw) -> str:
    with pytest.raises(UnetlabError) as exc:
        parse_ablation(raw)
    message = str(exc.value)
    assert "\n" not in message
    return message


def write(tmp_path, text: str, name: str = "abl.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- expansion -------------------------------------------------------------------------------

def test_variants_grid_seeds_frameworks_expand_to_their_product():
    a = parse_ablation(ablation(
        variants={"attn": {}, "no_attn": {"model.attn_resolutions": []}, "adm": {"model": {"blocks": {"resblock": "adm"}}}},
        grid={"train.lr": [1e-4, 2e-4], "train.batch_size": [16, 32]},
        seeds=[0, 1], frameworks=["torch", "jittor"]))
    assert len(a.runs) == 3 * 4 * 2 * 2
    names = [r.name for r in a.runs]
    assert len(set(names)) == len(names)
    assert "no_attn-lr=0.0001,batch_size=16-torch-s0" in names
    assert "adm-lr=0.0002,batch_size=32-jittor-s1" in names
    run = next(r for r in a.runs if r.name == "no_attn-lr=0.0002,batch_size=32-jittor-s1")
    assert run.spec["model"]["attn_resolutions"] == []
    assert run.spec["train"]["lr"] == 2e-4 and run.spec["train"]["batch_size"] == 32
    assert run.spec["train"]["seed"] == 1 and run.seed == 1 and run.framework == "jittor"
    assert run.grid == {"train.lr": 2e-4, "train.batch_size": 32}
    assert run.config()["run"]["variant"] == "no_attn"
    adm = next(r for r in a.runs if r.variant == "adm")
    assert adm.spec["model"]["blocks"]["resblock"]["name"] == "adm"
    assert adm.spec["model"]["blocks"]["attention"]["name"] == "ddpm"  # the rest of the base stays


def test_defaults_one_seed_torch_and_the_file_stem_as_name(tmp_path):
    raw = ablation()
    del raw["name"]
    path = write(tmp_path, yaml.safe_dump(raw), "my_study.yaml")
    a = load_ablation(path)
    assert a.name == "my_study"
    assert [r.name for r in a.runs] == ["a-torch-s0"]


def test_dotted_and_nested_overrides_are_the_same():
    dotted = parse_ablation(ablation(variants={"v": {"model.blocks.attention": "multihead", "train.lr": 3e-4}}))
    nested = parse_ablation(ablation(variants={"v": {"model": {"blocks": {"attention": "multihead"}},
                                                     "train": {"lr": 3e-4}}}))
    assert dotted.runs[0].spec == nested.runs[0].spec
    assert dotted.runs[0].spec["model"]["blocks"]["attention"]["name"] == "multihead"


def test_empty_variant_is_the_base_and_a_variant_budget_replaces_the_base_budget():
    a = parse_ablation(ablation(variants={"same": None, "empty": {}, "timed": {"train.minutes": 1.5}}))
    same, empty, timed = a.runs
    assert same.spec == empty.spec
    assert same.spec["train"]["steps"] == 20
    assert timed.spec["train"]["minutes"] == 1.5 and timed.spec["train"]["steps"] is None


def test_per_framework_overrides_and_base_from_a_file(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_digits_spec()))
    path = write(tmp_path, "base: base.yaml\nvariants: {a: {}}\n"
                           "frameworks: {torch: {train.precision: bf16}, jittor: {}}\n")
    a = load_ablation(path)
    precision = {r.framework: r.spec["train"]["precision"] for r in a.runs}
    assert precision == {"torch": "bf16", "jittor": "fp32"}


def test_grid_labels_are_short_and_filesystem_safe():
    assert grid_label({"train.lr": 1e-4, "train.batch_size": 64}) == "lr=0.0001,batch_size=64"
    assert grid_label({"model.attn_resolutions": [16, 8]}) == "attn_resolutions=16+8"
    assert grid_label({"model.attn_resolutions": []}) == "attn_resolutions=none"
    assert grid_label({"model.dropout": 0.1, "train.dropout_x": "a/b c"}) == "dropout=0.1,dropout_x=a_b_c"
    long = grid_label({f"train.key{i}": "x" * 20 for i in range(5)})
    assert len(long) <= 60 and re.fullmatch(r"[A-Za-z0-9_.,=+~-]+", long)
    assert grid_label({"model.a": 1, "train.a": 2}) == "model.a=1,train.a=2"  # same leaf: full keys


# -- validation ------------------------------------------------------------------------------

def test_unknown_block_names_the_variant_key_path_and_the_choices():
    message = error(ablation(variants={"ok": {}, "no_attn": {"model.blocks.attention": "foo"}}))
    assert message.startswith("variants.no_attn.model.blocks.attention: unknown attention block 'foo' "
                              "(valid attention blocks: ddpm, ")
    assert "multihead" in message


def test_bad_types_name_their_key_paths():
    assert error(ablation(variants={"v": {"train": {"lr": "fast"}}})) == \
        "variants.v.train.lr: expected float, got str 'fast'"
    assert error(ablation(grid={"train.batch_size": [16, "big"]})) == \
        "grid.train.batch_size: expected int, got str 'big' (grid point batch_size=big)"
    base = tiny_digits_spec()
    base["model"]["channel_mult"] = [1, "x"]
    assert error(ablation(base=base)) == "base.model.channel_mult[1]: expected int, got str 'x'"
    assert error(ablation(variants={"v": {"model.attn_resolutions": [5]}})).startswith(
        "variants.v.model.attn_resolutions: 5 is not a resolution of this model")
    assert error(ablation(variants={"v": {"sample.sampler": "euler"}})) == \
        "variants.v.sample.sampler: 'euler' is not one of 'ddim', 'ddpm'"


def test_missing_budget_unknown_keys_and_bad_top_level_values():
    base = tiny_digits_spec()
    del base["train"]["steps"]
    assert error(ablation(base=base, variants={"v": {}})).startswith("variants.v.train: no training budget")
    assert error(ablation(variants={"v": {"train.epochs": 1.0, "train.minutes": 2.0}})) == \
        "variants.v.train: give one budget of steps, epochs or minutes, not epochs and minutes"
    assert error(ablation(seed=[1])) == "seed: unknown key (valid keys: name, base, variants, grid, seeds, frameworks, search, baseline, decide_on)"
    assert error(ablation(variants={"v": {"modle.dropout": 0.1}})).startswith("variants.v.modle: unknown section")
    assert error(ablation(frameworks=["torch", "tensorflow"])) == \
        "frameworks: unknown framework 'tensorflow' (valid frameworks: torch, jittor)"
    assert error(ablation(seeds=[0, "1"])) == "seeds[1]: expected an integer seed, got str '1'"
    assert error(ablation(seeds=[-1])) == "seeds[0]: must be in [0, 4294967295], got -1"
    assert error(ablation(grid={"lr": [1]})).startswith("grid.lr: a grid axis is a dotted key")
    assert error(ablation(grid={"train.lr": 0.1})) == "grid.train.lr: expected a non-empty list of values, got 0.1"
    assert error(ablation(variants={"bad/name": {}})).startswith("variants.bad/name: a variant name must be")


def test_framework_specific_settings_are_checked_per_framework():
    message = error(ablation(base={**tiny_digits_spec(), "train": {**tiny_digits_spec()["train"], "precision": "bf16"}},
                             frameworks=["torch", "jittor"]))
    assert message.startswith("base.train.precision: 'bf16' is not supported by jittor (valid precisions: fp32, fp16)")


def test_bad_yaml_is_one_line_with_line_and_column(tmp_path):
    path = write(tmp_path, "name: x\nbase:\n  train: {steps: 3\nvariants: {}\n")
    with pytest.raises(UnetlabError) as exc:
        load_ablation(path)
    assert re.match(rf"{re.escape(str(path))}: invalid YAML \(line \d+, column \d+\): ", str(exc.value))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text, expected", [
    ("base: {data: {dataset: shapes}, train: {steps: 5}}\nvariants: {x: {model.blocks.attention: foo}}\n",
     "variants.x.model.blocks.attention: unknown attention block 'foo'"),
    ("base: {data: {dataset: shapes}, train: {steps: 5}}\nbogus: 1\n", "bogus: unknown key"),
    ("base: {train: {steps: [}\n", "invalid YAML (line 1, column"),
])
def test_ablate_command_errors_write_nothing(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    runs = tmp_path / "runs"
    assert main(["ablate", str(path), "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"unetlab ablate: error: {path}: ") and expected in err
    assert len(err.splitlines()) == 1
    assert not runs.exists()


def test_dry_run_shows_the_plan_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, yaml.safe_dump(ablation(variants={"a": {}, "b": {"train.lr": 2e-3}}, seeds=[0, 1])))
    runs = tmp_path / "runs"
    assert main(["ablate", str(path), "--runs", str(runs), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ablation t: 4 runs" in out and "(4 new)" in out
    for name in ("a-torch-s0", "a-torch-s1", "b-torch-s0", "b-torch-s1"):
        assert name in out
    assert not runs.exists()


def test_a_missing_dataset_stops_the_sweep_before_any_run(tmp_path, capsys):
    missing = tmp_path / "no_images"
    text = (f"base: {{data: {{dataset: folder, root: {missing}}}, train: {{steps: 5}}}}\n"
            "variants: {a: {}, b: {train.lr: 0.002}}\n")
    path = write(tmp_path, text)
    runs = tmp_path / "runs"
    assert main(["ablate", str(path), "--runs", str(runs), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"unetlab ablate: error: a-torch-s0: data: no images (.png, .jpg, .jpeg, .bmp, .webp) "
                   f"found under {missing}")
    assert not runs.exists()
