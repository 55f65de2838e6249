"""The pipeline's assets: thin wrappers that resolve partitions and call the core."""

import datetime as dt

import dagster as dg
import pyarrow as pa

from covid_pipeline.core import pipeline
from covid_pipeline.partitions import DAILY_PARTITIONS
from covid_pipeline.resources import CovidApiResource


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
)
def covid_daily_reports(
    context: dg.AssetExecutionContext, covid_api: CovidApiResource
) -> dict[str, pa.Table]:
    """Daily COVID-19 reports for one country: a row per region (province or country) per day.

    From the COVID-19 Statistics API (https://covid-api.com/api, `GET /reports?date=&iso=`),
    with US counties nested as `cities`. Re-running a day replaces its file, so backfills are
    idempotent; a day the API has no data for is skipped (no file) and its metadata says so.
    """
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
        # Nothing is written: the IO manager only runs when the asset returns.
        raise dg.Failure(
            description=outcome.failure_report()
            + "\nNo day of this run was written. Re-run the same range once the cause is fixed: "
            "days are overwritten, never duplicated.",
            metadata={"failed_days": sorted(outcome.failures), "fetched_days": len(outcome.tables)},
            allow_retries=outcome.transient,  # a schema problem will not pass on a retry
        )
    return outcome.tables
