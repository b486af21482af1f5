"""The shipped benchmark results: one file per machine, every row dated, each file readable by
`unetlab table`."""
import json

import pytest

from conftest import REPO_ROOT
from unetlab.reports.table import load_bench_table

RESULTS = sorted((REPO_ROOT / "benchmarks" / "results").glob("*.json"))


def test_results_exist():
    assert [p.name for p in RESULTS] == ["cpu-2core.json", "h200.json"]


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_row_is_dated_and_its_session_described(path):
    data = json.loads(path.read_text())
    sessions = data["meta"]["sessions"]
    dates = {row["date"] for row in data["rows"]}
    assert dates and dates <= set(sessions), f"{path.name}: rows dated {dates - set(sessions)} have no session"
    table = load_bench_table(path, ["date=" + min(dates)])
    assert len(table) == sum(row["date"] == min(dates) for row in data["rows"])
    assert set(table["date"]) == {min(dates)}
