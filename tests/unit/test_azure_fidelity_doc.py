"""docs/azure-fidelity.md: every row of its table names a test, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "azure-fidelity.md"
REFERENCE = re.compile(r"`((?:unit|integration|e2e|reliability|cluster|compat)/[\w/]+\.py)::(test_\w+)`")
ROW = re.compile(r"^\| (\d+) \|")


def test_every_row_names_at_least_one_test_and_the_rows_are_numbered_in_order() -> None:
    numbers = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        row = ROW.match(line)
        if row is None:
            continue
        numbers.append(int(row.group(1)))
        assert REFERENCE.search(line), f"row {row.group(1)} names no test: {line[:120]}"
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 30


def test_every_test_the_table_names_exists() -> None:
    references = REFERENCE.findall(DOC.read_text(encoding="utf-8"))
    assert references
    for path, name in references:
        source = ROOT / "tests" / path
        assert source.is_file(), f"{path} does not exist"
        assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.M), (
            f"{path} has no test {name}"
        )
