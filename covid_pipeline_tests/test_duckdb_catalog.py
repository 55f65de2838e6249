"""The embedded DuckDB catalog over a real warehouse, and the README's example queries."""

import datetime as dt
import re
from pathlib import Path

import pytest
from covid_pipeline_replay import jhu

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline_tests.support.lake import CATALOG_DAYS as DAYS
from covid_pipeline_tests.support.lake import CATALOG_TABLE as TABLE
from covid_pipeline_tests.support.lake import STRAY_KINDS, write_days, write_stray_file
from covid_pipeline_tests.support.project import PROJECT_ROOT


def test_duckdb_catalog_lists_partitions_with_row_counts(catalog: Path) -> None:
    columns, rows = duckdb_catalog.query(catalog, f"select date, rows from {TABLE}_partitions")
    assert columns == ["date", "rows"]
    assert [row[0] for row in rows] == DAYS
    assert dict(rows)[dt.date(2020, 4, 5)] == len(jhu.reports("USA", dt.date(2020, 4, 5)))


def test_duckdb_catalog_answers_from_the_written_data(catalog: Path) -> None:
    _, rows = duckdb_catalog.query(
        catalog, f"select sum(confirmed) from {TABLE} where date = '2020-04-12'"
    )
    expected = sum(r["confirmed"] for r in jhu.reports("USA", dt.date(2020, 4, 12)))
    assert rows == [(expected,)]


def test_duckdb_catalog_prunes_partitions(catalog: Path) -> None:
    _, plan = duckdb_catalog.query(
        catalog, f"explain analyze select count(*) from {TABLE} where date = '2020-04-03'"
    )
    # Only one of the 14 files is read when filtering on the partition column.
    assert re.search(r"Total Files Read: 1\b", plan[0][1]), plan[0][1]


def test_duckdb_catalog_reregistering_picks_up_new_days(tmp_path: Path) -> None:
    write_days(tmp_path, DAYS[:2])
    first = duckdb_catalog.register(
        tmp_path / "c.duckdb", tmp_path / "covid_daily_reports/usa", TABLE
    )
    write_days(tmp_path, DAYS[2:4])
    second = duckdb_catalog.register(
        tmp_path / "c.duckdb", tmp_path / "covid_daily_reports/usa", TABLE
    )
    assert (first.partitions, second.partitions) == (2, 4)
    assert (second.first_day, second.last_day) == (DAYS[0], DAYS[3])


def test_duckdb_catalog_refuses_an_empty_warehouse(tmp_path: Path) -> None:
    with pytest.raises(
        duckdb_catalog.LocalCatalogError, match=r"materialize covid_daily_reports \(or"
    ):
        duckdb_catalog.register(tmp_path / "c.duckdb", tmp_path / "nothing", TABLE)


def test_duckdb_catalog_query_without_a_catalog_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(duckdb_catalog.LocalCatalogError, match="materialize covid_catalog_table"):
        duckdb_catalog.query(tmp_path / "missing.duckdb", "select 1")


README_QUERIES = re.findall(
    r'^covid-pipeline query "(.+)"$', (PROJECT_ROOT / "README.md").read_text(), re.MULTILINE
)


def test_readme_has_query_examples() -> None:
    assert len(README_QUERIES) >= 4


@pytest.mark.parametrize("sql", README_QUERIES)
def test_readme_query_examples_answer(catalog: Path, sql: str) -> None:
    columns, rows = duckdb_catalog.query(catalog, sql)
    assert columns and rows, sql


def test_duckdb_catalog_compares_countries_in_one_table(catalog: Path) -> None:
    [sql] = [q for q in README_QUERIES if "top ten" in q or "limit 10" in q]
    _, rows = duckdb_catalog.query(catalog, sql)
    week = [d for d in DAYS if dt.date(2020, 4, 6) <= d <= dt.date(2020, 4, 12)]
    new_cases: dict[str, int] = {}
    for day in week:
        for record in jhu.reports("", day):
            iso = record["region"]["iso"]
            new_cases[iso] = new_cases.get(iso, 0) + record["confirmed_diff"]
    top_ten = sorted(new_cases.items(), key=lambda item: -item[1])[:10]
    assert [(iso, cases) for iso, _, cases in rows] == top_ten
    assert rows[0][:2] == ("USA", "US")


def test_duckdb_catalog_leaves_out_files_not_ours_and_names_them(tmp_path: Path) -> None:
    """Not a failed query on every read, nor another tool's rows silently counted in."""
    write_days(tmp_path, DAYS[:5])
    data = tmp_path / "covid_daily_reports/usa"
    strays = {str(day): kind for day, kind in zip(DAYS[1:4], STRAY_KINDS, strict=True)}
    for day, kind in strays.items():
        write_stray_file(data / f"date={day}/data.parquet", kind)
    registration = duckdb_catalog.register(tmp_path / "c.duckdb", data, TABLE)
    assert registration.partitions == 2
    assert len(registration.left_out) == 3
    for (day, kind), message in zip(strays.items(), registration.left_out, strict=True):
        assert message.startswith(f"{data}/date={day}/data.parquet is not a day this pipeline")
        assert ("another schema" if kind == "foreign" else "not a Parquet file") in message
        assert "re-run that day" in message
    _, rows = duckdb_catalog.query(tmp_path / "c.duckdb", f"select count(*) from {TABLE}")
    kept = (DAYS[0], DAYS[4])
    assert rows == [(sum(len(jhu.reports("USA", day)) for day in kept),)]

    write_days(tmp_path, DAYS[1:4])  # the days re-run: the catalog reads the folder again
    again = duckdb_catalog.register(tmp_path / "c.duckdb", data, TABLE)
    assert (again.partitions, again.left_out) == (5, ())


@pytest.mark.parametrize("kind", STRAY_KINDS)
def test_duckdb_catalog_query_names_a_file_not_ours_that_arrived_after_cataloging(
    tmp_path: Path, kind: str
) -> None:
    write_days(tmp_path, DAYS[:3])
    data = tmp_path / "covid_daily_reports/usa"
    duckdb_catalog.register(tmp_path / "c.duckdb", data, TABLE)
    stray = data / f"date={DAYS[1]}/data.parquet"
    write_stray_file(stray, kind)
    with pytest.raises(duckdb_catalog.LocalCatalogError) as error:
        duckdb_catalog.query(tmp_path / "c.duckdb", f"select sum(confirmed) from {TABLE}")
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"{stray} is not a day this pipeline can read")
    assert "re-run that day" in lines[0] and "materialize covid_catalog_table" in lines[-1]
    assert len(lines) == 2  # the day's files of ours that DuckDB named are not blamed
