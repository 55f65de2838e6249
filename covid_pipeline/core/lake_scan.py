"""What the lake holds, page by page, for whoever keeps a record of it (the lake sensor).

Any surface may write a day (a Dagster run, a direct Lambda invocation, a run killed before it
recorded anything). The files themselves say what they hold and who wrote them (core.parquet's
stamps), so a record can be brought up to date from the lake alone, without the API.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from covid_pipeline.core.parquet import COUNTRIES_KEY, WRITER_KEY, stamp_of
from covid_pipeline.core.stores import Store, StoredFile


@dataclass(frozen=True)
class DayFile:
    """A day's file, with what its Parquet footer says."""

    file: StoredFile
    rows: int
    countries: str | None
    writer: str | None  # None: written before writers were stamped


def changed_since_recorded(
    files: Sequence[StoredFile], recorded_at: Mapping[str, float]
) -> list[StoredFile]:
    """The files written after the day was last recorded (`recorded_at`: day -> POSIX time).

    A writer records a day after its file lands, so a record at or after the file's time
    covers it; S3's times are whole seconds, rounded down, which only makes the file older.
    """
    return [file for file in files if recorded_at.get(file.day, -1.0) < file.modified]


def read_day_file(store: Store, file: StoredFile) -> DayFile | None:
    """The file's rows and stamps, from one read of it (None: removed since it was listed)."""
    data = store.get(file.key)
    if data is None:
        return None
    footer = pq.read_metadata(pa.BufferReader(data))
    return DayFile(
        file=file,
        rows=footer.num_rows,
        countries=stamp_of(footer.metadata, COUNTRIES_KEY),
        writer=stamp_of(footer.metadata, WRITER_KEY),
    )


def modified_utc(file: StoredFile) -> str:
    """The file's time as ISO 8601 in UTC, as metadata shows it."""
    return dt.datetime.fromtimestamp(file.modified, dt.UTC).isoformat(timespec="seconds")
