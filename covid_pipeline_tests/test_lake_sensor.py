"""The lake sensor's tick over a shared lake that holds files which are not days of ours.

The tick is evaluated as the daemon evaluates it (`build_sensor_context` with a real instance
and the IO manager's store over a real local warehouse), and its events are stored the way the
daemon stores a `SensorResult`'s, through the instance's public `report_runless_asset_event`.
The same tick against `dagster dev`, the daemon and S3, with the tick's log read back through
the UI's GraphQL, is in test_one_lake.py.
"""

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.lake.layout import partition_key
from covid_pipeline.io_managers import HiveParquetIOManager
from covid_pipeline.lake_sensor import build_lake_sensor
from covid_pipeline_tests.support.lake import (
    STRAY_KINDS,
    replay_table,
    write_days,
    write_stray_file,
)

PREFIX = "covid_daily_reports/usa"
DAILY = dg.AssetKey("covid_daily_reports")
DAYS = [str(day) for day in day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 8))]
HTML, TRUNCATED, FOREIGN, UNSTAMPED = DAYS[1], DAYS[3], DAYS[5], DAYS[6]


def tick(instance: dg.DagsterInstance, warehouse: Path, cursor: str | None) -> Any:
    """One tick; its events are stored as the daemon stores them. Returns the tick's result."""
    sensor = build_lake_sensor(60)
    manager = HiveParquetIOManager(prefix=PREFIX, warehouse_dir=str(warehouse), s3=S3Resource())
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"hive_parquet_io_manager": manager}
    ) as context:
        result = sensor(context)
    for event in getattr(result, "asset_events", []):
        instance.report_runless_asset_event(event)
    return result


def observations(instance: dg.DagsterInstance) -> dict[str, dg.AssetObservation]:
    records = instance.fetch_observations(DAILY, limit=100).records
    return {record.partition_key: record.asset_observation for record in records}


def materialized(instance: dg.DagsterInstance) -> list[str]:
    records = instance.fetch_materializations(DAILY, limit=100).records
    return sorted(record.partition_key for record in records)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A week of days written by the pipeline, three of them replaced by files not ours."""
    warehouse = tmp_path / "warehouse"
    write_days(warehouse, [dt.date.fromisoformat(day) for day in DAYS])
    path = {day: warehouse / partition_key(PREFIX, day) for day in DAYS}
    for day, kind in zip((HTML, TRUNCATED, FOREIGN), STRAY_KINDS, strict=True):
        write_stray_file(path[day], kind)
    # The project's schema without the writer stamps: files from before them are still ours.
    pq.write_table(replay_table(UNSTAMPED), path[UNSTAMPED], compression="snappy")
    return warehouse


@pytest.mark.reliability(
    "Lake",
    "the lake sensor ticks over files not ours at days' keys: an HTML page, a truncated "
    "copy, another schema",
    "the tick succeeds and records every other day (an unstamped file of our schema too); "
    "each bad file is named in the tick's log and on its day in the UI, once; after a "
    "re-run replaces it, the next tick records it",
)
def test_lake_sensor_records_every_other_day_and_names_each_file_not_ours(lake: Path) -> None:
    with dg.instance_for_test() as instance:
        result = tick(instance, lake, None)
        assert isinstance(result, dg.SensorResult)
        assert json.loads(result.cursor or "") == {"after": None}  # the whole prefix: start again
        bad = {HTML, TRUNCATED, FOREIGN}
        assert materialized(instance) == [day for day in DAYS if day not in bad]
        writers = {
            record.partition_key: record.asset_materialization.metadata["writer"].value
            for record in instance.fetch_materializations(DAILY, limit=100).records
        }
        assert writers[UNSTAMPED].startswith("unknown") and writers[DAYS[0]] == "covid_pipeline"

        reported = observations(instance)
        assert set(reported) == bad
        assert "not a Parquet file" in reported[HTML].metadata["problem"].value
        assert "not a Parquet file" in reported[TRUNCATED].metadata["problem"].value
        assert reported[FOREIGN].metadata["problem"].value.startswith("another schema: no column")
        for day, observation in reported.items():
            assert observation.metadata["stray_file"].value == str(
                lake / partition_key(PREFIX, day)
            )
            assert "re-run that day" in (observation.description or "")

        # Reported once: the next sweep finds nothing new.
        assert isinstance(tick(instance, lake, None), dg.SkipReason)
        assert len(instance.fetch_observations(DAILY, limit=100).records) == 3

        # A re-run replaces the truncated file: the next tick records that day as usual.
        repaired = lake / partition_key(PREFIX, TRUNCATED)
        write_days(lake, [dt.date.fromisoformat(TRUNCATED)])
        later = repaired.stat().st_mtime + 2  # past the observation, whatever the clock's grain
        os.utime(repaired, (later, later))
        assert isinstance(tick(instance, lake, None), dg.SensorResult)
        assert materialized(instance) == [day for day in DAYS if day not in {HTML, FOREIGN}]
