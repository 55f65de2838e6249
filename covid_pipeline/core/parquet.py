"""A day's table as one Snappy Parquet file, stamped with its country set and its writer.

The stamps travel in the file's own key-value metadata, so whoever finds the file later (the
next run's preflight, the lake sensor) learns what it holds and who wrote it from the file.
"""

import io
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

# Parquet key-value metadata: the country set a file was written for (its label, e.g. CAN,USA).
COUNTRIES_KEY = b"covid_pipeline.countries"
# Who wrote the file: "dagster run <run id>", "lambda <function> request <request id>", both
# for the fan-out's invocations (the run's, written by the function), or DIRECT_WRITER. The
# lake sensor leaves a file of a run still in progress to that run.
WRITER_KEY = b"covid_pipeline.writer"
DIRECT_WRITER = "covid_pipeline"  # the core called directly (scripts, tests)
_DAGSTER_RUN = "dagster run "


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
    pq.write_table(stamped(table, countries, writer), buffer, compression="snappy")
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


def decode_parquet(data: bytes) -> pa.Table:
    """The table in a Parquet file's bytes."""
    return pq.read_table(io.BytesIO(data))
