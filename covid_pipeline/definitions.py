"""The code location: assets wired to resources built from the environment's settings.

`workspace.yaml` and `[tool.dagster]` point here. Building definitions reads settings but
makes no network call, creates no boto3 client and changes no environment, so `dagster dev`
works offline. A value read verbatim from a variable reaches its resource as `dg.EnvVar`: the
UI shows the variable, and each launch reads its value then (and the resource checks it again).
"""

import dagster as dg
from dagster_aws.s3 import S3Resource

from covid_pipeline.assets import (
    build_catalog_asset,
    build_raw_catalog_asset,
    covid_daily_reports,
    with_storage_kind,
)
from covid_pipeline.catalog import catalog_for
from covid_pipeline.core.config import Settings, load_settings
from covid_pipeline.core.lake import stores
from covid_pipeline.fanout import LambdaFanoutResource
from covid_pipeline.io_managers import HiveParquetIOManager
from covid_pipeline.lake_sensor import build_lake_sensor
from covid_pipeline.reporting import (
    COUNTRY_DAILY,
    COUNTRY_DAILY_COLUMNS,
    COUNTRY_DAILY_IO_MANAGER,
    covid_country_daily,
    covid_country_daily_summary,
)
from covid_pipeline.resources import CovidApiResource, setting


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for `settings`: S3 and Glue with a bucket, local files and DuckDB without."""
    # Credentials, region and endpoint come from boto3's chain; retries as every S3 client's.
    s3 = S3Resource(max_attempts=stores.S3_MAX_ATTEMPTS)
    catalog_kind = "duckdb" if settings.catalog_mode == "local" else "glue"
    catalog_table = build_raw_catalog_asset(catalog_kind)
    country_daily_table = build_catalog_asset(
        catalog_kind,
        name="covid_country_daily_table",
        upstream=COUNTRY_DAILY,
        columns=COUNTRY_DAILY_COLUMNS,
        table="country_daily",
        description="The country-day table, cataloged beside the raw one: the DuckDB view "
        "COUNTRY_DAILY_TABLE locally, the Glue table of that name in AWS (in glue_crawler "
        "mode its days are registered directly: the crawler crawls the raw prefix).",
    )
    followers = [
        catalog_table,
        covid_country_daily,
        country_daily_table,
        covid_country_daily_summary,
    ]
    return dg.Definitions(
        # One step per run: a step subprocess would only add two seconds to every run.
        executor=dg.in_process_executor,
        assets=[
            with_storage_kind(covid_daily_reports, settings.bucket_name),
            catalog_table,
            with_storage_kind(covid_country_daily, settings.bucket_name),
            country_daily_table,
            covid_country_daily_summary,
        ],
        # Running from the start: Dagster's default automation sensor starts stopped, and then
        # nothing would follow a backfill until someone found the toggle.
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "covid_follows_new_days",
                target=dg.AssetSelection.assets(*followers),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=settings.automation_interval_s,
                description="Once the raw days of a backfill, a re-run or a Lambda invocation "
                "have landed: catalogs them, recomputes the country-days they feed (D..D+7), "
                "then catalogs and charts those (each asset's automation condition).",
            ),
            build_lake_sensor(settings.lake_sensor_interval_s),
        ],
        resources={
            "covid_api": CovidApiResource(
                api_url=setting(settings, "api_url"),
                iso_code=setting(settings, "iso_code"),
                fetch_concurrency=setting(settings, "fetch_concurrency"),
                cpu_workers=setting(settings, "cpu_workers"),
                connect_timeout_s=settings.http_connect_timeout_s,
                read_timeout_s=settings.http_read_timeout_s,
                max_retries=setting(settings, "http_max_retries"),
                backoff_s=settings.http_backoff_s,
            ),
            "hive_parquet_io_manager": HiveParquetIOManager(
                prefix=setting(settings, "prefix"),
                bucket_name=setting(settings, "bucket_name"),
                warehouse_dir=setting(settings, "warehouse_dir"),
                write_concurrency=setting(settings, "write_concurrency"),
                s3=s3,
            ),
            COUNTRY_DAILY_IO_MANAGER: HiveParquetIOManager(
                prefix=setting(settings, "country_daily_prefix"),
                bucket_name=setting(settings, "bucket_name"),
                warehouse_dir=setting(settings, "warehouse_dir"),
                write_concurrency=setting(settings, "write_concurrency"),
                s3=s3,
            ),
            "catalog": catalog_for(settings, s3),
            "lambda_fanout": LambdaFanoutResource(
                enabled=settings.execution_mode == "lambda",
                function_name=setting(settings, "lambda_function_name") or "",
                chunk_days=setting(settings, "lambda_chunk_days"),
                parallelism=setting(settings, "lambda_parallelism"),
            ),
        },
    )


defs = build_definitions(load_settings())
