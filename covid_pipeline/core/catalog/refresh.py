"""The catalog's one interface: make the lake's days queryable in the configured CATALOG_MODE.

The Dagster catalog asset and the Lambda handler both call `refresh`, with their own clients
injected, and read the same answer: a JSON-friendly dict whose `mode` is always there and
whose other keys say what that mode did.

- local: the DuckDB view over a local warehouse (a lake on S3 has no local catalog);
- glue_partitions: creates or verifies the Glue table and registers `days` (None: every day in
  the lake) straight into it;
- glue_projection: creates or verifies the table with Athena's partition projection;
- glue_crawler: runs the crawler and waits for its crawl (the asset), or only starts it
  (`wait_for_crawl=False`: the Lambda, which must not spend its time waiting; if a crawl is
  already running, it says so: the next crawl catalogs the new days).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from covid_pipeline.core.catalog import crawler, glue
from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY
from covid_pipeline.core.lake import layout
from covid_pipeline.core.lake.stores import LocalStore, S3Store, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogTarget:
    """Which catalog, and the names it needs (core.config.catalog_target builds it)."""

    mode: str  # local, glue_partitions, glue_projection or glue_crawler
    database: str  # Glue database
    table: str  # Glue table, and the DuckDB view locally
    schema: pa.Schema  # the files' (the raw table's, or the country-day table's)
    description: str  # the table's, in Glue
    catalog_path: str  # DuckDB file
    crawler_name: str | None = None
    crawler_poll_interval_s: float = 15.0
    crawler_timeout_s: float = 1800.0


def refresh(
    target: CatalogTarget,
    store: Store,
    prefix: str,
    glue_client: Callable[[], Any],
    *,
    days: Sequence[str] | None = None,
    wait_for_crawl: bool = True,
) -> dict[str, Any]:
    """Catalog the lake under `prefix` in `target.mode`; what was done.

    Args:
        target: the mode and its names.
        store: the lake (S3 for the Glue modes).
        prefix: the country set's folder in it.
        glue_client: makes (or returns) the Glue client; called only in the Glue modes.
        days: the days to register (glue_partitions); None: every day in the lake.
        wait_for_crawl: wait for the crawl to end (glue_crawler), or only start it.

    Raises:
        LocalCatalogError, GlueCatalogError, CrawlerError, botocore errors: the catalog
            refused. The files are never touched by a refresh.
    """
    mode = target.mode
    answer: dict[str, Any] = {"mode": mode}
    if mode == "local":
        if not isinstance(store, LocalStore):
            return answer | {"done": "nothing: no AWS catalog in local mode"}
        return answer | _duckdb(target, Path(store.uri(prefix)))
    if not isinstance(store, S3Store):
        raise ValueError(f"CATALOG_MODE {mode} catalogs S3 data: set BUCKET_NAME")
    location = layout.folder_uri(store.bucket, prefix)
    table = {"database": target.database, "table": target.table, "location": location}
    if mode == "glue_partitions":
        registration = glue.register_partitions(
            glue_client(),
            target.database,
            target.table,
            location,
            store.days(prefix) if days is None else days,
            schema=target.schema,
            description=target.description,
        )
        return (
            answer
            | table
            | {
                "table_created": registration.table_created,
                "partitions_created": registration.partitions_created,
                "partitions": registration.partitions_total,
            }
        )
    if mode == "glue_projection":
        first, last = FIRST_DAY.isoformat(), LAST_DAY.isoformat()
        projection = glue.project_table(
            glue_client(),
            target.database,
            target.table,
            location,
            first,
            last,
            schema=target.schema,
            description=target.description,
        )
        return (
            answer
            | table
            | {
                "table_created": projection.table_created,
                "projection_updated": projection.parameters_updated,
                "projected_days": f"{first}..{last}",
            }
        )
    if mode == "glue_crawler":
        assert target.crawler_name is not None  # load_settings makes sure
        return answer | _crawl(target, glue_client(), wait_for_crawl)
    raise ValueError(f"unknown CATALOG_MODE {mode}")  # load_settings allows no other


def _duckdb(target: CatalogTarget, data: Path) -> dict[str, Any]:
    # DuckDB only where it is used: the Lambda, which never catalogs locally, does not ship it.
    from covid_pipeline.core.catalog import duckdb_catalog

    database = Path(target.catalog_path).absolute()  # what the UI shows must not need a cwd
    registration = duckdb_catalog.register(database, data, target.table, target.schema)
    for message in registration.left_out:
        log.warning("left out of %s: %s", target.table, message)
    left_out = {"files_left_out": "\n".join(registration.left_out)} if registration.left_out else {}
    return {
        "table": target.table,
        "location": str(data),
        "database": str(database),
        "partitions": registration.partitions,
        "rows": registration.rows,
        "first_day": str(registration.first_day),
        "last_day": str(registration.last_day),
    } | left_out


def _crawl(target: CatalogTarget, client: Any, wait: bool) -> dict[str, Any]:
    name = target.crawler_name
    assert name is not None
    if not wait:
        return {"crawler": name, "started": _start_crawler(client, name)}
    result = crawler.run_crawler(
        client,
        name,
        poll_interval_s=target.crawler_poll_interval_s,
        timeout_s=target.crawler_timeout_s,
    )
    done: dict[str, Any] = {
        "database": target.database,
        "table": target.table,
        "crawler": name,
        "crawl_status": result.status,
        "crawl_duration_s": round(result.duration_s, 1),
        "partitions": len(glue.registered_days(client, target.database, target.table)),
    }
    if result.tables_created is not None:
        done["tables_created"] = result.tables_created
    if result.tables_updated is not None:
        done["tables_updated"] = result.tables_updated
    return done


def _start_crawler(client: Any, name: str) -> bool:
    """Start the crawl; False when one is already running (it may not see the new days)."""
    try:
        client.start_crawler(Name=name)
    except client.exceptions.CrawlerRunningException:
        log.warning("crawler %s is already running: the next crawl catalogs these days", name)
        return False
    log.info("started crawler %s", name)
    return True
