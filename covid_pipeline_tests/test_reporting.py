"""The reporting assets in Dagster: the country-day table, its checks, automation and chart.

The country-day table goes through the IO manager both ways; the automation follows the raw
days whichever surface wrote them; the summary charts the whole range built.
"""

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from covid_pipeline_replay.server import ReplayServer
from dagster_aws.s3 import S3Resource

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.config import load_settings
from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY, day_range
from covid_pipeline.core.lake import day_files, parquet, stores
from covid_pipeline.core.reporting import country_daily
from covid_pipeline.definitions import build_definitions
from covid_pipeline.io_managers import HiveParquetIOManager
from covid_pipeline_tests.support.deployment import (
    DAILY,
    DagsterHome,
    failure_message,
    materialize_days,
)
from covid_pipeline_tests.support.lake import replay_table

COUNTRY_DAILY = dg.AssetKey("covid_country_daily")
COUNTRY_TABLE = dg.AssetKey("covid_country_daily_table")
SUMMARY = dg.AssetKey("covid_country_daily_summary")
CATALOG = dg.AssetKey("covid_catalog_table")
PREFIX = "covid_daily_reports/usa"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def days(first: str, last: str) -> list[str]:
    return [
        day.isoformat()
        for day in day_range(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    ]


def test_reporting_a_run_of_both_assets_writes_a_country_day_file_per_day(
    replay: ReplayServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    defs = build_definitions(load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)}))
    result = materialize_days(
        defs, "2020-04-01", "2020-04-10", instance=instance, selection=[DAILY, COUNTRY_DAILY]
    )
    assert result.success
    store = stores.LocalStore(tmp_path)
    for day in days("2020-04-01", "2020-04-10"):
        path = tmp_path / f"covid_country_daily/usa/date={day}/data.parquet"
        table = pq.read_table(path)  # Snappy Parquet, stamped like the raw days
        assert table.schema.equals(country_daily.SCHEMA, check_metadata=False)
        assert parquet.countries_of(table) == "USA" and table["iso"].to_pylist() == ["USA"]
        raw = day_files.read_day(store, "covid_daily_reports/usa", day)
        assert table["confirmed"][0].as_py() == sum(raw["confirmed"].to_pylist())
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_country_daily")
    }
    assert sorted(events) == days("2020-04-01", "2020-04-10")
    april_10 = events["2020-04-10"]
    assert april_10["new_cases_7d_avg"].value > 25_000  # the first wave's height in the US
    assert april_10["dagster/row_count"].value == 1 and april_10["skipped"].value is False
    checks = result.get_asset_check_evaluations()
    reporting = {c.check_name: c.passed for c in checks if c.asset_key == COUNTRY_DAILY}
    assert reporting == dict.fromkeys(
        [
            "sums_match_raw",
            "new_counts_match_api",
            "averages_match_daily_values",
            "population_from_lookup",
        ],
        True,
    )


def test_reporting_the_whole_history_is_one_run_that_reads_what_it_needs(
    dagster_home: DagsterHome, tmp_path: Path
) -> None:
    """1,143 raw days written by the core (as a Lambda would); the country days in one run.

    On the project's instance, as the CLI runs it.
    """
    instance = dagster_home.instance()
    store = stores.LocalStore(tmp_path)
    every_day = [day.isoformat() for day in day_range(FIRST_DAY, LAST_DAY)]
    for day in every_day:
        day_files.write_day(store, "covid_daily_reports/usa", day, replay_table(day), "USA")
    defs = build_definitions(load_settings({"WAREHOUSE_DIR": str(tmp_path)}))
    result = materialize_days(
        defs, every_day[0], every_day[-1], instance=instance, selection=[COUNTRY_DAILY]
    )
    assert result.success
    assert list(store.days("covid_country_daily/usa")) == every_day
    assert all(c.passed for c in result.get_asset_check_evaluations())


@pytest.mark.reliability(
    "Lake",
    "`covid_country_daily` over days whose raw day is missing (no data, or not backfilled)",
    "those days are skipped, no file, and their materialization says why; the others are "
    "written, the averages resting on the days that exist (`days_in_average`)",
)
def test_reporting_a_day_without_a_raw_day_is_skipped_and_says_why(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    store = stores.LocalStore(tmp_path)
    for day in ("2021-01-01", "2021-01-03"):
        day_files.write_day(store, "covid_daily_reports/usa", day, replay_table(day), "USA")
    defs = build_definitions(load_settings({"WAREHOUSE_DIR": str(tmp_path)}))
    result = materialize_days(
        defs, "2021-01-01", "2021-01-03", instance=instance, selection=[COUNTRY_DAILY]
    )
    assert result.success
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_country_daily")
    }
    assert events["2021-01-02"]["skipped"].value is True
    assert "no raw day in the lake" in events["2021-01-02"]["skip_reason"].value
    assert list(store.days("covid_country_daily/usa")) == ["2021-01-01", "2021-01-03"]


@pytest.mark.reliability(
    "Bad input",
    "`covid_country_daily` into a COUNTRY_DAILY_PREFIX that holds another country set's days",
    "refused before anything is read or written, naming both sets and a file of the other",
)
def test_reporting_refuses_a_prefix_of_another_country_sets_days(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """As the raw asset does: a country-day file written for CAN stops a USA run, unwritten."""
    store = stores.LocalStore(tmp_path)
    day_files.write_day(store, PREFIX, "2021-01-01", replay_table("2021-01-01"), "USA")
    canada = country_daily.SCHEMA.empty_table()
    day_files.write_day(store, "covid_country_daily/usa", "2020-12-31", canada, "CAN")
    defs = build_definitions(load_settings({"WAREHOUSE_DIR": str(tmp_path)}))
    result = materialize_days(defs, "2021-01-01", instance=instance, selection=[COUNTRY_DAILY])
    assert not result.success
    assert "holds files written for CAN (e.g. 2020-12-31)" in failure_message(result)
    assert list(store.days("covid_country_daily/usa")) == ["2020-12-31"]


def requested(result: dg.EvaluateAutomationConditionsResult, key: dg.AssetKey) -> list[str]:
    return sorted(str(partition) for partition in result.get_requested_partitions(key))


def test_reporting_automation_recomputes_the_week_after_each_changed_raw_day_once(
    replay: ReplayServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Raw days land (a run, or a Lambda's day the lake sensor records): D..D+7 follow, once."""
    defs = build_definitions(load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)}))
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing new: nothing to do

    assert materialize_days(defs, "2021-01-10", "2021-01-12", instance=instance).success
    after_run = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert requested(after_run, COUNTRY_DAILY) == days("2021-01-10", "2021-01-19")
    assert after_run.get_num_requested(CATALOG) == 1
    assert after_run.get_num_requested(SUMMARY) == 0  # it waits for the country days

    # The days it asked for run (as the daemon would launch them): nothing is asked again.
    assert materialize_days(
        defs, "2021-01-10", "2021-01-19", instance=instance, selection=[COUNTRY_DAILY]
    ).success
    after_country = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=after_run.cursor
    )
    assert requested(after_country, COUNTRY_DAILY) == []
    assert after_country.get_num_requested(SUMMARY) == 1
    assert after_country.get_num_requested(COUNTRY_TABLE) == 1

    # A day a direct Lambda invocation wrote, recorded by the lake sensor, is followed the same way.
    writer = parquet.lambda_writer("covid-daily-reports-backfill", "request-1")
    day_files.write_day(
        stores.LocalStore(tmp_path), PREFIX, "2021-02-01", replay_table("2021-02-01"), "USA", writer
    )
    manager = HiveParquetIOManager(prefix=PREFIX, warehouse_dir=str(tmp_path), s3=S3Resource())
    with dg.build_sensor_context(
        instance=instance, resources={"hive_parquet_io_manager": manager}
    ) as context:
        sensor_result = defs.get_sensor_def("covid_lake_observer")(context)
    for event in sensor_result.asset_events:
        instance.report_runless_asset_event(event)
    after_lambda = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=after_country.cursor
    )
    assert requested(after_lambda, COUNTRY_DAILY) == days("2021-02-01", "2021-02-08")


def test_reporting_summary_charts_the_whole_range_built(
    replay: ReplayServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    settings = load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)})
    defs = build_definitions(settings)
    result = materialize_days(defs, "2020-03-01", "2020-05-31", instance=instance, selection=None)
    assert result.success
    [summary] = result.asset_materializations_for_node("covid_country_daily_summary")
    assert (summary.metadata["days"].value, summary.metadata["first_day"].value) == (
        92,
        "2020-03-01",
    )
    assert summary.metadata["peak_day"].value.startswith("2020-04")  # the first US wave
    [image] = re.findall(
        r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", summary.metadata["chart"].value
    )
    png = base64.b64decode(image)
    assert (
        png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 800
    )  # 10 in x 80 dpi
    # The catalog serves the table beside the raw one.
    _, answer = duckdb_catalog.query(
        settings.catalog_path,
        "select count(*), max(new_cases_7d_avg) from covid_country_daily_usa where iso = 'USA'",
    )
    assert answer[0][0] == 92 and answer[0][1] == pytest.approx(
        summary.metadata["peak_new_cases_7d_avg"].value, abs=0.1
    )
