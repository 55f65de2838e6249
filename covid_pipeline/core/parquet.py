"""A day's table as one Snappy Parquet file, stamped with the country set it was written for."""

import io
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

# Parquet key-value metadata: the country set a file was written for (its label, e.g. CAN,USA).
COUNTRIES_KEY = b"covid_pipeline.countries"


def encode_parquet(table: pa.Table, countries: str) -> bytes:
    """The table as one Snappy-compressed Parquet file, stamped with its country set."""
    buffer = io.BytesIO()
    pq.write_table(stamped(table, countries), buffer, compression="snappy")
    return buffer.getvalue()


def stamped(table: pa.Table, countries: str) -> pa.Table:
    """The table with its country set in the schema's key-value metadata."""
    return table.replace_schema_metadata({COUNTRIES_KEY: countries.encode()})


def countries_of(table: pa.Table) -> str:
    """The country set a day's file was written for; for older files, the countries in it."""
    stamp = (table.schema.metadata or {}).get(COUNTRIES_KEY)
    if stamp is not None:
        return bytes(stamp).decode()
    return countries_in([table])


def countries_in(tables: Iterable[pa.Table]) -> str:
    """The countries the rows of `tables` are of, as a set's label (e.g. CAN,USA)."""
    return ",".join(sorted({iso for table in tables for iso in table["iso"].to_pylist()}))


def decode_parquet(data: bytes) -> pa.Table:
    """The table in a Parquet file's bytes."""
    return pq.read_table(io.BytesIO(data))
