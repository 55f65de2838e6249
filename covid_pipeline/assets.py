"""The pipeline's assets: thin wrappers that resolve partitions and call the core."""

import dataclasses
import datetime as dt
import os
import warnings
from collections.abc import Iterator, Mapping

import dagster as dg

from covid_pipeline.catalog import CatalogedTable, CatalogResource
from covid_pipeline.core import config
from covid_pipeline.core.engine import workers
from covid_pipeline.core.engine.report import run_failure_message
from covid_pipeline.core.lake import parquet
from covid_pipeline.core.schema import checks, transform
from covid_pipeline.fanout import LambdaFanoutResource, run_in_lambda
from covid_pipeline.io_managers import HiveParquetIOManager, RangeRequest, day_metadata
from covid_pipeline.partitions import DAILY_PARTITIONS
from covid_pipeline.resources import CovidApiResource

# BackfillPolicy is beta in Dagster 1.13, and this project relies on it on purpose (a range is
# one run); its warning, printed at every code load, would only be noise to the project's users.
warnings.filterwarnings(
    "ignore", message="Parameter `backfill_policy` of function `asset`", category=dg.BetaWarning
)

_DAILY = dg.AssetKey("covid_daily_reports")
API_POOL = "covid_api"
# Who answers for the assets, and how the UI can filter them (Dagster's owners and tags).
OWNERS = ["team:data-engineering"]
TAGS = {"domain": "public-health", "source": "covid-api"}
# The CLI without DAGSTER_HOME runs on an instance it makes and deletes: no record, no pool.
_THROWAWAY_INSTANCE = (
    "DAGSTER_HOME is not set, so this run is on a throwaway Dagster instance: its record of "
    "these days is deleted when the command ends, and it does not share the deployment's API "
    "pool. To keep the record, set DAGSTER_HOME to the deployment's home, e.g. the project's: "
    "export DAGSTER_HOME=$PWD/.dagster_home (make install created it), then run again."
)
# On the definition, not on each day's event: the schema is the same every day, and a copy in
# each of 1143 materialization events would cost a backfill seconds of event-log writes.
_COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, str(type_), description=description)
        for name, type_, _nullable, description in transform.COLUMNS
    ]
)
# Once after new days land, not once per day, and never while days are still landing.
AFTER_NEW_DAYS = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
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
    # The API's one budget: every run of the deployment takes a slot of this pool, which the
    # project's instance file limits to one, so FETCH_CONCURRENCY is the most in flight.
    pool=API_POOL,
    io_manager_key="hive_parquet_io_manager",
    group_name="covid",
    # The storage's kind (s3 or local) is added by `with_storage_kind`, from the settings.
    kinds={"parquet", "python"},
    owners=OWNERS,
    tags=TAGS | {"layer": "raw"},
    # Changes when what a day's file holds changes (core.lake.parquet.FORMAT_VERSION and SCHEMA),
    # so the UI flags the days written by an older one.
    code_version=parquet.format_version(),
    # No step retry policy: the API client retries each request (the one retry budget), a
    # retried step would fetch every day again, and Dagster would retry a stop (an interrupt).
    check_specs=[
        dg.AssetCheckSpec(name, asset=_DAILY, description=checks.ABOUT[name]) for name in _CHECKS
    ],
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
    if "DAGSTER_HOME" not in os.environ:  # said before any fetch, where the CLI prints it
        context.log.warning(_THROWAWAY_INSTANCE)
    if lambda_fanout.enabled:
        yield from _run_in_lambda(context, lambda_fanout, covid_api.countries().label)
        return
    # The resources' fields as settings, checked once: the client and the knobs come from them.
    settings = dataclasses.replace(
        covid_api.settings(), write_concurrency=hive_parquet_io_manager.write_concurrency
    )
    client = config.api_client(settings)
    # A missing bucket, or a prefix of another country set, fails now, not after the fetches.
    hive_parquet_io_manager.preflight(client.countries.label)
    request = RangeRequest(
        client,
        tuple(dt.date.fromisoformat(key) for key in context.partition_keys),
        config.range_options(settings),
        on_progress=context.log.info,
    )
    processes = workers.workers_for(covid_api.cpu_workers, len(request.days))
    context.log.info(
        f"fetching {len(request.days)} days of {client.countries.label} from "
        f"{covid_api.api_url}, {covid_api.fetch_concurrency} at a time"
        + (f", decoded in {processes} processes" if processes else "")
    )
    try:
        # The IO manager runs the range, writing and recording each day as it arrives.
        yield dg.Output(request)
    finally:
        client.close()
    # Set by the IO manager once every day has landed (see io_managers.RangeRequest).
    if not request.outcome.done():
        raise dg.DagsterInvariantViolationError(
            "covid_daily_reports hands its days to hive_parquet_io_manager, which runs them: "
            "another IO manager under that key never ran the range"
        )
    yield from check_results(request.outcome.result().check_outcomes(), _CHECKS)


def _run_in_lambda(
    context: dg.AssetExecutionContext, lambda_fanout: LambdaFanoutResource, countries: str
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
    """The opt-in fan-out: the Lambda writes the files; the run records what it reported."""
    days = list(context.partition_keys)
    outcome = run_in_lambda(context, lambda_fanout, days)
    landed = {day: day_metadata(file) for day, file in outcome.written.items()}
    landed |= {day: day_metadata(None) for day in outcome.skipped}
    context.log.info(
        f"Lambda {lambda_fanout.function_name} wrote {len(outcome.written)} of {len(days)} "
        f"days in {outcome.invocations} invocations; {len(outcome.skipped)} had no data"
    )
    if outcome.stopped is not None or outcome.failed:
        # The step is about to fail: what the function did write must still show, day by day.
        for day, metadata in sorted(landed.items()):
            yield dg.AssetMaterialization(_DAILY, partition=day, metadata=metadata | _IN_LAMBDA)
        if outcome.stopped is not None:
            raise outcome.stopped  # a stop, not a failure: Dagster ends the run as canceled
        raise dg.Failure(
            description=run_failure_message(
                outcome.failed,
                len(days),
                f"failed in Lambda {lambda_fanout.function_name}",
                len(outcome.written),
            ),
            metadata={"failed_days": sorted(outcome.failed), "written_days": len(outcome.written)},
            allow_retries=False,
        )
    for day, metadata in landed.items():
        context.add_asset_metadata(metadata | _IN_LAMBDA, partition_key=day)
    yield dg.MaterializeResult()
    rows = {day: 0 for day in outcome.skipped} | {d: f.rows for d, f in outcome.written.items()}
    yield from check_results(checks.merge(outcome.check_failures, rows, countries), _CHECKS)


_IN_LAMBDA = {"execution": "lambda"}


def check_results(
    outcomes: list[checks.CheckOutcome], severities: Mapping[str, dg.AssetCheckSeverity]
) -> Iterator[dg.AssetCheckResult]:
    """The check outcomes as Dagster's results, each with the days that failed it."""
    for result in outcomes:
        yield dg.AssetCheckResult(
            check_name=result.name,
            passed=result.passed,
            severity=severities[result.name],
            description=result.description,
            metadata={
                "checked_days": result.checked_days,
                "failing_days": len(result.failing_days),
                "failures": dg.MetadataValue.json(dict(sorted(result.failing_days.items())[:50])),
            },
        )


def with_storage_kind(asset: dg.AssetsDefinition, bucket_name: str | None) -> dg.AssetsDefinition:
    """The asset labelled with where its files go: `s3` with a bucket, `local` without."""
    kind = "s3" if bucket_name else "local"
    [labelled] = dg.map_asset_specs(lambda spec: spec.merge_attributes(kinds={kind}), [asset])
    return labelled


def build_catalog_asset(
    kind: str,
    *,
    name: str,
    upstream: dg.AssetKey,
    columns: dg.TableSchema,
    table: CatalogedTable,
    description: str,
) -> dg.AssetsDefinition:
    """A catalog asset, labelled with the technology that catalogs (duckdb or glue).

    It makes `upstream`'s files one SQL table, once after new days land: `table` says which
    (the raw table, or the country-day table) to CatalogResource.refresh.
    """
    # The table's columns: the files' own, then the partition column the catalog adds (a DATE
    # in DuckDB's hive partitioning, a string partition key in Glue).
    date_type = "date" if kind == "duckdb" else "string"
    table_schema = dg.TableSchema(
        columns=[
            *columns.columns,
            dg.TableColumn("date", date_type, description="The day: the date= partition"),
        ]
    )

    @dg.asset(
        name=name,
        deps=[upstream],
        group_name="covid",
        kinds={kind},
        owners=OWNERS,
        tags=TAGS | {"layer": "catalog"},
        metadata={"dagster/column_schema": table_schema},
        description=description,
        # Needed for `dagster asset materialize --partition-range` to include this asset.
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=AFTER_NEW_DAYS,
    )
    def catalog_asset(
        context: dg.AssetExecutionContext, catalog: CatalogResource
    ) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=catalog.refresh(context.log, table))

    return catalog_asset


def build_raw_catalog_asset(kind: str) -> dg.AssetsDefinition:
    """covid_catalog_table: the raw days as one table."""
    return build_catalog_asset(
        kind,
        name="covid_catalog_table",
        upstream=_DAILY,
        columns=_COLUMN_SCHEMA,
        table="raw",
        description="The written days, cataloged so they can be queried with SQL.\n\nLocally a "
        "DuckDB view over the warehouse (`covid-pipeline query`); in AWS the Glue Data Catalog "
        "table that Athena queries, kept current by the Glue crawler or by registering new "
        "`date=` partitions directly. Runs once after a backfill's days have all landed.",
    )
