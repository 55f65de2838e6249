"""The Hive Parquet IO manager in isolation: exact keys, metadata, reading days back."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource

from covid_pipeline.core.lake import day_files, stores
from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline.io_managers import HiveParquetIOManager
from covid_pipeline.partitions import DAILY_PARTITIONS
from covid_pipeline_tests.support.lake import replay_table

KEY = dg.AssetKey("covid_daily_reports")


def manager(tmp_path: Path) -> HiveParquetIOManager:
    return HiveParquetIOManager(prefix="covid/usa", warehouse_dir=str(tmp_path), s3=S3Resource())


def output_context(day: str) -> dg.OutputContext:
    return dg.build_output_context(
        asset_key=KEY, partition_key=day, asset_partitions_def=DAILY_PARTITIONS
    )


def write(manager: HiveParquetIOManager, context: dg.OutputContext, tables: dict) -> None:
    """Run handle_output to its end, as Dagster does (it is a generator)."""
    list(manager.handle_output(context, tables))


def test_io_manager_writes_the_exact_hive_key_with_metadata(tmp_path: Path) -> None:
    context = output_context("2021-01-15")
    write(manager(tmp_path), context, {"2021-01-15": replay_table("2021-01-15")})
    path = tmp_path / "covid/usa/date=2021-01-15/data.parquet"
    assert path.is_file()
    metadata = context.get_logged_metadata()
    assert metadata["dagster/row_count"].value == 56
    assert metadata["dagster/uri"].value == str(path)
    assert metadata["size_kib"].value == round(path.stat().st_size / 1024, 1)
    assert metadata["skipped"].value is False


def test_io_manager_skips_a_day_without_rows(tmp_path: Path) -> None:
    context = output_context("2021-01-15")
    write(manager(tmp_path), context, {"2021-01-15": SCHEMA.empty_table()})
    assert not (tmp_path / "covid/usa/date=2021-01-15").exists()
    metadata = context.get_logged_metadata()
    assert (metadata["skipped"].value, metadata["dagster/row_count"].value) == (True, 0)


def test_io_manager_refuses_an_output_missing_a_day(tmp_path: Path) -> None:
    with pytest.raises(dg.DagsterInvariantViolationError, match=r"missing: \['2021-01-15'\]"):
        write(manager(tmp_path), output_context("2021-01-15"), {})


def test_io_manager_loads_one_day_as_a_frame(tmp_path: Path) -> None:
    day_files.write_day(
        stores.LocalStore(tmp_path), "covid/usa", "2021-01-15", replay_table("2021-01-15"), "USA"
    )
    context = dg.build_input_context(
        asset_key=KEY, partition_key="2021-01-15", asset_partitions_def=DAILY_PARTITIONS
    )
    frame = manager(tmp_path).load_input(context)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 56 and list(frame.columns) == SCHEMA.names


def test_io_manager_loads_a_range_as_a_dict_without_skipped_days(tmp_path: Path) -> None:
    store = stores.LocalStore(tmp_path)
    for day in ("2021-01-15", "2021-01-17"):
        day_files.write_day(store, "covid/usa", day, replay_table(day), "USA")
    context = dg.build_input_context(
        asset_key=KEY,
        asset_partitions_def=DAILY_PARTITIONS,
        asset_partition_key_range=dg.PartitionKeyRange("2021-01-15", "2021-01-17"),
    )
    frames = manager(tmp_path).load_input(context)
    assert sorted(frames) == ["2021-01-15", "2021-01-17"]  # 2021-01-16 was skipped
    assert all(len(frame) == 56 for frame in frames.values())
