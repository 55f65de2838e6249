"""The catalog asset after the days land: local DuckDB, and direct Glue registration on moto."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.catalog.glue import registered_days
from covid_pipeline.core.config import load_settings
from covid_pipeline.core.reporting import country_daily
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.deployment import materialize_days
from covid_pipeline_tests.support.lake import write_stray_file
from covid_pipeline_tests.support.s3 import days_under

DAILY, CATALOG = dg.AssetKey("covid_daily_reports"), dg.AssetKey("covid_catalog_table")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def backfill(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: str,
    last: str,
    selection: list[dg.AssetKey] | None = [DAILY, CATALOG],  # noqa: B006 (never mutated)
):
    """The days and their catalog (None: every asset) in one run over first..last."""
    result = materialize_days(defs, first, last, instance=instance, selection=selection)
    assert result.success
    return result


def catalog_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.asset_materializations_for_node("covid_catalog_table")
    return {key: value.value for key, value in event.metadata.items()}


def test_catalog_asset_registers_the_local_warehouse_in_duckdb(
    replay: ReplayServer, instance, tmp_path: Path
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2020-04-03"])])
    settings = load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)})
    result = backfill(build_definitions(settings), instance, "2020-04-01", "2020-04-05")
    metadata = catalog_metadata(result)
    assert (metadata["partitions"], metadata["first_day"], metadata["last_day"]) == (
        4,
        "2020-04-01",
        "2020-04-05",
    )
    _, rows = duckdb_catalog.query(
        settings.catalog_path, "select count(distinct date) from covid_daily_reports_usa"
    )
    assert rows == [(4,)]
    # Absolute paths, whatever the working directory of the UI that shows them.
    assert metadata["database"] == str(Path(settings.catalog_path).absolute())
    assert metadata["dagster/uri"] == str(tmp_path / "covid_daily_reports" / "usa")
    # The column schema on the asset's definition is the table's, column for column.
    spec = build_definitions(settings).resolve_assets_def("covid_catalog_table")
    schema = spec.specs_by_key[CATALOG].metadata["dagster/column_schema"]
    _, described = duckdb_catalog.query(settings.catalog_path, "describe covid_daily_reports_usa")
    assert [(c.name, c.type) for c in schema.columns][-1] == ("date", "date")
    assert [c.name for c in schema.columns] == [row[0] for row in described]


@pytest.mark.reliability(
    "Lake",
    "`covid_catalog_table` (local) and `covid-pipeline query` over a lake holding a file that "
    "is not a day: an HTML page, a truncated copy, another schema",
    "the catalog leaves it out and names it, its key and what to do (log and metadata); a "
    "query that meets one says the same, not DuckDB's error",
)
def test_catalog_asset_leaves_out_a_file_not_ours_and_names_it(
    replay: ReplayServer, instance, tmp_path: Path
) -> None:
    settings = load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)})
    defs = build_definitions(settings)
    backfill(defs, instance, "2020-04-01", "2020-04-03")
    stray = tmp_path / "covid_daily_reports/usa/date=2020-04-02/data.parquet"
    write_stray_file(stray, "html")
    result = materialize_days(defs, "2020-04-01", instance=instance, selection=[CATALOG])
    assert result.success
    metadata = catalog_metadata(result)
    assert metadata["partitions"] == 2
    assert metadata["files_left_out"].startswith(f"{stray} is not a day this pipeline can read")
    assert "re-run that day" in metadata["files_left_out"]


def test_catalog_asset_registers_one_glue_partition_per_written_day(
    replay: ReplayServer, instance, s3_bucket: str
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2020-04-03"])])
    settings = load_settings(
        {"API_URL": replay.url, "BUCKET_NAME": s3_bucket, "GLUE_DATABASE": "covid_test"}
    )
    assert settings.catalog_mode == "glue_partitions"
    defs = build_definitions(settings)
    first = catalog_metadata(backfill(defs, instance, "2020-04-01", "2020-04-05", None))
    assert (first["table_created"], first["partitions_created"], first["partitions"]) == (
        True,
        4,
        4,
    )
    written = days_under(s3_bucket, "covid_daily_reports/usa")
    glue = boto3.client("glue")
    assert registered_days(glue, "covid_test", "covid_daily_reports_usa") == written
    # The country-day table beside it: one file per raw day, each registered, its own columns.
    assert days_under(s3_bucket, "covid_country_daily/usa") == written
    assert registered_days(glue, "covid_test", "covid_country_daily_usa") == written
    table = glue.get_table(DatabaseName="covid_test", Name="covid_country_daily_usa")["Table"]
    columns = table["StorageDescriptor"]["Columns"]
    assert [column["Name"] for column in columns] == country_daily.SCHEMA.names
    assert table["StorageDescriptor"]["Location"] == f"s3://{s3_bucket}/covid_country_daily/usa/"

    second = catalog_metadata(backfill(defs, instance, "2020-04-01", "2020-04-05"))
    assert (second["table_created"], second["partitions_created"], second["partitions"]) == (
        False,
        0,
        4,
    )
    assert registered_days(glue, "covid_test", "covid_daily_reports_usa") == written


def test_catalog_asset_projects_the_shared_table_without_per_day_calls(
    replay: ReplayServer, instance, s3_bucket: str
) -> None:
    env = {
        "API_URL": replay.url, "BUCKET_NAME": s3_bucket, "ISO_CODE": "USA,CAN",
        "CATALOG_MODE": "glue_projection", "GLUE_DATABASE": "covid_test",
    }  # fmt: skip
    defs = build_definitions(load_settings(env))
    first = catalog_metadata(backfill(defs, instance, "2020-04-01", "2020-04-03"))
    assert (first["table_created"], first["projection_updated"]) == (True, False)
    assert first["dagster/table_name"] == "glue:covid_test.covid_daily_reports_can_usa"
    glue = boto3.client("glue")
    table = glue.get_table(DatabaseName="covid_test", Name="covid_daily_reports_can_usa")["Table"]
    location = f"s3://{s3_bucket}/covid_daily_reports/can_usa/"
    assert table["StorageDescriptor"]["Location"] == location
    assert table["Parameters"]["projection.date.range"] == "2020-01-22,2023-03-09"
    assert table["Parameters"]["storage.location.template"] == f"{location}date=${{date}}/"
    assert registered_days(glue, "covid_test", "covid_daily_reports_can_usa") == []

    second = catalog_metadata(backfill(defs, instance, "2020-04-04", "2020-04-04"))
    assert (second["table_created"], second["projection_updated"]) == (False, False)
