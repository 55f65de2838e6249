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
    """One day's table (only `columns`, if given), or None when that day has no file."""
    key = partition_key(prefix, day)
    if columns is not None:
        return _read_columns(store, key, columns)
    data = store.get(key)
    return None if data is None else decode_parquet(data)


# The tail read first: a day's footer (~8 KB at the real API's volume), or all of a small file.
_TAIL_BYTES = 16 * 1024


def _read_columns(store: Store, key: str, columns: Sequence[str]) -> pa.Table | None:
    """Only `columns` of the file: its tail (the footer), then those columns' byte range.

    A day at the real API's volume is ~130 KB, 95% of it the nested counties; the roll-up's
    columns are ~4 KB of it. So the file's footer says where those columns' chunks lie, one
    ranged read fetches them, and the table is decoded from a buffer of the file's size
    holding only what was read (what is not read is never decoded). A footer longer than the
    tail costs a third read.
    """
    found = store.get_tail(key, _TAIL_BYTES)
    if found is None:
        return None
    tail, size = found
    if len(tail) == size:  # a small file: all of it came with the tail
        return decode_parquet(tail, columns)
    if len(tail) < 8 or tail[-4:] != b"PAR1":  # not Parquet: let the decoder say so
        data = store.get(key)
        return None if data is None else decode_parquet(data, columns)
    footer = int.from_bytes(tail[-8:-4], "little") + 8
    if footer > len(tail):
        tail = store.get_range(key, size - footer, size)
    metadata = pq.read_metadata(pa.BufferReader(tail))
    start, stop = _column_span(metadata, columns)
    sparse = bytearray(size)
    sparse[:4] = b"PAR1"
    sparse[start:stop] = store.get_range(key, start, stop)
    sparse[size - len(tail) :] = tail
    return decode_parquet(bytes(sparse), columns)


def _column_span(metadata: pq.FileMetaData, columns: Sequence[str]) -> tuple[int, int]:
    """The byte range [start, stop) that holds every chunk of `columns` in every row group."""
    wanted = set(columns)
    spans = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            if chunk.path_in_schema.split(".")[0] not in wanted:
                continue
            first = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
                first = min(first, chunk.dictionary_page_offset)
            spans.append((first, first + chunk.total_compressed_size))
    return min(start for start, _ in spans), max(stop for _, stop in spans)


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
