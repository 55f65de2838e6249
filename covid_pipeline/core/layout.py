"""Where each day's file lives: `<prefix>/date=YYYY-MM-DD/data.parquet`, the one layout.

Fixed by the design, under `s3://<bucket>/` or under a local warehouse directory. Hive-style
`date=` folders let Glue, Athena and DuckDB read the day as a partition column. Every writer
(the Dagster IO manager, the Lambda handler) and every reader builds keys here, so they agree.
"""

import re

FILE_NAME = "data.parquet"
_DAY_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})/" + re.escape(FILE_NAME) + "$")


def partition_key(prefix: str, day: str) -> str:
    """`<prefix>/date=<day>/data.parquet`, the one place the layout is spelled out."""
    return f"{prefix}/date={day}/{FILE_NAME}" if prefix else f"date={day}/{FILE_NAME}"


def day_of(key: str) -> str | None:
    """The day whose file `key` (relative to a prefix) is, or None for any other key."""
    match = _DAY_FOLDER.search(key)
    return match.group(1) if match else None
