"""The embedded catalog: a DuckDB database that makes the local warehouse queryable with SQL.

Registering creates a view over the Hive layout (`date=` becomes a DATE column, and a filter
on it prunes folders, so only the days asked for are read) and a `<table>_partitions` table
listing each day with its row count and file. Re-registering replaces both, so it is
idempotent and picks up new days. Queries open the database read-only.

A file at a day's key that is not a day of ours (core.lake.parquet.day_footer) is left out of the
view and named, with what to do, rather than failing every query on it (or, for a Parquet
file of another schema, being silently counted in). A query that meets one that arrived after
registering names it the same way, not in DuckDB's words.
"""

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from covid_pipeline.core.lake.layout import DAY_FILES, DAY_FOLDERS, FILE_NAME
from covid_pipeline.core.lake.parquet import NotADayFile, day_footer
from covid_pipeline.core.lake.scan import stray_message
from covid_pipeline.core.reporting import country_daily
from covid_pipeline.core.schema.transform import SCHEMA

# How DuckDB names the file it failed on: 'No magic bytes found at end of file '<path>'', ...
_FILE_IN_ERROR = re.compile(
    r"""['"]([^'"]*""" + DAY_FOLDERS + r"\d{4}-\d{2}-\d{2}/" + re.escape(FILE_NAME) + ")['\"]"
)


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
    left_out: tuple[str, ...] = ()  # files at days' keys that are not days: why, what to do


def register(
    database: str | Path, data_root: str | Path, table: str, schema: pa.Schema = SCHEMA
) -> LocalRegistration:
    """Create or replace the view `table` over `<data_root>/date=*/data.parquet`.

    `schema` is the files' (the raw table's, or the country-day table's): a file of another
    is left out.

    Raises:
        LocalCatalogError: when `data_root` holds no day yet.
    """
    root = Path(data_root).absolute()
    paths = sorted(root.glob(DAY_FILES))
    strays = {path: message for path in paths if (message := _stray(path, [schema])) is not None}
    if len(strays) == len(paths):
        raise LocalCatalogError(
            f"nothing to catalog under {root}: materialize covid_daily_reports (or, for the "
            "country-day table, covid_country_daily) first"
            + "".join(f"\n{message}" for message in strays.values())
        )
    if strays:  # the days of ours by name; otherwise a glob, which also reads later days
        ours = [_sql_string(str(path)) for path in paths if path not in strays]
        files = "[" + ", ".join(ours) + "]"
    else:
        files = _sql_string(f"{root}/{DAY_FILES}")
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
    return LocalRegistration(
        table, partitions, int(rows), first_day, last_day, tuple(strays.values())
    )


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
        try:
            cursor = connection.execute(sql)
            columns = [description[0] for description in cursor.description or []]
            return columns, cursor.fetchall()
        except duckdb.Error as error:
            named = dict.fromkeys(_FILE_IN_ERROR.findall(str(error)))  # each once, in order
            strays = [message for path in named if (message := _stray(path, _SCHEMAS))]
            if not strays:
                raise
            raise LocalCatalogError(
                "\n".join(strays) + "\nThen materialize covid_catalog_table: the catalog "
                "leaves such files out of its view."
            ) from None


def _stray(path: str | Path, schemas: Sequence[pa.Schema]) -> str | None:
    """What is wrong with the file at a day's key and what to do, or None for a day of ours.

    A day of ours is a file of one of `schemas`.
    """
    reasons = []
    for schema in schemas:
        try:
            day_footer(str(path), schema)
        except NotADayFile as error:
            reasons.append(str(error))
        else:
            return None
    return stray_message(str(path), reasons[0])


# The tables a query may read: the raw one and the country-day one.
_SCHEMAS = (SCHEMA, country_daily.SCHEMA)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
