"""The embedded catalog: a DuckDB database that makes the local warehouse queryable with SQL.

Registering creates a view over the Hive layout (`date=` becomes a DATE column, and a filter
on it prunes folders, so only the days asked for are read) and a `<table>_partitions` table
listing each day with its row count and file. Re-registering replaces both, so it is
idempotent and picks up new days. Queries open the database read-only.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from covid_pipeline.core.layout import FILE_NAME


class LocalCatalogError(RuntimeError):
    """Nothing to catalog, or no catalog to query."""


@dataclass(frozen=True)
class LocalRegistration:
    """What the catalog holds after registering."""

    table: str
    partitions: int
    rows: int
    first_day: dt.date
    last_day: dt.date


def register(database: str | Path, data_root: str | Path, table: str) -> LocalRegistration:
    """Create or replace the view `table` over `<data_root>/date=*/data.parquet`.

    Raises:
        LocalCatalogError: when `data_root` holds no day yet.
    """
    root = Path(data_root).absolute()
    if not any(root.glob(f"date=*/{FILE_NAME}")):
        raise LocalCatalogError(
            f"nothing to catalog under {root}: materialize covid_daily_reports first"
        )
    files = _sql_string(f"{root}/date=*/{FILE_NAME}")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            f"CREATE OR REPLACE VIEW {table} AS "
            f"SELECT * FROM read_parquet({files}, hive_partitioning = true)"
        )
        connection.execute(
            f"CREATE OR REPLACE TABLE {table}_partitions AS "
            f"SELECT date, count(*) AS rows, any_value(filename) AS file "
            f"FROM read_parquet({files}, hive_partitioning = true, filename = true) "
            "GROUP BY date ORDER BY date"
        )
        summary = connection.execute(
            f"SELECT count(*), sum(rows), min(date), max(date) FROM {table}_partitions"
        ).fetchone()
    assert summary is not None
    partitions, rows, first_day, last_day = summary
    return LocalRegistration(table, partitions, int(rows), first_day, last_day)


def query(database: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` against the catalog; return the column names and the rows.

    Raises:
        LocalCatalogError: when there is no catalog yet.
        duckdb.Error: when the SQL is wrong (DuckDB's message says where).
    """
    if not Path(database).is_file():
        raise LocalCatalogError(
            f"no catalog at {database}: materialize covid_catalog_table first (make demo does)"
        )
    with duckdb.connect(str(database), read_only=True) as connection:
        cursor = connection.execute(sql)
        columns = [description[0] for description in cursor.description or []]
        return columns, cursor.fetchall()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
