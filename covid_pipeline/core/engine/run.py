"""Run a range of days into a store: fetch, decode, check, write, report, in one call.

The one assembly every entry point shares. The Dagster IO manager and the Lambda handler both
call `run_range`, with the same knobs (`RangeOptions`), and read the same immutable answer
(`RangeOutcome`): what was written, skipped, failed and left unfinished, and which checks each
day failed. Data flows one way: the stream hands out days (core.engine.stream), the writer lands
them (core.engine.writes), `on_landed` hears of each as it lands, and the outcome comes back at
the end.

A day that fails does not stop the others; the outcome names each with its cause, and the
caller decides what a failure means for its run. Two things stop a range at once and raise:
a store that cannot be written at all (StorageAccessError: every other day would fail the same
way), and a stop (Ctrl-C, a terminated run). Either way the writes in flight finish whole and
are reported through `on_landed` first.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from covid_pipeline.core.engine.report import ProgressCallback, run_failure_message
from covid_pipeline.core.engine.stream import DayStream, FetchedDay
from covid_pipeline.core.engine.writes import write_stream
from covid_pipeline.core.lake.day_files import WrittenFile, encode_day, put_day, put_day_via_file
from covid_pipeline.core.lake.parquet import DIRECT_WRITER
from covid_pipeline.core.lake.stores import Store
from covid_pipeline.core.schema import checks
from covid_pipeline.core.source.api import CovidApiClient

log = logging.getLogger(__name__)

OnLanded = Callable[[str, WrittenFile | None], None]  # a day, and its file (None: skipped)
TimeLeft = Callable[[], float]
_MARGIN_S = 5.0  # kept free at the end for returning the answer
_FIRST_DAY_ESTIMATE_S = 10.0  # until a day has been timed


@dataclass(frozen=True)
class RangeOptions:
    """How hard a range pushes: the same three knobs for every entry point.

    Their defaults are the settings' (FETCH_CONCURRENCY, ...): core.config.range_options.
    """

    fetch_concurrency: int  # requests in flight: the API's budget
    write_concurrency: int  # days being encoded and written at once
    cpu_workers: int | None = None  # processes that decode; None: automatic (core.engine.workers)


@dataclass(frozen=True)
class RangeOutcome:
    """What a range did, day by day; every day of `days` is in exactly one of the four groups.

    Attributes:
        days: the range, in order.
        countries: the country set's label (USA, CAN,USA, ALL), as the files record it.
        api_url: where the days were fetched from (None: tables handed over whole).
        written: each written day's file.
        skipped: days the API had no data for (no file).
        failed: days that could not be fetched, decoded or written, with their cause.
        unfinished: days not started (the Lambda's deadline).
        rows: the rows of every day that arrived, written or not.
        check_failures: day -> check -> why, for the days that fail a check (core.schema.checks).
        duration_s: how long the range took.
    """

    days: tuple[str, ...]
    countries: str
    api_url: str | None
    written: Mapping[str, WrittenFile]
    skipped: tuple[str, ...]
    failed: Mapping[str, str]
    unfinished: tuple[str, ...]
    rows: Mapping[str, int]
    check_failures: Mapping[str, Mapping[str, str]]
    duration_s: float

    def failure_message(self) -> str:
        """The message of a run with failed days: counts, causes, the API, what to do."""
        what = f"failed (API: {self.api_url})" if self.api_url else "could not be written"
        return run_failure_message(self.failed, len(self.days), what, len(self.written))

    def check_outcomes(self) -> list[checks.CheckOutcome]:
        """Each check over the whole range, naming the days that fail it."""
        return checks.merge(self.check_failures, self.rows, self.countries)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the Lambda's answer); `remaining`: not started."""
        files = self.written.values()
        return {
            "written": sorted(self.written),
            "files": {
                day: {"uri": f.uri, "rows": f.rows, "bytes": f.bytes}
                for day, f in sorted(self.written.items())
            },
            "skipped": sorted(self.skipped),
            "failed": dict(sorted(self.failed.items())),
            "remaining": list(self.unfinished),
            "check_failures": {day: dict(f) for day, f in sorted(self.check_failures.items())},
            "counts": {
                "written": len(self.written),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "remaining": len(self.unfinished),
                "rows": sum(file.rows for file in files),
                "bytes": sum(file.bytes for file in files),
            },
            "duration_s": round(self.duration_s, 3),
        }


def run_range(
    client: CovidApiClient,
    store: Store,
    prefix: str,
    days: Iterable[dt.date],
    options: RangeOptions,
    *,
    writer: str = DIRECT_WRITER,
    staging_dir: Path | None = None,
    time_left_s: TimeLeft | None = None,
    on_landed: OnLanded | None = None,
    on_progress: ProgressCallback = log.info,
) -> RangeOutcome:
    """Fetch, decode, check and write each day of `days` as soon as it arrives.

    Args:
        client: the API client (one pooled HTTP session).
        store: where the files go.
        prefix: the folder of this country set in `store`.
        days: the range.
        options: the concurrency knobs.
        writer: who is writing, stamped in each file (core.lake.parquet: a Dagster run, a Lambda).
        staging_dir: write each day's file here first, upload it and delete it (the
            Lambda's /tmp: the directory does not grow with the range); None puts each day's
            bytes directly.
        time_left_s: with it, no day is started unless the slowest day so far (times 1.5,
            plus a margin) still fits; the days not started are `unfinished`.
        on_landed: hears of each day as it lands (None: skipped), in the calling thread.
        on_progress: receives a progress line every few seconds.

    Raises:
        StorageAccessError: once the writes in flight end, if the store cannot be written at
            all; no further day is started, and the message says which days were written.
    """
    started = time.monotonic()
    slowest_s = 0.0
    write_seconds: dict[str, float] = {}

    def fits() -> bool:
        if time_left_s is None:
            return True
        needed = (slowest_s * 1.5 if slowest_s else _FIRST_DAY_ESTIMATE_S) + _MARGIN_S
        return time_left_s() >= needed

    stream = DayStream(
        client,
        days,
        concurrency=options.fetch_concurrency,
        cpu_workers=options.cpu_workers,
        writer=writer,
        may_start=fits,
        on_progress=on_progress,
    )

    def write(fetched: FetchedDay) -> WrittenFile:
        began = time.monotonic()
        if staging_dir is None:
            file = put_day(store, prefix, fetched.day, fetched.file)
        else:
            file = put_day_via_file(store, prefix, fetched.day, fetched.file, staging_dir)
        write_seconds[fetched.day] = time.monotonic() - began
        return file

    def timed(fetched: FetchedDay, _file: WrittenFile | None) -> None:
        nonlocal slowest_s
        slowest_s = max(slowest_s, fetched.seconds + write_seconds.get(fetched.day, 0.0))

    tally = _Tally(on_landed, also=timed)
    write_failures = write_stream(
        tally.count(stream),
        write,
        concurrency=options.write_concurrency,
        total=stream.total,
        on_written=tally.landed,
    )
    outcome = tally.outcome(
        stream.days,
        stream.countries,
        client.base_url,
        failed={**stream.failures, **write_failures},
        unfinished=stream.unfinished,
        duration_s=time.monotonic() - started,
    )
    if outcome.unfinished:
        on_progress(f"out of time: {len(outcome.unfinished)} days left for the next invocation")
    return outcome


def write_tables(
    tables: Iterable[tuple[str, pa.Table]],
    store: Store,
    prefix: str,
    countries: str,
    *,
    days: Sequence[str],
    writer: str = DIRECT_WRITER,
    write_concurrency: int,
    on_landed: OnLanded | None = None,
) -> RangeOutcome:
    """Write computed tables as `run_range` writes fetched days (no rows: skipped).

    `tables` yields (day, table) for `days`, and may compute them as it goes: each is
    encoded when a write slot is free and written at once, so computing and writing overlap
    and only the days in flight are held.

    Raises:
        StorageAccessError: as run_range.
    """
    started = time.monotonic()
    tally = _Tally(on_landed)
    failed = write_stream(
        tally.count(FetchedDay(day, encode_day(table, countries, writer)) for day, table in tables),
        lambda fetched: put_day(store, prefix, fetched.day, fetched.file),
        concurrency=write_concurrency,
        total=len(days),
        on_written=tally.landed,
    )
    return tally.outcome(
        days, countries, None, failed=failed, unfinished=[], duration_s=time.monotonic() - started
    )


class _Tally:
    """Collects a range's days as they pass through: rows and checks out, files landed."""

    def __init__(
        self,
        on_landed: OnLanded | None,
        also: Callable[[FetchedDay, WrittenFile | None], None] | None = None,
    ) -> None:
        self.on_landed, self.also = on_landed, also
        self.rows: dict[str, int] = {}
        self.check_failures: dict[str, Mapping[str, str]] = {}
        self.written: dict[str, WrittenFile] = {}
        self.skipped: list[str] = []

    def count(self, days: Iterable[FetchedDay]) -> Iterator[FetchedDay]:
        """`days`, unchanged, each counted as it goes by; closing this closes `days`."""
        iterator = iter(days)
        try:
            for fetched in iterator:
                self.rows[fetched.day] = fetched.rows
                if fetched.check_failures:
                    self.check_failures[fetched.day] = fetched.check_failures
                yield fetched
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a DayStream stops fetching here, whatever happened

    def landed(self, fetched: FetchedDay, file: WrittenFile | None) -> None:
        """A day landed (None: skipped, no data)."""
        if file is None:
            self.skipped.append(fetched.day)
        else:
            self.written[fetched.day] = file
        if self.also is not None:
            self.also(fetched, file)
        if self.on_landed is not None:
            self.on_landed(fetched.day, file)

    def outcome(
        self,
        days: Iterable[str],
        countries: str,
        api_url: str | None,
        *,
        failed: Mapping[str, str],
        unfinished: Iterable[str],
        duration_s: float,
    ) -> RangeOutcome:
        return RangeOutcome(
            days=tuple(days),
            countries=countries,
            api_url=api_url,
            written=dict(self.written),
            skipped=tuple(sorted(self.skipped)),
            failed=dict(sorted(failed.items())),
            unfinished=tuple(unfinished),
            rows=dict(self.rows),
            check_failures=dict(self.check_failures),
            duration_s=duration_s,
        )
