"""Where each day's file lives: `<prefix>/date=YYYY-MM-DD/data.parquet`, the one layout.

Fixed by the design, under `s3://<bucket>/` or under a local warehouse directory. Hive-style
`date=` folders let Glue, Athena and DuckDB read the day as a partition column. Every writer
(the Dagster IO manager, the Lambda handler) and every reader (the stores' listings, the lake
sensor, DuckDB, Glue's partitions and projection) builds keys, folders and globs here.
"""

import re

PARTITION_COLUMN = "date"  # the partition column the folders name, as every catalog reads it
FILE_NAME = "data.parquet"
DAY_FOLDERS = f"{PARTITION_COLUMN}="  # how every day's folder under a prefix starts
DAY_FILES = f"{DAY_FOLDERS}*/{FILE_NAME}"  # a glob of every day's file under a prefix
_DAY_FOLDER = re.compile(rf"{DAY_FOLDERS}(\d{{4}}-\d{{2}}-\d{{2}})/" + re.escape(FILE_NAME) + "$")


def day_folder(day: str) -> str:
    """`date=<day>/`: a day's folder under its prefix."""
    return f"{DAY_FOLDERS}{day}/"


def partition_key(prefix: str, day: str) -> str:
    """`<prefix>/date=<day>/data.parquet`: a day's file."""
    return f"{prefix}/{day_folder(day)}{FILE_NAME}" if prefix else f"{day_folder(day)}{FILE_NAME}"


def s3_uri(bucket: str, key: str) -> str:
    """`s3://<bucket>/<key>`."""
    return f"s3://{bucket}/{key}"


def folder_uri(bucket: str, prefix: str) -> str:
    """`s3://<bucket>/<prefix>/`: the folder above the days, as Glue and Athena want it."""
    return s3_uri(bucket, f"{prefix}/" if prefix else "")


def day_of(key: str) -> str | None:
    """The day whose file `key` (relative to a prefix) is, or None for any other key."""
    match = _DAY_FOLDER.search(key)
    return match.group(1) if match else None
