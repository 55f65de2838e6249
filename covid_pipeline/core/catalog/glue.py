"""Declare the data lake in the Glue Data Catalog directly: the table, then its partitions.

The design's way is the Glue crawler (`core.catalog.crawler`). These are the fast ways: the
schema is already known (`core.schema.transform.SCHEMA`), so the table can be declared exactly,
and then either

- each new `date=` folder is registered with `batch_create_partition` (`register_partitions`:
  seconds, no crawler cost, one call per 100 new days), or
- the table gets Athena's partition projection over the data's whole range (`project_table`):
  the days are computed from the `date=` layout, so no crawler and no per-day call at all;
  Athena then ignores registered partitions, and a day without a file simply has no rows.

Idempotent: an existing database, table or partition is left as it is; a table of another
shape or location is refused, never altered.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from covid_pipeline.core.lake.layout import PARTITION_COLUMN, day_folder
from covid_pipeline.core.schema.transform import DESCRIPTION, SCHEMA

log = logging.getLogger(__name__)

PARTITION_KEY = PARTITION_COLUMN
_TABLE_PARAMETERS = {"classification": "parquet", "EXTERNAL": "TRUE"}
_BATCH = 100  # batch_create_partition takes at most 100 partitions per call
_PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}


class GlueCatalogError(RuntimeError):
    """The Glue catalog refused a change, or holds a table that does not match the data."""


@dataclass(frozen=True)
class Projection:
    """What declaring a projected table did."""

    table_created: bool
    parameters_updated: bool  # an existing table of the right shape got projection set


def projection_parameters(location: str, first_day: str, last_day: str) -> dict[str, str]:
    """The table parameters of Athena's partition projection over `date=` folders, day by day."""
    return {
        **_TABLE_PARAMETERS,
        "projection.enabled": "true",
        "projection.date.type": "date",
        "projection.date.format": "yyyy-MM-dd",
        "projection.date.range": f"{first_day},{last_day}",
        "projection.date.interval": "1",
        "projection.date.interval.unit": "DAYS",
        "storage.location.template": f"{location}{PARTITION_KEY}=${{{PARTITION_KEY}}}/",
    }


def project_table(
    glue: Any,
    database: str,
    table: str,
    location: str,
    first_day: str,
    last_day: str,
    *,
    schema: pa.Schema = SCHEMA,
    description: str = DESCRIPTION,
) -> Projection:
    """Create, or verify, the table with partition projection from `first_day` to `last_day`.

    Args:
        glue: a boto3 Glue client.
        database: Glue database name (created if missing).
        table: Glue table name.
        location: s3:// URI of the folder above the `date=` folders, ending in "/".
        first_day: the first day of the range (YYYY-MM-DD).
        last_day: the last day of the range.
        schema: the files' schema (the raw table's, or the country-day table's).
        description: the table's description in Glue.

    Raises:
        GlueCatalogError: the table exists with other columns or another location.
    """
    parameters = projection_parameters(location, first_day, last_day)
    _ensure_database(glue, database)
    if _ensure_table(glue, database, table, location, parameters, schema, description):
        return Projection(table_created=True, parameters_updated=False)
    existing = glue.get_table(DatabaseName=database, Name=table)["Table"]
    found = existing.get("Parameters", {})
    if all(found.get(key) == value for key, value in parameters.items()):
        return Projection(table_created=False, parameters_updated=False)
    # The same columns and location (checked above): only the projection is missing or old.
    glue.update_table(
        DatabaseName=database,
        TableInput={
            **{key: existing[key] for key in _TABLE_INPUT_KEYS if key in existing},
            "Parameters": {**found, **parameters},
        },
    )
    log.info("set partition projection on Glue table %s.%s", database, table)
    return Projection(table_created=False, parameters_updated=True)


# What get_table returns that update_table takes back as the table's definition.
_TABLE_INPUT_KEYS = ("Name", "Description", "TableType", "PartitionKeys", "StorageDescriptor")


@dataclass(frozen=True)
class Registration:
    """What a registration did."""

    table_created: bool
    partitions_created: int
    partitions_total: int


def glue_type(type_: pa.DataType) -> str:
    """The Hive/Glue type name for an Arrow type of the schema."""
    if pa.types.is_string(type_):
        return "string"
    if pa.types.is_int64(type_):
        return "bigint"
    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_float64(type_):
        return "double"
    if pa.types.is_date32(type_):
        return "date"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_list(type_):
        return f"array<{glue_type(type_.value_type)}>"
    if pa.types.is_struct(type_):
        fields = ",".join(f"{f.name}:{glue_type(f.type)}" for f in type_)
        return f"struct<{fields}>"
    raise TypeError(f"no Glue type for {type_}")


def glue_columns(schema: pa.Schema = SCHEMA) -> list[dict[str, str]]:
    """The schema's columns as Glue column definitions, with their descriptions."""
    return [
        {
            "Name": f.name,
            "Type": glue_type(f.type),
            "Comment": (f.metadata or {}).get(b"description", b"").decode()[:255],
        }
        for f in schema
    ]


def register_partitions(
    glue: Any,
    database: str,
    table: str,
    location: str,
    days: Iterable[str],
    *,
    schema: pa.Schema = SCHEMA,
    description: str = DESCRIPTION,
) -> Registration:
    """Make sure the database and table exist, then register every day not yet registered.

    Args:
        glue: a boto3 Glue client.
        database: Glue database name.
        table: Glue table name.
        location: s3:// URI of the folder above the `date=` folders, ending in "/".
        days: the days that have a file (YYYY-MM-DD).
        schema: the files' schema (the raw table's, or the country-day table's).
        description: the table's description in Glue.

    Raises:
        GlueCatalogError: the table exists with other columns, or Glue refused partitions.
    """
    _ensure_database(glue, database)
    table_created = _ensure_table(
        glue, database, table, location, _TABLE_PARAMETERS, schema, description
    )
    columns = glue_columns(schema)
    registered = set(_registered_days(glue, database, table))
    new_days = sorted(set(days) - registered)
    for start in range(0, len(new_days), _BATCH):
        batch = new_days[start : start + _BATCH]
        response = glue.batch_create_partition(
            DatabaseName=database,
            TableName=table,
            PartitionInputList=[_partition_input(location, day, columns) for day in batch],
        )
        errors = [
            error
            for error in response.get("Errors", [])
            # Another writer got there first: the partition is registered, which is the goal.
            if error["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"
        ]
        if errors:
            details = "; ".join(
                f"{e['PartitionValues']}: {e['ErrorDetail']['ErrorMessage']}" for e in errors[:5]
            )
            raise GlueCatalogError(
                f"Glue refused {len(errors)} partitions of {database}.{table}: {details}"
            )
    log.info("registered %d new partitions in %s.%s", len(new_days), database, table)
    return Registration(table_created, len(new_days), len(registered) + len(new_days))


def registered_days(glue: Any, database: str, table: str) -> list[str]:
    """The `date` partition values registered for a table."""
    return sorted(_registered_days(glue, database, table))


def _registered_days(glue: Any, database: str, table: str) -> Iterable[str]:
    paginator = glue.get_paginator("get_partitions")
    for page in paginator.paginate(DatabaseName=database, TableName=table):
        for partition in page["Partitions"]:
            yield partition["Values"][0]


def _ensure_database(glue: Any, database: str) -> None:
    try:
        glue.create_database(DatabaseInput={"Name": database})
        log.info("created Glue database %s", database)
    except glue.exceptions.AlreadyExistsException:
        pass


def _ensure_table(
    glue: Any,
    database: str,
    table: str,
    location: str,
    parameters: dict[str, str],
    schema: pa.Schema,
    description: str,
) -> bool:
    """Create the table (True), or check that the existing one has our columns and location."""
    columns = glue_columns(schema)
    try:
        existing = glue.get_table(DatabaseName=database, Name=table)["Table"]
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(
            DatabaseName=database,
            TableInput={
                "Name": table,
                "Description": description,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": parameters,
                "PartitionKeys": [{"Name": PARTITION_KEY, "Type": "string"}],
                "StorageDescriptor": {
                    "Columns": columns,
                    "Location": location,
                    **_PARQUET_FORMAT,
                },
            },
        )
        log.info("created Glue table %s.%s at %s", database, table, location)
        return True
    found = [(c["Name"], c["Type"]) for c in existing["StorageDescriptor"]["Columns"]]
    wanted = [(c["Name"], c["Type"]) for c in columns]
    if found != wanted:
        # Never alter a table silently: its other partitions may hold data of the old shape.
        raise GlueCatalogError(
            f"Glue table {database}.{table} exists with other columns than the pipeline writes "
            f"(found {found}, expected {wanted}). Drop it, or set GLUE_TABLE to another name."
        )
    found_location = existing["StorageDescriptor"].get("Location")
    if found_location != location:
        raise GlueCatalogError(
            f"Glue table {database}.{table} points at {found_location}, not {location}. "
            "Set GLUE_TABLE to another name, or PREFIX to its location."
        )
    return False


def _partition_input(location: str, day: str, columns: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Values": [day],
        "StorageDescriptor": {
            "Columns": columns,
            "Location": f"{location}{day_folder(day)}",
            **_PARQUET_FORMAT,
        },
    }
