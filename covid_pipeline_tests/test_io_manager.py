"""The Hive Parquet IO manager in isolation: exact keys, metadata, reading days back."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from covid_pipeline.core.lake import day_files, parquet, stores
from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline.io_managers import DayTable, DayTables, HiveParquetIOManager
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
    days = [DayTable(day, table) for day, table in tables.items()]
    list(manager.handle_output(context, DayTables(days, "USA")))


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


def test_io_manager_refuses_a_day_the_run_did_not_ask_for(tmp_path: Path) -> None:
    """Days are written as they come, so a wrong one stops the output where it stands."""
    tables = {"2021-01-16": replay_table("2021-01-16")}
    with pytest.raises(dg.DagsterInvariantViolationError, match="2021-01-16 came out of order"):
        write(manager(tmp_path), output_context("2021-01-15"), tables)
    assert not list(tmp_path.rglob("*.parquet"))


def input_context(first: str, last: str, columns: list[str] | None = None) -> dg.InputContext:
    return dg.build_input_context(
        asset_key=KEY,
        asset_partitions_def=DAILY_PARTITIONS,
        asset_partition_key_range=dg.PartitionKeyRange(first, last),
        definition_metadata={"columns": columns} if columns else None,
    )


def test_io_manager_loads_a_range_lazily_with_none_for_skipped_days(tmp_path: Path) -> None:
    store = stores.LocalStore(tmp_path)
    for day in ("2021-01-15", "2021-01-17"):
        day_files.write_day(store, "covid/usa", day, replay_table(day), "USA")
    days = manager(tmp_path).load_input(input_context("2021-01-15", "2021-01-17"))
    assert len(days) == 3  # nothing read yet: the files are read as the days are iterated
    (tmp_path / "covid/usa/date=2021-01-17/data.parquet").unlink()
    loaded = dict(days)
    assert loaded["2021-01-16"] is None and loaded["2021-01-17"] is None  # skipped; removed
    assert loaded["2021-01-15"].num_rows == 56 and loaded["2021-01-15"].schema.names == SCHEMA.names


def test_io_manager_loads_only_the_columns_the_input_names(tmp_path: Path) -> None:
    """Dagster's convention for database IO managers: AssetIn(metadata={"columns": [...]})."""
    day_files.write_day(
        stores.LocalStore(tmp_path), "covid/usa", "2021-01-15", replay_table("2021-01-15"), "USA"
    )
    context = input_context("2021-01-15", "2021-01-15", ["iso", "confirmed"])
    [(day, table)] = list(manager(tmp_path).load_input(context))
    assert (day, table.column_names, table.num_rows) == ("2021-01-15", ["iso", "confirmed"], 56)


def test_io_manager_writes_day_tables_with_their_set_and_extra_metadata(tmp_path: Path) -> None:
    context = output_context("2021-01-15")
    tables = DayTables(
        [DayTable("2021-01-15", replay_table("2021-01-15"), {"new_cases_7d_avg": 12.5})],
        "CAN,USA",
    )
    list(manager(tmp_path).handle_output(context, tables))
    path = tmp_path / "covid/usa/date=2021-01-15/data.parquet"
    assert parquet.countries_of(pq.read_table(path)) == "CAN,USA"
    assert context.get_logged_metadata()["new_cases_7d_avg"].value == 12.5
