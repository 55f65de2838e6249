"""The catalog resource: CATALOG_MODE's catalog, through the core's one interface.

`CatalogResource.refresh` calls `core.catalog.refresh.refresh`, which the Lambda handler calls
too, with the lake's store and a Glue client injected, and turns its answer into the catalog
asset's metadata. Which mode, and the names it needs, are settings (core.config.catalog_target).
"""

import functools
import logging
from typing import Any, Literal

import boto3
import dagster as dg
from dagster_aws.s3 import S3Resource

from covid_pipeline.core import config
from covid_pipeline.core.catalog import crawler
from covid_pipeline.core.catalog.refresh import refresh
from covid_pipeline.core.config import Settings
from covid_pipeline.resources import setting

Logger = logging.Logger | dg.DagsterLogManager
# Which table a refresh catalogs: the raw days, or the country-day table (covid_country_daily).
CatalogedTable = Literal["raw", "country_daily"]


class CatalogResource(dg.ConfigurableResource):
    """Makes the written days queryable: a DuckDB view locally, the Glue table in AWS.

    Its fields are settings, by their names in core.config.Settings.
    """

    catalog_mode: str
    bucket_name: str | None
    prefix: str
    warehouse_dir: str
    catalog_path: str
    glue_database: str
    glue_table: str
    country_daily_prefix: str
    country_daily_table: str
    glue_crawler_name: str | None = None
    crawler_poll_interval_s: float
    crawler_timeout_s: float
    s3: dg.ResourceDependency[S3Resource]

    def refresh(self, log: Logger, table: CatalogedTable) -> dict[str, Any]:
        """Catalog every day of `table` written so far; metadata for the UI."""
        settings = config.settings_with({name: getattr(self, name) for name in _SETTINGS})
        if table == "raw":
            target, prefix = config.catalog_target(settings), settings.prefix
        else:
            target = config.country_daily_catalog_target(settings)
            prefix = settings.country_daily_prefix
        store = config.store(settings, self.s3.get_client, prefix)
        glue = functools.cache(lambda: boto3.client("glue"))  # made when a Glue mode needs it
        try:
            answer = refresh(target, store, prefix, glue)
        except dg.DagsterExecutionInterruptedError:
            if target.crawler_name and target.mode == "glue_crawler":
                crawler.stop_crawler(glue(), target.crawler_name)  # leave no crawl running
            raise
        said = ", ".join(f"{key} {answer[key]}" for key in _SAID if key in answer)
        log.info(f"{target.table} ({target.mode}): {said or 'done'}")
        return _metadata(answer)


# What the run's log says of a refresh (the rest is in the metadata).
_SAID = ("partitions", "rows", "partitions_created", "crawl_status", "started", "done")
_SETTINGS = (
    "catalog_mode", "bucket_name", "prefix", "warehouse_dir", "catalog_path", "glue_database",
    "glue_table", "country_daily_prefix", "country_daily_table", "glue_crawler_name",
    "crawler_poll_interval_s", "crawler_timeout_s",
)  # fmt: skip


def _metadata(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as the asset's metadata: the table and its data as Dagster's UI names them."""
    facts = dict(answer)
    engine = "duckdb" if facts.pop("mode") == "local" else "glue"
    table = facts.pop("table", None)
    database = facts.get("database") if engine == "glue" else None
    metadata: dict[str, Any] = {}
    if table is not None:
        metadata["dagster/table_name"] = f"{engine}:{database + '.' if database else ''}{table}"
    if "location" in facts:
        metadata["dagster/uri"] = facts.pop("location")
    if "rows" in facts:
        metadata["dagster/row_count"] = facts.pop("rows")
    if engine == "glue":
        facts.pop("database", None)
    return metadata | facts


def catalog_for(settings: Settings, s3: S3Resource) -> CatalogResource:
    """The catalog resource of the settings' CATALOG_MODE."""
    return CatalogResource(**{name: setting(settings, name) for name in _SETTINGS}, s3=s3)
