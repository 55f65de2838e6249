"""The IO manager that runs a range of days into a Hive-partitioned Parquet data lake.

The daily asset hands it a `RangeRequest`: the days, the API client and the knobs. It runs them
through `core.engine.run.run_range` (the one assembly the Lambda handler shares), so each day is
written the moment it arrives, fetching, encoding and uploading overlap, and memory stays flat
however long the range. A run over many partitions is one output, which Dagster's UPath-based
managers refuse (dagster issue 14332); this one takes it, so `BackfillPolicy.single_run()`
backfills a whole range in one run. Keys come from `core.lake.day_files`, so every writer agrees.

It is where a Dagster run writes and records its days. Each day's metadata is recorded as it
lands; when the run succeeds Dagster turns it into one materialization per day, and the
range's outcome goes back to the asset through the request, for its checks. When days failed,
or the run is stopped, the days written so far are recorded here before the step fails, and
only those: a failed day never shows as materialized.
"""

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from covid_pipeline.core import config
from covid_pipeline.core.config import storage_problems
from covid_pipeline.core.engine.report import ProgressCallback, short_list
from covid_pipeline.core.engine.run import RangeOptions, RangeOutcome, run_range, write_tables
from covid_pipeline.core.lake import day_files, parquet, stores
from covid_pipeline.core.source.api import CovidApiClient
from covid_pipeline.resources import DEFAULTS


@dataclass(eq=False)
class RangeRequest:
    """What the daily asset asks the IO manager to run; the outcome comes back through it.

    `outcome` is the one value that travels back, set once by the IO manager when every day
    has landed; the asset reads it after its output is handled, for the checks. (Not frozen:
    a Future is set after the request is made.)
    """

    client: CovidApiClient
    days: tuple[dt.date, ...]
    options: RangeOptions
    on_progress: ProgressCallback
    outcome: "Future[RangeOutcome]" = field(default_factory=Future, compare=False)


@dataclass(frozen=True)
class DayTable:
    """One day of an output its asset computes: the table (no rows: skipped) and figures."""

    day: str
    table: pa.Table
    # Figures for the UI, added to the day's materialization beside the file's own.
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DayTables:
    """What an asset that computes its days (covid_country_daily) hands the IO manager.

    `days` yields one DayTable per day of the output, in day order, and may compute each as
    it is asked for: the IO manager writes each day as it comes, so computing and writing
    overlap. The country set's label is stamped in each file, as the raw days' is.
    """

    days: Iterable[DayTable]
    countries: str


class HiveParquetIOManager(dg.ConfigurableIOManager):
    """Daily Snappy Parquet at <prefix>/date=YYYY-MM-DD/data.parquet, on S3 or on local disk.

    With `bucket_name` set, files go to s3://<bucket_name>/<prefix>/...; without it, under
    `warehouse_dir`. A day with no rows is skipped: no file, and its metadata says so.
    """

    prefix: str
    bucket_name: str | None = DEFAULTS.bucket_name
    warehouse_dir: str = DEFAULTS.warehouse_dir
    write_concurrency: int = DEFAULTS.write_concurrency
    s3: dg.ResourceDependency[S3Resource]
    # Made at first use and kept for the run: an S3 client takes 0.2-0.5 s to build, and a
    # run asks for the store up to three times (preflight, load_input, handle_output).
    _store: stores.Store | None = PrivateAttr(default=None)

    def store(self) -> stores.Store:
        """The bucket or directory this manager writes to (run config is checked again here)."""
        if self._store is not None:
            return self._store
        problems = storage_problems(self.bucket_name, self.prefix)
        if problems:
            raise dg.Failure(
                description="hive_parquet_io_manager config: " + "; ".join(problems),
                allow_retries=False,
            )
        where = config.settings_with(
            {"bucket_name": self.bucket_name, "warehouse_dir": self.warehouse_dir}
        )
        self._store = config.store(where, self.s3.get_client, self.prefix)
        return self._store

    def preflight(self, countries: str) -> None:
        """Fail now, before anything is fetched, if the store clearly cannot be written.

        Or if the prefix holds another country set's files (see core.lake.day_files).
        """
        with _stop_on_storage_access_error():
            day_files.check_ready(self.store(), self.prefix, countries)

    def handle_output(  # type: ignore[override]  # a generator: see log_materializations
        self, context: dg.OutputContext, obj: RangeRequest | DayTables
    ) -> Iterator[dg.DagsterEvent]:
        """Run the asset's `RangeRequest`, or write its `DayTables` (a day without rows: skip).

        Each day is recorded as it lands. Fails the step, after recording the days written,
        when any day failed to arrive or to be written.
        """
        days = list(context.asset_partition_keys)
        store = self.store()
        recorder = _Recorder(context, days)
        writer = parquet.dagster_writer(context.run_id)
        try:
            with _stop_on_storage_access_error():
                if isinstance(obj, RangeRequest):
                    outcome = run_range(
                        obj.client,
                        store,
                        self.prefix,
                        obj.days,
                        obj.options,
                        writer=writer,
                        on_landed=recorder.record,
                        on_progress=obj.on_progress,
                    )
                else:
                    outcome = write_tables(
                        _each_day_once(context, obj, days, recorder),
                        store,
                        self.prefix,
                        obj.countries,
                        days=days,
                        writer=writer,
                        write_concurrency=self.write_concurrency,
                        on_landed=recorder.record,
                    )
        except (Exception, KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
            # A failed or stopped step records nothing by itself: the days that did land
            # must still show as materialized, with their files.
            yield from recorder.log_materializations()
            raise
        if isinstance(obj, RangeRequest):
            obj.outcome.set_result(outcome)
        if outcome.failed:
            yield from recorder.log_materializations()
            raise dg.Failure(
                description=outcome.failure_message(),
                metadata={
                    "failed_days": sorted(outcome.failed),
                    "written_days": len(outcome.written),
                },
                allow_retries=False,  # the API client has retried already: one retry budget
            )
        recorder.summarise(outcome)

    def load_input(self, context: dg.InputContext) -> day_files.LakeDays:
        """The input's days, read as they are iterated: (day, Arrow table, or None: no file).

        Nothing is read here: a downstream asset streams the days through, a few at a time,
        so the whole history fits in the memory of a few days. The input's metadata may name
        the `columns` to read (Dagster's convention: `AssetIn(metadata={"columns": [...]})`);
        the others, the nested counties first, are never decoded.
        """
        columns = context.definition_metadata.get("columns")
        return day_files.LakeDays(
            self.store(),
            self.prefix,
            tuple(context.asset_partition_keys),
            tuple(columns) if columns is not None else None,
            read_ahead=self.write_concurrency,
        )


@contextlib.contextmanager
def _stop_on_storage_access_error() -> Iterator[None]:
    try:
        yield
    except stores.StorageAccessError as error:
        # No retry: a missing bucket or a denied write will be just as wrong in 10 seconds.
        raise dg.Failure(description=str(error), allow_retries=False) from None


def _each_day_once(
    context: dg.OutputContext, output: DayTables, days: list[str], recorder: "_Recorder"
) -> Iterator[tuple[str, pa.Table]]:
    """(day, table) of each DayTable as it comes, its figures handed to the recorder.

    Raises:
        DagsterInvariantViolationError: the output is not DayTables, or its days are not
            the run's days, each once (the days before the wrong one are written).
    """
    expected = iter(days)
    for day_table in output.days if isinstance(output, DayTables) else ():
        if day_table.day != next(expected, None):
            raise _not_each_day(context, f"{day_table.day} came out of order, twice or unasked")
        recorder.extra[day_table.day] = day_table.metadata
        yield day_table.day, day_table.table
    missing = list(expected)
    if missing:
        raise _not_each_day(context, f"missing: {missing[:10]}")


def _not_each_day(context: dg.OutputContext, problem: str) -> dg.DagsterInvariantViolationError:
    return dg.DagsterInvariantViolationError(
        f"{context.asset_key.to_user_string()} must return a RangeRequest, or DayTables with a "
        f"table for every day of its run, in order (an empty table for a day without data); "
        f"{problem}"
    )


class _Recorder:
    """Records each day's metadata as it lands, for Dagster's per-day materializations."""

    def __init__(
        self,
        context: dg.OutputContext,
        days: list[str],
    ) -> None:
        self.context = context
        self.days = days
        self.extra: dict[str, Mapping[str, Any]] = {}  # day -> its figures from the asset
        self.metadata: dict[str, dict[str, Any]] = {}  # day -> its metadata, as they landed

    def record(self, day: str, file: day_files.WrittenFile | None) -> None:
        """Called as a day lands (None: skipped, no data)."""
        metadata = self.metadata[day] = day_metadata(file) | dict(self.extra.get(day, {}))
        if len(self.days) == 1:
            self.context.add_output_metadata(metadata)
        else:
            # add_output_metadata applies to every partition of the output; per-day figures
            # need partition-scoped metadata, which Dagster merges into that day's
            # materialization event after handle_output returns.
            self.context.step_context.add_asset_metadata(metadata, partition_key=day)

    def log_materializations(self) -> Iterator[dg.DagsterEvent]:
        """A materialization for each day that landed, logged now: the step is about to fail."""
        for day, metadata in sorted(self.metadata.items()):
            self.context.log_event(
                dg.AssetMaterialization(self.context.asset_key, partition=day, metadata=metadata)
            )
        # Yielded from this generator, the events are stored before the failure ends the step
        # (events merely logged on the context would be lost with it).
        yield from self.context.consume_events()

    def summarise(self, outcome: RangeOutcome) -> None:
        """One log line for the whole run; the per-day metadata holds per-day facts only."""
        skipped = outcome.skipped
        without = f"; skipped {len(skipped)} without data: {short_list(list(skipped))}"
        self.context.log.info(
            f"wrote {len(outcome.written)} of {len(self.days)} days" + (without if skipped else "")
        )


def day_metadata(file: day_files.WrittenFile | None) -> dict[str, Any]:
    """A day's materialization metadata: its file, or that it was skipped (None)."""
    if file is None:
        return {"dagster/row_count": 0, "skipped": True, "skip_reason": "the API had no data"}
    return {
        "dagster/row_count": file.rows,
        "dagster/uri": file.uri,
        "size_kib": round(file.bytes / 1024, 1),
        "skipped": False,
    }
