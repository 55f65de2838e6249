"""The pipeline's assets: thin wrappers that resolve partitions and call the core."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from covid_pipeline.core import checks, pipeline, transform
from covid_pipeline.fanout import LambdaFanoutResource, run_in_lambda
from covid_pipeline.io_managers import HiveParquetIOManager, day_metadata
from covid_pipeline.partitions import DAILY_PARTITIONS
from covid_pipeline.resources import CatalogResource, CovidApiResource

_DAILY = dg.AssetKey("covid_daily_reports")
# On the definition, not on each day's event: the schema is the same every day, and a copy in
# each of 1143 materialization events would cost a backfill seconds of event-log writes.
_COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, str(type_), description=description)
        for name, type_, _nullable, description in transform.COLUMNS
    ]
)
_CHECKS = {
    "schema_as_documented": dg.AssetCheckSeverity.ERROR,
    "cumulative_counts_non_negative": dg.AssetCheckSeverity.ERROR,
    "names_present": dg.AssetCheckSeverity.ERROR,
    "row_count_steady": dg.AssetCheckSeverity.WARN,  # sources do change granularity, rarely
}


@dg.asset(
    partitions_def=DAILY_PARTITIONS,
    # A range is one run: one run per day costs Dagster seconds each, an hour for the history.
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="hive_parquet_io_manager",
    group_name="covid",
    kinds={"parquet", "python"},
    retry_policy=dg.RetryPolicy(
        max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    check_specs=[dg.AssetCheckSpec(name, asset=_DAILY) for name in _CHECKS],
    metadata={"dagster/column_schema": _COLUMN_SCHEMA},
)
def covid_daily_reports(
    context: dg.AssetExecutionContext,
    covid_api: CovidApiResource,
    lambda_fanout: LambdaFanoutResource,
    hive_parquet_io_manager: dg.ResourceParam[HiveParquetIOManager],
) -> Iterator[dg.Output | dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
    """Daily COVID-19 reports for one country: a row per region (province or country) per day.

    From the COVID-19 Statistics API (https://covid-api.com/api, `GET /reports?date=&iso=`),
    with US counties nested as `cities`. Re-running a day replaces its file, so backfills are
    idempotent; a day the API has no data for is skipped (no file) and its metadata says so.
    A day that fails fails the run, named with its cause; the run's other days are written.
    """
    if not context.partition_keys:  # what a reversed --partition-range END...START gives
        raise dg.Failure(
            description="this run targets no day: give the range as START...END, start first "
            "(e.g. --partition-range 2021-01-01...2021-01-31)",
            allow_retries=False,
        )
    if lambda_fanout.enabled:
        yield from _run_in_lambda(context, lambda_fanout, covid_api.iso_code)
        return
    hive_parquet_io_manager.preflight()  # a missing bucket fails now, not after the fetches
    days = [dt.date.fromisoformat(key) for key in context.partition_keys]
    context.log.info(
        f"fetching {len(days)} days of {covid_api.iso_code} from {covid_api.api_url} "
        f"({covid_api.fetch_concurrency} at a time)"
    )
    client = covid_api.client()
    try:
        outcome = pipeline.fetch_days(
            client, days, concurrency=covid_api.fetch_concurrency, on_progress=context.log.info
        )
    finally:
        client.close()
    if outcome.failures:
        # A failed step's output never reaches the IO manager, so the days that did arrive are
        # written through it here, each recorded as its partition's materialization.
        written = hive_parquet_io_manager.write(outcome.tables, context.log)
        for day, file in written.items():  # yielded: events logged on a failing step are lost
            yield dg.AssetMaterialization(_DAILY, partition=day, metadata=day_metadata(file))
        raise dg.Failure(
            description=outcome.failure_report()
            + f"\nThe other {len(written)} days were written, each file whole. Re-run the same "
            "range once the cause is fixed: days are overwritten, never duplicated.",
            metadata={"failed_days": sorted(outcome.failures), "written_days": len(written)},
            allow_retries=outcome.transient,  # a schema problem will not pass on a retry
        )
    yield dg.Output(outcome.tables)
    yield from _check_results(checks.run_all(outcome.tables, covid_api.iso_code))


def _run_in_lambda(
    context: dg.AssetExecutionContext, lambda_fanout: LambdaFanoutResource, iso_code: str
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The opt-in fan-out: the Lambda writes the files; the run records what it reported."""
    days = list(context.partition_keys)
    outcome = run_in_lambda(context, lambda_fanout, days)
    for day, file in outcome.written.items():
        context.add_asset_metadata(day_metadata(file), partition_key=day)
    for day in outcome.skipped:
        context.add_asset_metadata(day_metadata(None), partition_key=day)
    if outcome.failed:
        raise dg.Failure(
            description=pipeline.failure_report(outcome.failed, len(days), "failed in Lambda")
            + f"\nThe other {len(outcome.written)} days were written, each file whole. Re-run "
            "the same range once the cause is fixed: days are overwritten, never duplicated.",
            metadata={"failed_days": sorted(outcome.failed), "written_days": len(outcome.written)},
            allow_retries=False,
        )
    yield dg.MaterializeResult(
        metadata={
            "execution": "lambda",
            "invocations": outcome.invocations,
            "run_days_written": len(outcome.written),
            "run_days_skipped": len(outcome.skipped),
        }
    )
    rows = {day: 0 for day in outcome.skipped} | {d: f.rows for d, f in outcome.written.items()}
    yield from _check_results(checks.merge(outcome.check_failures, rows, iso_code))


def _check_results(outcomes: list[checks.CheckOutcome]) -> Iterator[dg.AssetCheckResult]:
    for result in outcomes:
        yield dg.AssetCheckResult(
            check_name=result.name,
            passed=result.passed,
            severity=_CHECKS[result.name],
            description=result.description,
            metadata={
                "checked_days": result.checked_days,
                "failing_days": len(result.failing_days),
                "failures": dg.MetadataValue.json(dict(sorted(result.failing_days.items())[:50])),
            },
        )


def build_catalog_asset(kind: str) -> dg.AssetsDefinition:
    """The catalog asset, labelled with the technology that catalogs (duckdb or glue)."""

    @dg.asset(
        deps=[covid_daily_reports],
        group_name="covid",
        kinds={kind},
        # Needed for `dagster asset materialize --partition-range` to include this asset.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Once after new days land, not once per day, and never while days are still landing.
        automation_condition=(
            dg.AutomationCondition.any_deps_updated().since_last_handled()
            & ~dg.AutomationCondition.any_deps_in_progress()
            & ~dg.AutomationCondition.in_progress()
        ),
    )
    def covid_catalog_table(
        context: dg.AssetExecutionContext, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        """The written days, cataloged so they can be queried with SQL.

        Locally a DuckDB view over the warehouse (`covid-pipeline query`); in AWS the Glue Data
        Catalog table that Athena queries, kept current by the Glue crawler or by registering
        new `date=` partitions directly. Runs once after a backfill's days have all landed.
        """
        return dg.MaterializeResult(metadata=catalog.refresh(context.log))

    return covid_catalog_table
