"""The code location: assets wired to resources built from the environment's settings.

`workspace.yaml` and `[tool.dagster]` point here. Building definitions reads settings but
makes no network call and creates no boto3 client, so `dagster dev` works offline.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource

from covid_pipeline.assets import covid_daily_reports
from covid_pipeline.core.config import Settings, load_settings
from covid_pipeline.io_managers import HiveParquetIOManager
from covid_pipeline.resources import CovidApiResource


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for `settings`: S3 when a bucket is set, the local warehouse otherwise."""
    return dg.Definitions(
        assets=[covid_daily_reports],
        resources={
            "covid_api": CovidApiResource(
                api_url=settings.api_url,
                iso_code=settings.iso_code,
                fetch_concurrency=settings.fetch_concurrency,
                connect_timeout_s=settings.http_connect_timeout_s,
                read_timeout_s=settings.http_read_timeout_s,
                max_retries=settings.http_max_retries,
                backoff_s=settings.http_backoff_s,
            ),
            "hive_parquet_io_manager": HiveParquetIOManager(
                prefix=settings.prefix,
                bucket_name=settings.bucket_name,
                warehouse_dir=settings.warehouse_dir,
                write_concurrency=settings.write_concurrency,
                s3=S3Resource(),  # credentials, region and endpoint come from boto3's chain
            ),
        },
    )


defs = build_definitions(load_settings())
