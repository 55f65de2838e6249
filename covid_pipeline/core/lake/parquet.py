"""A day's table as one Snappy Parquet file, stamped with its country set and its writer.

The stamps travel in the file's own key-value metadata, so whoever finds the file later (the
next run's preflight, the lake sensor) learns what it holds and who wrote it from the file;
its footer alone tells whether it is a day of ours at all (`day_footer`).
"""

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from covid_pipeline.core.schema.transform import SCHEMA

# Parquet key-value metadata: the country set a file was written for (its label, e.g. CAN,USA).
COUNTRIES_KEY = b"covid_pipeline.countries"
# Who wrote the file: "dagster run <run id>", "lambda <function> request <request id>", both
# for the fan-out's invocations (the run's, written by the function), or DIRECT_WRITER. The
# lake sensor leaves a file of a run still in progress to that run.
WRITER_KEY = b"covid_pipeline.writer"
DIRECT_WRITER = "covid_pipeline"  # the core called directly (scripts, tests)
_DAGSTER_RUN = "dagster run "


# What a day's file holds, by version: bump it when the decoding or the writing changes what a
# day's file holds (values, rows, compression; not Parquet's page encodings, which every reader
# decodes alike). A change of SCHEMA changes `format_version` by itself. The daily asset's
# code_version is this, so the UI flags days written by an older one.
FORMAT_VERSION = 1


def format_version(schema: pa.Schema | None = None, version: int | None = None) -> str:
    """A table's format version and a digest of its columns and types, e.g. `1.3f9a0c2e`.

    The raw table's (SCHEMA, FORMAT_VERSION) by default; the country-day table passes its own.
    """
    schema = SCHEMA if schema is None else schema
    version = FORMAT_VERSION if version is None else version
    columns = schema.to_string(show_field_metadata=False, show_schema_metadata=False)
    return f"{version}.{hashlib.sha256(columns.encode()).hexdigest()[:8]}"


class NotADayFile(ValueError):
    """A file at a day's key that is not one of this project's days; the message says why."""


def dagster_writer(run_id: str) -> str:
    """The writer stamp of a Dagster run."""
    return _DAGSTER_RUN + run_id


def lambda_writer(function_name: str, request_id: str, dagster_run: str | None = None) -> str:
    """The writer stamp of one Lambda invocation, invoked directly or by a Dagster run."""
    invocation = f"lambda {function_name} request {request_id}"
    return invocation if dagster_run is None else f"{dagster_writer(dagster_run)} ({invocation})"


def dagster_run_of(writer: str | None) -> str | None:
    """The id of the Dagster run that wrote a file, or None for any other writer."""
    if writer and writer.startswith(_DAGSTER_RUN):
        return writer[len(_DAGSTER_RUN) :].split()[0]
    return None


def stamp_of(metadata: Mapping[bytes, bytes] | None, key: bytes) -> str | None:
    """One stamp from a file's key-value metadata (None: a file written without it)."""
    stamp = (metadata or {}).get(key)
    return bytes(stamp).decode() if stamp is not None else None


def encode_parquet(table: pa.Table, countries: str, writer: str = DIRECT_WRITER) -> bytes:
    """The table as one Snappy-compressed Parquet file, stamped with its country set and writer."""
    buffer = io.BytesIO()
    # Plain pages, no dictionaries: at the real API's volume a day's file is smaller (122 KB
    # against 130 KB) and encodes in 60% of the time; readers decode either alike.
    pq.write_table(
        stamped(table, countries, writer), buffer, compression="snappy", use_dictionary=False
    )
    return buffer.getvalue()


def stamped(table: pa.Table, countries: str, writer: str = DIRECT_WRITER) -> pa.Table:
    """The table with its country set and writer in the schema's key-value metadata."""
    return table.replace_schema_metadata(
        {COUNTRIES_KEY: countries.encode(), WRITER_KEY: writer.encode()}
    )


def countries_of(table: pa.Table) -> str:
    """The country set a day's file was written for; for older files, the countries in it."""
    stamp = stamp_of(table.schema.metadata, COUNTRIES_KEY)
    return stamp if stamp is not None else countries_in([table])


def countries_in(tables: Iterable[pa.Table]) -> str:
    """The countries the rows of `tables` are of, as a set's label (e.g. CAN,USA)."""
    return ",".join(sorted({iso for table in tables for iso in table["iso"].to_pylist()}))


def decode_parquet(data: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """The table in a Parquet file's bytes: only `columns`, if given (the others stay unread)."""
    # One file's bytes, already in memory, decoded on the caller's thread: read_table would
    # build a dataset (importing pyarrow.dataset and pandas on first use), and pre-buffering
    # and Arrow's thread pool only add hand-offs. 0.27 ms a day for the roll-up's columns
    # instead of 1.4 (docs/performance.md, "Reading the raw days").
    file = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False)
    return file.read(columns=None if columns is None else list(columns), use_threads=False)


def day_footer(source: bytes | str | Path, schema: pa.Schema = SCHEMA) -> pq.FileMetaData:
    """The footer of a day's file (its bytes, or a local path: then only the footer is read).

    A file of the table's `schema` (the raw table's, or the country-day table's) is a day of
    ours whoever wrote it, stamped or not (files from before the writer stamps have none).

    Raises:
        NotADayFile: it cannot be read, is not Parquet (or is cut short), or has another schema.
    """
    try:
        footer = pq.read_metadata(pa.BufferReader(source) if isinstance(source, bytes) else source)
    except (FileNotFoundError, PermissionError) as error:
        raise NotADayFile(f"unreadable: {error}") from None
    except (OSError, pa.ArrowException) as error:  # a body that is not Parquet, or cut short
        raise NotADayFile(f"not a Parquet file: {error}") from None
    problem = _schema_problem(footer.schema.to_arrow_schema(), schema)
    if problem is not None:
        raise NotADayFile(f"another schema: {problem}")
    return footer


def _schema_problem(schema: pa.Schema, expected: pa.Schema) -> str | None:
    missing = [name for name in expected.names if name not in schema.names]
    if missing:
        return f"no column {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
    extra = [name for name in schema.names if name not in expected.names]
    if extra:
        return f"columns not in the schema: {', '.join(extra[:5])}"
    for field in expected:
        found = schema.field(field.name).type
        if not found.equals(field.type):
            return f"column {field.name} is {found}, not {field.type}"
    return None
