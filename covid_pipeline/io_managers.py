"""The IO manager that turns daily tables into a Hive-partitioned Parquet data lake.

It accepts an output that covers many partitions (a dict of day -> table), which Dagster's
UPath-based managers refuse (dagster issue 14332), so that `BackfillPolicy.single_run()`
backfills a whole range in one run. Keys come from `core.storage`, so every writer agrees.
"""

import contextlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from dagster_aws.s3 import S3Resource

from covid_pipeline.core import storage, transform
from covid_pipeline.core.config import storage_problems
from covid_pipeline.core.pipeline import short_list, write_days


class HiveParquetIOManager(dg.ConfigurableIOManager):
    """Daily Snappy Parquet at <prefix>/date=YYYY-MM-DD/data.parquet, on S3 or on local disk.

    With `bucket_name` set, files go to s3://<bucket_name>/<prefix>/...; without it, under
    `warehouse_dir`. A day with no rows is skipped: no file, and its metadata says so.
    """

    prefix: str
    bucket_name: str | None = None
    warehouse_dir: str = "warehouse"
    write_concurrency: int = 8
    s3: dg.ResourceDependency[S3Resource]

    def store(self) -> storage.Store:
        """The bucket or directory this manager writes to (run config is checked again here)."""
        problems = storage_problems(self.bucket_name, self.prefix)
        if problems:
            raise dg.Failure(
                description="hive_parquet_io_manager config: " + "; ".join(problems),
                allow_retries=False,
            )
        if self.bucket_name:
            return storage.S3Store(self.bucket_name, self.s3.get_client(), self.prefix)
        return storage.LocalStore(self.warehouse_dir)

    def preflight(self) -> None:
        """Fail now, before anything is fetched, if the store clearly cannot be written."""
        with _stop_on_storage_access_error():
            self.store().preflight(self.prefix)

    def write(
        self, tables: Mapping[str, pa.Table], log: dg.DagsterLogManager
    ) -> dict[str, storage.WrittenFile | None]:
        """Write each day's table (None: no rows, skipped); the asset uses it for partial runs."""
        with _stop_on_storage_access_error():
            return write_days(
                self.store(),
                self.prefix,
                tables,
                concurrency=self.write_concurrency,
                on_progress=log.info,
            )

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, pa.Table]) -> None:
        """Write one file per day in `obj`, concurrently, and record per-day metadata."""
        days = list(context.asset_partition_keys)
        missing = sorted(set(days) - set(obj))
        if not isinstance(obj, Mapping) or missing:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} must return a table for every day of "
                f"its run (an empty table for a day without data); missing: {missing[:10]}"
            )
        written = self.write({day: obj[day] for day in days}, context.log)
        for day in days:
            _add_partition_metadata(context, days, day, day_metadata(written[day]))
        skipped = [day for day, file in written.items() if file is None]
        if skipped:
            context.log.info(f"skipped {len(skipped)} days without data: {short_list(skipped)}")
        if len(days) > 1:
            context.add_output_metadata(
                {
                    "run_days_written": len(days) - len(skipped),
                    "run_days_skipped": len(skipped),
                }
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """One day as a DataFrame (empty if skipped), or a range as {day: DataFrame}.

        In a range, days without a file (skipped: no data) are absent, not an error.
        """
        days = list(context.asset_partition_keys)
        store = self.store()
        with ThreadPoolExecutor(max_workers=self.write_concurrency) as pool:
            tables = dict(
                zip(
                    days,
                    pool.map(lambda day: storage.read_day(store, self.prefix, day), days),
                    strict=True,
                )
            )
        if len(days) == 1:
            table = tables[days[0]]
            return (table if table is not None else transform.SCHEMA.empty_table()).to_pandas()
        return {day: table.to_pandas() for day, table in tables.items() if table is not None}


@contextlib.contextmanager
def _stop_on_storage_access_error() -> Iterator[None]:
    try:
        yield
    except storage.StorageAccessError as error:
        # No retry: a missing bucket or a denied write will be just as wrong in 10 seconds.
        raise dg.Failure(description=str(error), allow_retries=False) from None


def day_metadata(file: storage.WrittenFile | None) -> dict[str, Any]:
    """A day's materialization metadata: its file, or that it was skipped (None)."""
    if file is None:
        return {"dagster/row_count": 0, "skipped": True, "skip_reason": "the API had no data"}
    return {
        "dagster/row_count": file.rows,
        "dagster/uri": file.uri,
        "size_bytes": file.bytes,
        "skipped": False,
    }


def _add_partition_metadata(
    context: dg.OutputContext, days: list[str], day: str, metadata: dict[str, Any]
) -> None:
    if len(days) == 1:
        context.add_output_metadata(metadata)
        return
    # add_output_metadata applies to every partition of the output; per-day figures need the
    # partition-scoped metadata that assets set with context.add_asset_metadata. Dagster
    # merges it into that day's materialization event after handle_output returns.
    context.step_context.add_asset_metadata(metadata, partition_key=day)
