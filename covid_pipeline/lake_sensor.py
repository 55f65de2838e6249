"""The lake sensor: Dagster learns of every day in the lake, whoever wrote it.

A direct Lambda invocation, or a run killed before it could record its days (an OOM kill),
leaves files that Dagster knows nothing of: the days would show as missing and "backfill
missing" would fetch them again. Each tick lists one page of the prefix (up to 1,000 keys: one
S3 LIST), and for each file written after Dagster last recorded its day, reads the file once
and reports a runless materialization of that day with a run's per-day metadata and the
writer stamped in the file. It never calls the API.

A file stamped by a Dagster run still in progress is left to that run, which records its days
when it ends. A file at a day's key that is not a day of ours (not Parquet, cut short,
unreadable, another schema: core.lake.scan) is never recorded: the tick goes on to the other
files, names it in its log, and reports it on that day in the UI as an observation saying what
to do. It is reported once; once the file is replaced (a re-run), the next tick records it. The
cursor is the last key examined; at the end of the prefix the next tick starts
again from the first page, so a prefix of 1,143 days is swept in two ticks.
"""

import json

import dagster as dg

from covid_pipeline.core.lake import parquet, scan, stores
from covid_pipeline.core.lake.day_files import WrittenFile
from covid_pipeline.io_managers import HiveParquetIOManager, day_metadata

KEYS_PER_TICK = stores.S3_PAGE_KEYS  # one LIST a tick
# Each report is one GET and one event write (Dagster stores them one by one, dagster issue
# 18149): a tick must end well inside the daemon's 60 s sensor timeout on a slow store.
REPORTS_PER_TICK = 200
DAILY = dg.AssetKey("covid_daily_reports")


def build_lake_sensor(interval_s: int) -> dg.SensorDefinition:
    """The sensor, ticking every `interval_s` seconds, running from the start."""

    @dg.sensor(
        name="covid_lake_observer",
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lists the lake's prefix a page a tick and records, as runless "
        "materializations, the days written outside Dagster's record (a Lambda invocation, "
        "a killed run), and reports on its day any file there that is not a readable day. "
        "Never calls the API.",
    )
    def covid_lake_observer(
        context: dg.SensorEvaluationContext,
        hive_parquet_io_manager: dg.ResourceParam[HiveParquetIOManager],
    ) -> dg.SensorResult | dg.SkipReason:
        store = hive_parquet_io_manager.store()
        prefix = hive_parquet_io_manager.prefix
        after = json.loads(context.cursor)["after"] if context.cursor else None
        listing = store.list_files(prefix, after, KEYS_PER_TICK)
        changed = scan.changed_since_recorded(
            listing.files, _recorded_at(context.instance, listing.files)
        )
        events: list[dg.AssetMaterialization | dg.AssetObservation] = []
        left_to_runs = 0
        for file in changed[:REPORTS_PER_TICK]:
            found = scan.read_day_file(store, file)
            if found is None:
                continue
            if isinstance(found, scan.StrayFile):
                context.log.warning(found.message())
                events.append(_stray_file_observation(found))
                continue
            if _run_in_progress(context.instance, parquet.dagster_run_of(found.writer)):
                left_to_runs += 1
                continue
            events.append(_materialization(found))
        # Resume after the last file examined; past the prefix's end, from its start.
        resume = changed[REPORTS_PER_TICK - 1].key if len(changed) > REPORTS_PER_TICK else None
        cursor = json.dumps({"after": resume or listing.resume_after})
        scanned = f"{len(listing.files)} files listed after {after or 'the start'} of {prefix}"
        if not events:
            context.update_cursor(cursor)
            waiting = f"; {left_to_runs} left to the runs writing them" if left_to_runs else ""
            return dg.SkipReason(f"nothing new: {scanned}{waiting}")
        strays = sum(isinstance(event, dg.AssetObservation) for event in events)
        context.log.info(
            f"recording {len(events) - strays} days written outside Dagster"
            + (f" and {strays} files that are not days (named above)" if strays else "")
            + f": {scanned}"
        )
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return covid_lake_observer


def _recorded_at(instance: dg.DagsterInstance, files: list[stores.StoredFile]) -> dict[str, float]:
    """Day -> when Dagster last recorded it, for the days recorded since the oldest file.

    A materialization records a day; an observation (this sensor's report of a stray file)
    records that its file was seen, so the file is not reported again until it changes.
    """
    if not files:
        return {}
    records_filter = dg.AssetRecordsFilter(
        asset_key=DAILY,
        asset_partitions=[file.day for file in files],
        after_timestamp=min(file.modified for file in files) - 1,
    )
    recorded: dict[str, float] = {}
    for fetch in (instance.fetch_materializations, instance.fetch_observations):
        cursor = None
        while True:
            page = fetch(records_filter, limit=1000, cursor=cursor)
            for record in page.records:
                if record.partition_key is not None:
                    recorded[record.partition_key] = max(
                        recorded.get(record.partition_key, 0.0), record.timestamp
                    )
            if not page.has_more:
                break
            cursor = page.cursor
    return recorded


def _run_in_progress(instance: dg.DagsterInstance, run_id: str | None) -> bool:
    if run_id is None:
        return False
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def _materialization(found: scan.DayFile) -> dg.AssetMaterialization:
    file = found.file
    written = WrittenFile(day=file.day, uri=file.uri, rows=found.rows, bytes=file.bytes)
    return dg.AssetMaterialization(
        DAILY,
        partition=file.day,
        metadata=day_metadata(written)
        | {
            "writer": found.writer or "unknown (a file written before writers were stamped)",
            "file_modified": scan.modified_utc(file),
            "recorded_by": "covid_lake_observer",
        },
    )


def _stray_file_observation(stray: scan.StrayFile) -> dg.AssetObservation:
    """The day's page in the UI shows what is wrong with its file and what to do."""
    return dg.AssetObservation(
        DAILY,
        partition=stray.file.day,
        description=stray.message(),
        metadata={
            "stray_file": dg.MetadataValue.path(stray.file.uri),
            "problem": stray.reason,
            "remedy": scan.REMEDY,
            "file_modified": scan.modified_utc(stray.file),
            "recorded_by": "covid_lake_observer",
        },
    )
