"""A day in a store: write its table as its partition's file, read it back, check the prefix.

Keys come from the layout, bytes from parquet, places from stores (all in core.lake): every
writer (the Dagster IO manager, the Lambda handler) writes a day through here, so they agree.
"""

import collections
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from covid_pipeline.core.lake.layout import partition_key
from covid_pipeline.core.lake.parquet import (
    COUNTRIES_KEY,
    DIRECT_WRITER,
    NotADayFile,
    countries_of,
    day_footer,
    decode_parquet,
    encode_parquet,
    stamp_of,
)
from covid_pipeline.core.lake.stores import StorageAccessError, Store, fatal_local_errors


@dataclass(frozen=True)
class WrittenFile:
    """What was written for one day."""

    day: str
    uri: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class DayFile:
    """A day's table encoded as its file, stamped, not yet written (no rows: skipped, unwritten).

    What a decoding worker hands back: a day's file is a fifth of its table's size at the real
    API's volume, and bytes cross a process boundary without being encoded again.
    """

    rows: int
    data: bytes


def encode_day(table: pa.Table, countries: str, writer: str = DIRECT_WRITER) -> DayFile:
    """A day's table as its file, stamped with its country set and writer (rows or none)."""
    return DayFile(rows=table.num_rows, data=encode_parquet(table, countries, writer))


def write_day(
    store: Store,
    prefix: str,
    day: str,
    table: pa.Table,
    countries: str,
    writer: str = DIRECT_WRITER,
) -> WrittenFile:
    """Write one day's table as its partition's file, stamped with its country set and writer."""
    return put_day(store, prefix, day, encode_day(table, countries, writer))


def put_day(store: Store, prefix: str, day: str, file: DayFile) -> WrittenFile:
    """Write one day's encoded file as its partition's file."""
    key = partition_key(prefix, day)
    store.put(key, file.data)
    return WrittenFile(day=day, uri=store.uri(key), rows=file.rows, bytes=len(file.data))


def put_day_via_file(
    store: Store, prefix: str, day: str, file: DayFile, staging_dir: Path
) -> WrittenFile:
    """Write one day's encoded file to a local file first, upload it, then delete the file.

    For Lambda (the design's /tmp, then upload): the staging directory never holds more than
    the days being uploaded.
    """
    key = partition_key(prefix, day)
    path = staging_dir / f"{day}.parquet"
    try:
        # A full /tmp would fail every day alike: stop the range, as a full warehouse does.
        with fatal_local_errors(f"the staging directory {staging_dir}", path, _STAGING_ADVICE):
            path.write_bytes(file.data)
        store.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)
    return WrittenFile(day=day, uri=store.uri(key), rows=file.rows, bytes=len(file.data))


def check_ready(store: Store, prefix: str, countries: str) -> None:
    """Before anything is fetched: the store can be written, and the prefix is this set's.

    Raises:
        StorageAccessError: the store clearly cannot be written (see Store.preflight), or
            (CountrySetMismatch) the prefix holds another country set's files.
    """
    store.preflight(prefix)
    check_country_set(store, prefix, countries)


class CountrySetMismatch(StorageAccessError):
    """The prefix holds files of another country set; writing there would mix two sets."""


def check_country_set(store: Store, prefix: str, countries: str) -> None:
    """Refuse a prefix that already holds files written for another country set.

    One prefix holds one set, so that no day's file and no query mixes two (a day written for
    USA beside a day written for USA,CAN would look like Canada had no data). One existing
    file of ours is read: every writer stamps each file with its set. Files at days' keys that
    are not ours are passed over (the lake sensor reports them), the first few at most.

    Raises:
        CountrySetMismatch: naming both sets and what to do.
    """
    found, day = _country_set_in(store, prefix)
    if found is None or found == countries:
        return
    where = store.uri(prefix)
    raise CountrySetMismatch(
        f"{where} holds files written for {found} (e.g. {day}), and this run is for "
        f"{countries}: one prefix holds one country set, so that no day mixes two. Set "
        f"PREFIX to a folder of this set's own (the default follows ISO_CODE), or set ISO_CODE "
        f"back to {found}."
    )


_FILES_TO_TRY = 10


def _country_set_in(store: Store, prefix: str) -> tuple[str | None, str | None]:
    """The country set of the prefix's first day of ours, and that day (None: no such day).

    A file's stamp says its set, whichever table it is a day of (raw or country-day); an
    unstamped one (written before the stamps) is a raw day of ours, whose rows say it.
    """
    for day in itertools.islice(store.days(prefix), _FILES_TO_TRY):
        data = store.get(partition_key(prefix, day))
        if data is None:
            continue
        try:
            stamp = stamp_of(pq.read_metadata(pa.BufferReader(data)).metadata, COUNTRIES_KEY)
        except (OSError, pa.ArrowException):  # not Parquet: an error page, a cut-off copy
            continue
        if stamp is not None:
            return stamp, day
        try:
            day_footer(data)
        except NotADayFile:
            continue
        return countries_of(decode_parquet(data)), day
    return None, None


def read_day(
    store: Store, prefix: str, day: str, columns: Sequence[str] | None = None
) -> pa.Table | None:
    """One day's table (only `columns`, if given), or None when that day has no file.

    The whole file is fetched in one GET and only `columns` are decoded: at the real API's
    volume a day is ~120 KB, and a second request for a column range cost more time than the
    bytes it saved (docs/performance.md, "Reading the raw days").
    """
    data = store.get(partition_key(prefix, day))
    return None if data is None else decode_parquet(data, columns)


@dataclass(frozen=True)
class LakeDays:
    """Days of a prefix, read only when iterated: (day, its table or None), in order.

    What a reader of many days is handed: iterating reads `read_ahead` files at a time, only
    `columns` of each (all if None), so the whole history costs the memory of a few days.
    """

    store: Store
    prefix: str
    days: tuple[str, ...]
    columns: tuple[str, ...] | None
    read_ahead: int

    def __iter__(self) -> Iterator[tuple[str, pa.Table | None]]:
        return read_days(self.store, self.prefix, self.days, self.columns, self.read_ahead)

    def __len__(self) -> int:
        return len(self.days)


def read_days(
    store: Store, prefix: str, days: Sequence[str], columns: Sequence[str] | None, read_ahead: int
) -> Iterator[tuple[str, pa.Table | None]]:
    """(day, its table or None) for each of `days`, in order, `read_ahead` files in flight."""
    with ThreadPoolExecutor(max_workers=read_ahead) as pool:
        pending: collections.deque[tuple[str, Future[pa.Table | None]]] = collections.deque()
        for day in days:
            pending.append((day, pool.submit(read_day, store, prefix, day, columns)))
            if len(pending) >= read_ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


_STAGING_ADVICE = (
    "Free space there (in Lambda: /tmp, sized by the function's EphemeralStorage), then re-run "
    "the same range: days already written are whole and are overwritten."
)
