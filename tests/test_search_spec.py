"""The ``search:`` section of an ablation file: what it accepts, and one-line refusals that write nothing."""
from __future__ import annotations

import sys

import pytest
import yaml

from conftest import tiny_digits_spec
from unetlab.sweeps.ablation import load_ablation, trial_run
from unetlab.cli import main

SPACE = {"train.lr": {"log_uniform": [1.0e-5, 1.0e-3]}}


def ablation_file(tmp_path, search, **top):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": tiny_digits_spec(20), "variants": {"a": {}},
                                    "search": search, **top}))
    return path


def refused(capsys, tmp_path, search, message, **top) -> None:
    """``unetlab ablate --dry-run`` refuses the file with one line holding ``message``; nothing is written."""
    runs = tmp_path / "runs"
    rc = main(["ablate", str(ablation_file(tmp_path, search, **top)), "--runs", str(runs), "--dry-run"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("jittor:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert not runs.exists()


def tpe(**search):
    return {"method": "tpe", "trials": 4, "space": SPACE, **search}


@pytest.mark.parametrize("search, message", [
    (tpe(budget=3), "search.budget: unknown key (valid keys: method, trials, parallel, seed, objective, space, pruner)"),
    (tpe(method="bayes"), "search.method: unknown method 'bayes' (valid methods: grid, random, tpe)"),
    (tpe(trials=0), "search.trials: expected an integer >= 1, got 0"),
    ({"method": "tpe", "space": SPACE}, "search.trials: missing"),
    (tpe(space={"train.lr": {"normal": [0, 1]}}), "search.space.train.lr.normal: unknown distribution"),
    (tpe(space={"model.dropout": {"uniform": [0.3, 0.1]}}),
     "search.space.model.dropout.uniform: low must be below high, got [0.3, 0.1]"),
    (tpe(space={"train.lr": {"log_uniform": [0, 1.0e-3]}}),
     "search.space.train.lr.log_uniform: low must be positive (a log scale), got 0"),
    (tpe(space={"train.lrr": {"uniform": [0.1, 0.2]}}), "search.space.train: unknown option 'lrr'"),
    (tpe(space={"lr": {"uniform": [0.1, 0.2]}}), "search.space.lr: a search axis is a dotted key into a section"),
    (tpe(space={"model.blocks.attention": {"choice": ["ddpm", "flash"]}}),
     "search.space.model.blocks.attention: unknown attention block 'flash'"),
    (tpe(space={"model.dropout": {"uniform": [0.0, 1.5]}}), "model.dropout"),
    (tpe(objective={"metric": "accuracy"}), "search.objective.metric: 'accuracy' is not a numeric column of the table"),
    (tpe(objective={"metric": "final_loss", "mode": "best"}), "search.objective.mode: expected min or max"),
    (tpe(objective={"metric": "fd_small"}), "search.objective.metric: a scores no FID or FD-small"),
    (tpe(pruner={"hyperband": {}}), "search.pruner.hyperband: unknown key (valid keys: asha, median, none)"),
    (tpe(pruner={"asha": {"metric": "loss", "steps": 3}}),
     "search.pruner.asha.steps: unknown key (valid keys: metric, min_steps, reduction_factor)"),
    (tpe(pruner={"median": {"metric": "accuracy"}}), "search.pruner.median.metric: 'accuracy' is not a logged metric"),
    (tpe(pruner={"asha": {"reduction_factor": 1}}), "search.pruner.asha.reduction_factor: expected an integer >= 2"),
    ({"method": "grid", "space": SPACE}, "search.space.train.lr: method grid takes choice axes only"),
    ({"method": "grid", "trials": 3, "space": {"train.lr": {"choice": [1]}}}, "search.trials: only for method random or tpe"),
])
def test_bad_search_is_one_line_and_writes_nothing(capsys, tmp_path, search, message):
    refused(capsys, tmp_path, search, message)


def test_a_search_takes_one_seed_and_no_grid(capsys, tmp_path):
    refused(capsys, tmp_path, tpe(), "seeds: a search trains one seed per trial", seeds=[0, 1])
    refused(capsys, tmp_path, tpe(), "grid: a sampled search (method random or tpe) cannot be crossed with a grid",
            grid={"train.batch_size": [8, 16]})


def test_without_optuna_a_search_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    refused(capsys, tmp_path, tpe(), "search.method tpe needs Optuna, which is not installed: "
                                     "pip install 'unetlab[search]'")
    (tmp_path / "runs").mkdir()
    assert main(["table", str(tmp_path / "runs"), "--search"]) == 2
    assert "unetlab table --search needs Optuna, which is not installed" in capsys.readouterr().err


def test_method_grid_is_todays_grid(tmp_path):
    """A grid search of choices expands exactly like the same axes under ``grid:``."""
    as_search = load_ablation(ablation_file(tmp_path, {"space": {"train.lr": {"choice": [1e-3, 1e-4]}}}))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": tiny_digits_spec(20), "variants": {"a": {}},
                                    "grid": {"train.lr": [1e-3, 1e-4]}}))
    as_grid = load_ablation(path)
    assert as_search.search is None
    assert [r.name for r in as_search.runs] == [r.name for r in as_grid.runs] == \
        ["a-lr=0.001-torch-s0", "a-lr=0.0001-torch-s0"]
    assert [r.config() for r in as_search.runs] == [r.config() for r in as_grid.runs]


def test_a_trial_is_a_validated_run_named_by_its_number(tmp_path):
    block = {"name": "multihead", "heads": 2}
    ablation = load_ablation(ablation_file(tmp_path, tpe(space={
        **SPACE, "model.blocks.attention": {"choice": ["ddpm", block]}})))
    search = ablation.search
    assert (search.method, search.trials, search.metric, search.mode) == ("tpe", 4, "final loss", "min")
    dim = search.dimension("model.blocks.attention")
    assert dim.labels() == ["ddpm", '{"heads":2,"name":"multihead"}']
    assert dim.value_of('{"heads":2,"name":"multihead"}') == block
    run = trial_run(ablation.runs[0], 7, {"train.lr": 2.5e-4, "model.blocks.attention": block})
    assert run.name == "a-t7-torch-s0"
    assert run.spec["train"]["lr"] == 2.5e-4 and run.spec["model"]["blocks"]["attention"]["heads"] == 2
    assert run.config()["run"]["trial"] == 7
    assert run.config()["run"]["params"] == {"train.lr": 2.5e-4, "model.blocks.attention": block}
