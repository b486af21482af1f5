"""eval.every: the run's score of the EMA weights during training, in the metrics, across a resume."""
import pytest

from unetlab.errors import UnetlabError
from unetlab.run.jsonfiles import read_jsonl
from unetlab.spec import resolve_run_spec
from unetlab.reports.table import load_table
from unetlab.run.trainer import train_run

from tiny import digits_run


def scored_spec():
    spec = digits_run(10, log_every=5, checkpoint_every=5)
    spec["eval"] = {"every": 5, "fid_samples": 16, "reference": "dataset"}
    return spec


def scores(run_dir):
    return [(r["step"], r["fid"], r["fid_name"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "fid" in r]


def test_scores_every_n_steps_survive_a_resume_and_reach_the_table(tmp_path):
    full, cut = tmp_path / "abl" / "full", tmp_path / "cut"
    train_run(scored_spec(), full, "torch", progress=False)
    got = scores(full)
    assert [s[0] for s in got] == [5, 10] and {s[2] for s in got} == {"FD-digits"}
    assert all(r["fid_se"] > 0 for r in read_jsonl(full / "metrics.jsonl") if "fid" in r)
    assert all(v > 0 for _, v, _ in got) and got[0][1] != got[1][1]
    records = read_jsonl(full / "metrics.jsonl")
    elapsed = [r["elapsed"] for r in records]
    assert elapsed == sorted(elapsed)  # scoring time is not training time
    assert train_run(scored_spec(), cut, "torch", progress=False, stop_after=5)["status"] == "partial"
    train_run(scored_spec(), cut, "torch", progress=False)
    assert scores(cut) == got  # the step-5 score kept, the step-10 one computed once
    row = load_table(tmp_path / "abl").iloc[0]
    assert row["best score"] == pytest.approx(min(v for _, v, _ in got))


def test_eval_every_needs_samples():
    with pytest.raises(UnetlabError, match="eval.every: needs a positive N and eval.fid_samples of at least 2"):
        resolve_run_spec({"eval": {"every": 100}})
