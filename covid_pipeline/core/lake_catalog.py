"""Catalog the days a run outside Dagster wrote (the Lambda handler), in the settings' mode.

The Dagster catalog asset refreshes the whole table after a backfill; a direct invocation of
the Lambda must leave the catalog as current as that, or Athena does not see its days. So it
applies CATALOG_MODE to what it wrote, and never waits for a crawl:

- glue_partitions: creates or verifies the table, registers exactly the days written;
- glue_crawler: starts the crawler; if a crawl is already running, it says so (that crawl may
  have listed the folders before these days landed: the next crawl catalogs them);
- glue_projection: creates or verifies the projected table (Athena computes the days);
- local: nothing (no AWS catalog to keep).

A failure is reported in the answer after the files are written; files are never rolled back
for it (the next run, or the catalog asset, catalogs them).
"""

import logging
from collections.abc import Callable, Iterable
from typing import Any

from covid_pipeline.core import glue
from covid_pipeline.core.config import Settings
from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY

log = logging.getLogger(__name__)


def catalog_days(
    glue_client: Callable[[], Any], settings: Settings, days: Iterable[str]
) -> dict[str, Any]:
    """Apply `settings.catalog_mode` to `days` (just written); what was done, for the answer.

    `glue_client` makes (or returns) the Glue client, called only in the glue modes. Never
    raises: a refusal, or a client that cannot be made, comes back as `{"mode", "error"}`.
    """
    mode = settings.catalog_mode
    location = f"s3://{settings.bucket_name}/{settings.prefix}/"
    table = {"database": settings.glue_database, "table": settings.glue_table}
    if not mode.startswith("glue"):
        return {"mode": mode, "done": "nothing: no AWS catalog in local mode"}
    try:
        client = glue_client()
        if mode == "glue_partitions":
            registration = glue.register_partitions(
                client, settings.glue_database, settings.glue_table, location, days
            )
            return {
                "mode": mode,
                **table,
                "table_created": registration.table_created,
                "partitions_created": registration.partitions_created,
                "partitions": registration.partitions_total,
            }
        if mode == "glue_crawler":
            assert settings.glue_crawler_name is not None  # load_settings makes sure
            started = _start_crawler(client, settings.glue_crawler_name)
            return {"mode": mode, "crawler": settings.glue_crawler_name, "started": started}
        if mode == "glue_projection":
            projection = glue.project_table(
                client,
                settings.glue_database,
                settings.glue_table,
                location,
                FIRST_DAY.isoformat(),
                LAST_DAY.isoformat(),
            )
            return {
                "mode": mode,
                **table,
                "table_created": projection.table_created,
                "projection_updated": projection.parameters_updated,
            }
    except Exception as error:  # the files are written: no catalog error may lose the answer
        # (Glue's refusals, an endpoint that is not Glue, a table of another shape alike)
        log.error("cataloging in %s mode failed: %s", mode, error)
        return {"mode": mode, "error": f"{type(error).__name__}: {error}"[:500]}
    raise AssertionError(f"unknown catalog mode {mode}")  # load_settings allows no other


def _start_crawler(client: Any, name: str) -> bool:
    """Start the crawl; False when one is already running (it may not see the new days)."""
    try:
        client.start_crawler(Name=name)
    except client.exceptions.CrawlerRunningException:
        log.warning("crawler %s is already running: the next crawl catalogs these days", name)
        return False
    log.info("started crawler %s", name)
    return True
