"""Days as the pipeline writes them from the replay's data, and files that are not days."""

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from covid_pipeline_replay import jhu

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.lake import day_files, stores
from covid_pipeline.core.schema.transform import to_table

CATALOG_TABLE = "covid_daily_reports_usa"


CATALOG_DAYS = day_range(dt.date(2020, 4, 1), dt.date(2020, 4, 14))


def replay_table(day: str | dt.date) -> pa.Table:
    """The replay's USA reports for `day` as the pipeline writes them: what its file holds."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return to_table(day, jhu.reports("USA", day))


def assert_days_match_replay(store: stores.Store, prefix: str, days: Iterable[str]) -> None:
    """Each day's file exists, reads whole, and holds exactly the replay's day."""
    for day in days:
        table = day_files.read_day(store, prefix, day)
        assert table is not None and table.equals(replay_table(day)), day


def write_days(root: Path, days: list[dt.date]) -> None:
    """Write the replay's USA reports for `days` into a local warehouse at `root`."""
    store = stores.LocalStore(root)
    for day in days:
        day_files.write_day(store, "covid_daily_reports/usa", str(day), replay_table(day), "USA")


# Files a shared lake may hold at a day's key that are not days of ours.
STRAY_KINDS = ("html", "truncated", "foreign")


def write_stray_file(path: Path, kind: str) -> None:
    """Replace the day's file at `path` with a file that is not a day of ours."""
    if kind == "html":  # a CDN's error page saved as the file
        path.write_bytes(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    elif kind == "truncated":  # a copy cut short
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # another tool's Parquet file
        pq.write_table(pa.table({"id": [1, 2], "value": ["a", "b"]}), path)


WORLD_TABLE = "covid_daily_reports_all"
COUNTRY_TABLE = "covid_country_daily_usa"
