"""docs/reliability.md's table, made from the `reliability` marks on the tests themselves.

A test that injects a fault or feeds bad input is marked
`@pytest.mark.reliability(area, case, outcome)`, and its assertions prove the outcome. The
table lists every marked test; `make reliability-doc` writes it, and
`test_reliability_doc.py` fails when the document and the tests disagree, so it stays true.
"""

import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

AREAS = ("API", "Storage", "Lake", "Stop", "Crash", "Bad input", "Security")
BEGIN = "<!-- begin table: written by `make reliability-doc` from the tests' marks -->"
END = "<!-- end table -->"


def rows(items: Iterable[pytest.Item]) -> list[tuple[str, str, str, str]]:
    """(area, case, outcome, test) for every test marked `reliability`, in table order.

    A parametrized test's runs with the same mark make one row: `test_x[moto, ceph]`.
    """
    found: dict[tuple[str, str, str, str], list[str]] = {}
    for item in items:
        mark = item.get_closest_marker("reliability")
        if mark is None:
            continue
        area, case, outcome = mark.args
        if area not in AREAS:
            raise ValueError(f"{item.nodeid}: reliability area {area!r} is not one of {AREAS}")
        test, _, params = item.nodeid.removeprefix("covid_pipeline_tests/").partition("[")
        found.setdefault((area, case, outcome, test), []).append(params.rstrip("]"))
    table = [
        (*key[:3], key[3] + (f"[{', '.join(params)}]" if any(params) else ""))
        for key, params in found.items()
    ]
    return sorted(table, key=lambda row: (AREAS.index(row[0]), row[3]))


def table(items: Iterable[pytest.Item]) -> str:
    """The Markdown table, between its BEGIN and END lines."""
    lines = [
        BEGIN,
        "",
        "| area | fault or bad input | outcome | test |",
        "| --- | --- | --- | --- |",
    ]
    for area, case, outcome, test in rows(items):
        cells = (area, case, outcome, f"`{test}`")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join([*lines, "", END]) + "\n"


def section(document: str) -> str:
    """The table as it stands in a document (BEGIN to END, both included)."""
    start, end = document.index(BEGIN), document.index(END) + len(END)
    return document[start:end] + "\n"


DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def collected_table() -> str:
    """Collect the tests (without running them) in a fresh interpreter; return their table."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "table.md"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             f"--reliability-table={out}", "covid_pipeline_tests"],
            cwd=DOCUMENT.parent.parent, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"collecting the tests failed:\n{result.stdout[-3000:]}")
        return out.read_text()


def main() -> None:
    """Rewrite the table in docs/reliability.md from the tests (`make reliability-doc`)."""
    document = DOCUMENT.read_text()
    DOCUMENT.write_text(document.replace(section(document), collected_table()))


if __name__ == "__main__":
    main()
