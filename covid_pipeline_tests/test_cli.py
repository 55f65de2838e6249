"""`covid-pipeline query`: a table on stdout, clear errors on stderr, exit codes that say which."""

import datetime as dt
from pathlib import Path

import pytest
from covid_pipeline_replay import jhu

from covid_pipeline.cli import format_table, main
from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline_tests.support.lake import CATALOG_TABLE as TABLE
from covid_pipeline_tests.support.lake import write_days, write_stray_file


def test_cli_query_prints_an_aligned_table(
    catalog: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CATALOG_PATH", str(catalog))
    sql = f"select date, count(*) as regions from {TABLE} group by date order by date limit 2"
    assert main(["query", sql]) == 0
    out, err = capsys.readouterr()
    regions = [len(jhu.reports("USA", dt.date(2020, 4, day))) for day in (1, 2)]
    assert out.splitlines() == [
        "date        regions",
        "----------  -------",
        f"2020-04-01  {regions[0]:>7}",
        f"2020-04-02  {regions[1]:>7}",
    ]
    assert "(2 rows in " in err


def test_cli_query_reports_sql_errors_without_a_traceback(
    catalog: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CATALOG_PATH", str(catalog))
    assert main(["query", "select nope from nowhere"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("query failed: CatalogException:") and "nowhere" in err


def test_cli_query_names_a_file_in_the_lake_that_is_not_a_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    days = [dt.date(2020, 4, 1), dt.date(2020, 4, 2)]
    write_days(tmp_path, days)
    data = tmp_path / "covid_daily_reports/usa"
    duckdb_catalog.register(tmp_path / "c.duckdb", data, TABLE)
    write_stray_file(data / "date=2020-04-02/data.parquet", "truncated")
    monkeypatch.setenv("CATALOG_PATH", str(tmp_path / "c.duckdb"))
    assert main(["query", f"select count(*) from {TABLE}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"query failed: {data}/date=2020-04-02/data.parquet is not a day")
    assert "re-run that day" in err and "Exception" not in err


def test_cli_query_reports_bad_settings(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ISO_CODE", "USA/CAN")
    assert main(["query", "select 1"]) == 2
    assert "ISO_CODE 'USA/CAN' must be ALL, or the API's region codes" in capsys.readouterr().err


def test_cli_table_formats_numbers_dates_and_nulls() -> None:
    text = format_table(
        ["d", "n", "x"], [(dt.date(2020, 4, 1), 1234567, None), (dt.date(2020, 4, 2), 0.05, "a")], 1
    )
    assert text.splitlines() == [
        "d                   n  x",
        "----------  ---------  ----",
        "2020-04-01  1,234,567  NULL",
        "... 1 more rows (--max-rows, or --csv for all)",
    ]
