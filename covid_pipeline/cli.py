"""`covid-pipeline query "SQL"`: ask the catalog a question, get a table back.

By default it queries the embedded DuckDB catalog over the local warehouse; with `--athena` it
runs the SQL in Athena against the Glue table (same settings as the pipeline: GLUE_DATABASE,
ATHENA_WORKGROUP, ATHENA_OUTPUT_LOCATION).
"""

import argparse
import csv
import datetime as dt
import decimal
import sys
import time
from collections.abc import Sequence
from typing import Any

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `covid-pipeline` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="covid-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="run SQL against the catalog and print the result")
    query.add_argument("sql", help='e.g. "select count(*) from covid_daily_reports_usa"')
    query.add_argument("--athena", action="store_true", help="run in Athena instead of DuckDB")
    query.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    query.add_argument("--max-rows", type=int, default=100, help="rows to print (table format)")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    started = time.perf_counter()
    rows: Sequence[Sequence[Any]]
    try:
        if args.athena:
            columns, rows = _athena(args.sql, settings)
        else:
            from covid_pipeline.core.catalog import duckdb_catalog  # DuckDB only when it is used

            columns, rows = duckdb_catalog.query(settings.catalog_path, args.sql)
    except Exception as error:  # any engine's error is the user's answer, without a traceback
        sys.stderr.write(f"query failed: {_why(error)}\n")
        return 1
    elapsed = time.perf_counter() - started
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        sys.stdout.write(format_table(columns, rows, args.max_rows))
        sys.stderr.write(f"({len(rows)} rows in {elapsed:.3f}s)\n")
    return 0


def _why(error: Exception) -> str:
    # The catalog's own errors are written for the reader; an engine's carry their type.
    if type(error).__name__ == "LocalCatalogError":  # DuckDB is imported only when used
        return str(error)
    return f"{type(error).__name__}: {error}"


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_rows: int) -> str:
    """Rows as an aligned text table: numbers to the right, text to the left."""
    shown = [[_cell(value) for value in row] for row in rows[:max_rows]]
    numeric = [
        all(isinstance(row[i], int | float | decimal.Decimal) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(name), *(len(row[i]) for row in shown)]) for i, name in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    lines = [line(columns), line(["-" * width for width in widths])]
    lines += [line(row) for row in shown]
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows (--max-rows, or --csv for all)")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def _athena(sql: str, settings: Any) -> tuple[list[str], list[list[str | None]]]:
    import boto3

    from covid_pipeline.core.catalog import athena

    result = athena.run_query(
        boto3.client("athena"),
        sql,
        database=settings.glue_database,
        workgroup=settings.athena_workgroup,
        output_location=settings.athena_output_location,
    )
    sys.stderr.write(f"(Athena scanned {result.bytes_scanned:,} bytes)\n")
    return result.columns, result.rows


if __name__ == "__main__":
    sys.exit(main())
