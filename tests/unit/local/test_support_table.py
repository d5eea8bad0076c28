"""README's "What `tidings dev` supports" table stays true: every row names a test that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HEADING = "## What `tidings dev` supports"
STATUSES = {
    "supported",
    "supported, with one warning line",
    "function left out",
    "refused at start",
    "named at start, fails when reached",
    "`ResourceNotFoundException`",
}
REFERENCE = re.compile(r"^`(tests/[\w/]+\.py)::(\w+)`$")


def support_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, "README has no support table"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Area")]
    # a cell may hold `|` only inside backquotes; none of ours does
    return [[cell.strip() for cell in row.strip().strip("|").split(" | ")] for row in rows]


def test_the_table_has_rows_for_each_area() -> None:
    areas = {row[0] for row in support_rows()}
    assert {"Runtime", "Integration", "Template", "Calls", "Terminal"} <= areas


@pytest.mark.parametrize("row", support_rows(), ids=lambda row: row[1][:60])
def test_every_row_names_an_existing_test_and_a_known_status(row: list[str]) -> None:
    assert len(row) == 4, row
    _, feature, status, kept_by = row
    assert status in STATUSES, f"{feature}: unknown status {status!r}"
    match = REFERENCE.match(kept_by)
    assert match, f"{feature}: 'Kept true by' must be `tests/...py::test_name`, got {kept_by!r}"
    path, name = match.groups()
    source = (ROOT / path).read_text()
    assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{path} has no test {name}"
