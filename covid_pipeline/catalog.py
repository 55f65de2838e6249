"""The catalog: the four ways the written days become queryable, side by side.

One interface (`CatalogResource.refresh`) and one implementation per CATALOG_MODE: the local
DuckDB catalog, direct Glue partition registration, Glue partition projection, and the Glue
crawler. `catalog_for` picks one from the settings; the catalog asset only ever calls
`refresh`. Each is a thin layer over the core (core.local_catalog, core.glue, core.crawler).
"""

import logging
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from dagster_aws.s3 import S3Resource

from covid_pipeline.core import crawler, glue, local_catalog, stores
from covid_pipeline.core.config import Settings
from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY
from covid_pipeline.resources import setting

Logger = logging.Logger | dg.DagsterLogManager


class CatalogResource(dg.ConfigurableResource):
    """Makes the written days queryable; `refresh` returns metadata for the UI."""

    def refresh(self, log: Logger) -> dict[str, Any]:
        """Catalog every day written so far."""
        raise NotImplementedError


class LocalCatalogResource(CatalogResource):
    """The embedded DuckDB catalog over the local warehouse (`covid-pipeline query` reads it)."""

    database_path: str
    warehouse_dir: str
    prefix: str
    table: str

    def refresh(self, log: Logger) -> dict[str, Any]:  # noqa: D102
        database = Path(self.database_path).absolute()  # what the UI shows must not need a cwd
        data = Path(self.warehouse_dir, self.prefix).absolute()
        registration = local_catalog.register(database, data, self.table)
        log.info(f"{self.table}: {registration.partitions} days, {registration.rows} rows")
        for message in registration.left_out:
            log.warning(f"left out of {self.table}: {message}")
        left_out = (
            {"files_left_out": "\n".join(registration.left_out)} if registration.left_out else {}
        )
        return left_out | {
            "dagster/table_name": f"duckdb:{self.table}",
            "dagster/uri": str(data),
            "database": str(database),
            "partitions": registration.partitions,
            "dagster/row_count": registration.rows,
            "first_day": str(registration.first_day),
            "last_day": str(registration.last_day),
        }


class GluePartitionsCatalogResource(CatalogResource):
    """Registers new `date=` folders straight into the Glue Data Catalog (seconds, no crawler)."""

    bucket_name: str
    prefix: str
    database: str
    table: str
    s3: dg.ResourceDependency[S3Resource]

    def refresh(self, log: Logger) -> dict[str, Any]:  # noqa: D102
        store = stores.S3Store(self.bucket_name, self.s3.get_client(), self.prefix)
        location = f"s3://{self.bucket_name}/{self.prefix}/"
        registration = glue.register_partitions(
            boto3.client("glue"), self.database, self.table, location, store.days(self.prefix)
        )
        log.info(
            f"{self.database}.{self.table}: {registration.partitions_created} new partitions, "
            f"{registration.partitions_total} in all"
        )
        return {
            "dagster/table_name": f"glue:{self.database}.{self.table}",
            "dagster/uri": location,
            "table_created": registration.table_created,
            "partitions_created": registration.partitions_created,
            "partitions": registration.partitions_total,
        }


class GlueProjectionCatalogResource(CatalogResource):
    """Declares the Glue table with Athena's partition projection: no crawler, no per-day call."""

    bucket_name: str
    prefix: str
    database: str
    table: str

    def refresh(self, log: Logger) -> dict[str, Any]:  # noqa: D102
        location = f"s3://{self.bucket_name}/{self.prefix}/"
        first, last = FIRST_DAY.isoformat(), LAST_DAY.isoformat()
        projection = glue.project_table(
            boto3.client("glue"), self.database, self.table, location, first, last
        )
        change = (
            "created"
            if projection.table_created
            else "projection set"
            if projection.parameters_updated
            else "as it was"
        )
        log.info(f"{self.database}.{self.table}: {change}; days {first}..{last} projected")
        return {
            "dagster/table_name": f"glue:{self.database}.{self.table}",
            "dagster/uri": location,
            "table_created": projection.table_created,
            "projection_updated": projection.parameters_updated,
            "projected_days": f"{first}..{last}",
        }


class GlueCrawlerCatalogResource(CatalogResource):
    """Runs the Glue crawler (the design's way) and waits for its crawl to end."""

    crawler_name: str
    database: str
    table: str
    poll_interval_s: float = 15.0
    timeout_s: float = 1800.0

    def refresh(self, log: Logger) -> dict[str, Any]:  # noqa: D102
        client = boto3.client("glue")
        try:
            result = crawler.run_crawler(
                client,
                self.crawler_name,
                poll_interval_s=self.poll_interval_s,
                timeout_s=self.timeout_s,
            )
        except dg.DagsterExecutionInterruptedError:
            crawler.stop_crawler(client, self.crawler_name)  # do not leave a crawl running
            raise
        log.info(f"crawler {self.crawler_name}: {result.status} in {result.duration_s:.0f}s")
        metadata: dict[str, Any] = {
            "dagster/table_name": f"glue:{self.database}.{self.table}",
            "crawler": self.crawler_name,
            "crawl_status": result.status,
            "crawl_duration_s": round(result.duration_s, 1),
            "partitions": len(glue.registered_days(client, self.database, self.table)),
        }
        if result.tables_created is not None:
            metadata["tables_created"] = result.tables_created
        if result.tables_updated is not None:
            metadata["tables_updated"] = result.tables_updated
        return metadata


def catalog_for(settings: Settings, s3: S3Resource) -> CatalogResource:
    """The catalog of the settings' CATALOG_MODE."""
    if settings.catalog_mode == "glue_crawler":
        return GlueCrawlerCatalogResource(
            crawler_name=setting(settings, "glue_crawler_name"),
            database=setting(settings, "glue_database"),
            table=setting(settings, "glue_table"),
            poll_interval_s=settings.crawler_poll_interval_s,
            timeout_s=settings.crawler_timeout_s,
        )
    if settings.catalog_mode == "glue_projection":
        return GlueProjectionCatalogResource(
            bucket_name=setting(settings, "bucket_name"),
            prefix=setting(settings, "prefix"),
            database=setting(settings, "glue_database"),
            table=setting(settings, "glue_table"),
        )
    if settings.catalog_mode == "glue_partitions":
        return GluePartitionsCatalogResource(
            bucket_name=setting(settings, "bucket_name"),
            prefix=setting(settings, "prefix"),
            database=setting(settings, "glue_database"),
            table=setting(settings, "glue_table"),
            s3=s3,
        )
    return LocalCatalogResource(
        database_path=setting(settings, "catalog_path"),
        warehouse_dir=setting(settings, "warehouse_dir"),
        prefix=setting(settings, "prefix"),
        table=setting(settings, "glue_table"),
    )
