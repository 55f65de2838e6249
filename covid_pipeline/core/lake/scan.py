"""What the lake holds, page by page, for whoever keeps a record of it (the lake sensor).

Any surface may write a day (a Dagster run, a direct Lambda invocation, a run killed before it
recorded anything). The files themselves say what they hold and who wrote them (core.lake.parquet's
stamps), so a record can be brought up to date from the lake alone, without the API.

A shared lake also holds files that are not days of ours under a day's key: another tool's
upload, a truncated copy, an HTML error page saved as the file. The file's footer tells
(core.lake.parquet's `day_footer`); a reader then names the file and what to do (`StrayFile`), and
no such file stops it from going on to the others.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from covid_pipeline.core.lake.parquet import (
    WRITER_KEY,
    NotADayFile,
    day_footer,
    stamp_of,
)
from covid_pipeline.core.lake.stores import StorageAccessError, Store, StoredFile

REMEDY = (
    "re-run that day (the run overwrites the file), or move the file out of the lake if "
    "another tool put it there"
)


@dataclass(frozen=True)
class DayFile:
    """A day's file, with what its Parquet footer says."""

    file: StoredFile
    rows: int
    writer: str | None  # None: written before writers were stamped


def changed_since_recorded(
    files: Sequence[StoredFile], recorded_at: Mapping[str, float]
) -> list[StoredFile]:
    """The files written after the day was last recorded (`recorded_at`: day -> POSIX time).

    A writer records a day after its file lands, so a record at or after the file's time
    covers it; S3's times are whole seconds, rounded down, which only makes the file older.
    """
    return [file for file in files if recorded_at.get(file.day, -1.0) < file.modified]


@dataclass(frozen=True)
class StrayFile:
    """A file at a day's key that is not a day of ours, and why (core.lake.parquet.day_footer)."""

    file: StoredFile
    reason: str

    def message(self) -> str:
        """What a person reads: the file, what is wrong with it, and what to do."""
        return stray_message(self.file.uri, self.reason)


def stray_message(where: str, reason: str) -> str:
    """The one wording, for every reader, of a file at a day's key that is not a day of ours."""
    return f"{where} is not a day this pipeline can read ({reason}): {REMEDY}"


def read_day_file(store: Store, file: StoredFile) -> DayFile | StrayFile | None:
    """The file's rows and stamps, from one read of it (None: removed since it was listed)."""
    try:
        data = store.get(file.key)
    except (OSError, StorageAccessError) as error:  # this file alone: a permission, say
        return StrayFile(file, f"unreadable: {error}")
    if data is None:
        return None
    try:
        footer = day_footer(data)
    except NotADayFile as error:
        return StrayFile(file, str(error))
    return DayFile(
        file=file,
        rows=footer.num_rows,
        writer=stamp_of(footer.metadata, WRITER_KEY),
    )


def modified_utc(file: StoredFile) -> str:
    """The file's time as ISO 8601 in UTC, as metadata shows it."""
    return dt.datetime.fromtimestamp(file.modified, dt.UTC).isoformat(timespec="seconds")
