"""docs/reliability.md lists exactly the faults and bad inputs that the tests try."""

from covid_pipeline_tests.support import reliability


def test_reliability_doc_table_matches_the_tests() -> None:
    table = reliability.collected_table()
    assert reliability.section(reliability.DOCUMENT.read_text()) == table, (
        "docs/reliability.md is out of date with the tests' reliability marks: "
        "run `make reliability-doc`"
    )
    for area in reliability.AREAS:  # every area the issue asks about has rows
        assert f"\n| {area} |" in table, area
