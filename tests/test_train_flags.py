"""`unetlab train`'s knobs and the spec: a flag given wins, an absent flag keeps the spec's value,
and what neither gives takes the default that `train --help` states."""
import re

import pytest
import yaml

from unetlab.cli import build_parser, main
from unetlab.commands.train import apply_overrides
from unetlab.run.rundir import read_json
from unetlab.spec import resolve_run_spec

from tiny import DIGITS_MODEL

SPEC_VALUES = {"T": 40, "batch_size": 12, "lr": 3e-3}


def write_spec(path, **train):
    spec = {"model": DIGITS_MODEL, "data": {"dataset": "digits"}, "diffusion": {"T": SPEC_VALUES["T"]},
            "train": {"batch_size": SPEC_VALUES["batch_size"], "lr": SPEC_VALUES["lr"], "log_every": 1, **train},
            "sample": {"steps": 2, "num_images": 2}}
    path.write_text(yaml.safe_dump(spec))
    return path


def resolved_knobs(run):
    spec = read_json(run / "config.json")["spec"]
    return {"T": spec["diffusion"]["T"], "batch_size": spec["train"]["batch_size"], "lr": spec["train"]["lr"],
            "steps": spec["train"]["steps"]}


@pytest.mark.slow
def test_a_flag_given_overrides_the_spec_and_an_absent_flag_keeps_it(tmp_path, capsys):
    spec = write_spec(tmp_path / "digits.yaml", steps=5)
    run = tmp_path / "run"
    assert main(["train", str(spec), "-BS", "8", "--steps", "2", "--run", str(run), "--no-progress"]) == 0
    assert "done after 2 steps" in capsys.readouterr().out
    assert resolved_knobs(run) == {"T": SPEC_VALUES["T"], "batch_size": 8, "lr": SPEC_VALUES["lr"], "steps": 2}


class Flags:
    """The parsed command line with no knob given."""
    T = batch_size = lr = epochs = steps = None


@pytest.mark.parametrize("flag,attr,key", [("-T", "T", "diffusion.T"), ("-BS", "batch_size", "train.batch_size"),
                                          ("-lr", "lr", "train.lr")])
def test_each_flag_against_the_spec(flag, attr, key):
    section, name = key.split(".")
    spec = {"diffusion": {"T": SPEC_VALUES["T"]}, "sample": {"steps": 2},
            "train": {"batch_size": SPEC_VALUES["batch_size"], "lr": SPEC_VALUES["lr"], "steps": 3}}
    absent = resolve_run_spec(apply_overrides(yaml.safe_load(yaml.safe_dump(spec)), Flags))
    assert absent[section][name] == SPEC_VALUES[attr]

    given = type("Given", (Flags,), {attr: 2 if attr != "lr" else 5e-4})
    overridden = resolve_run_spec(apply_overrides(yaml.safe_load(yaml.safe_dump(spec)), given))
    assert overridden[section][name] == getattr(given, attr)


def help_default(help_text: str, key: str) -> float:
    """The number after "else" in the help line of the flag that sets ``key``."""
    flat = " ".join(help_text.split())
    found = re.search(rf"sets {re.escape(key)} \(default: the spec's value, else ([0-9.e+-]+)\)", flat)
    assert found, f"no default stated for {key} in: {flat}"
    return float(found.group(1))


def test_help_states_the_defaults_a_spec_without_the_keys_gets(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    resolved = resolve_run_spec(apply_overrides({}, Flags))
    for key in ("diffusion.T", "train.batch_size", "train.lr"):
        section, name = key.split(".")
        assert resolved[section][name] == help_default(text, key)
    flat = " ".join(text.split())
    assert "else 150 epochs" in flat and resolved["train"]["epochs"] == 150.0
