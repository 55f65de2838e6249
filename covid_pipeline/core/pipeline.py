"""Fetch, decode and write a range of days: the compute every entry point shares.

A range flows through as a stream. `DayStream` fetches days concurrently (a bounded pool over
one HTTP session, polite to a public API), decodes each (core.workers: in worker processes
when that pays) and hands it out as soon as it arrives; `write_stream` writes each day as it
comes, a few at a time. Nothing accumulates: only the days in flight exist in memory, however
long the range, and fetching, decoding, writing and recording overlap.

A day that fails does not stop the others; the caller gets every failure with its cause and
decides what a failure means for the run. Two things do stop a range at once: a store that
cannot be written at all (StorageAccessError: every other day would fail the same way), and a
stop (Ctrl-C, a terminated run): no new request is made, queued days are dropped, days being
written finish whole and are reported.
"""

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from covid_pipeline.core import transform, workers
from covid_pipeline.core.api import ApiError, CovidApiClient, DayPayload, FetchStopped
from covid_pipeline.core.storage import (
    StorageAccessError,
    Store,
    WrittenFile,
    write_day_via_file,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]


def failure_report(failures: Mapping[str, str], total: int, what: str) -> str:
    """`N of M days <what>:` then a line per distinct cause with the days it hit, in day order."""
    days_by_cause: dict[str, list[str]] = {}
    for day, cause in sorted(failures.items()):
        days_by_cause.setdefault(cause, []).append(day)
    lines = [f"{len(failures)} of {total} days {what}:"]
    lines += [f"  {short_list(days)}: {cause}" for cause, days in days_by_cause.items()]
    return "\n".join(lines)


def short_list(days: list[str], shown: int = 10) -> str:
    """`a, b, c and 5 more`: days for a log line or a message, in order."""
    days = sorted(days)
    more = f" and {len(days) - shown} more" if len(days) > shown else ""
    return ", ".join(days[:shown]) + more


def run_failure_message(failures: Mapping[str, str], total: int, what: str, written: int) -> str:
    """A failed run's message: the failed days and causes, what was written, what to do."""
    return "\n".join(
        [failure_report(failures, total, what), _written_before(written, total), _RERUN_ADVICE]
    )


def _written_before(written: int, total: int) -> str:
    # What a failed run still did, in words: partial work is reported, not hidden.
    if not written:
        return "No day was written."
    return (
        f"The other {written} of {total} days were written, each file whole."
        if written < total
        else f"All {total} days were written, each file whole."
    )


_RERUN_ADVICE = (
    "Re-run the same range once the cause is fixed: days are overwritten, never duplicated."
)


class Progress:
    """Counts finished days and reports done/total, failures, rate and ETA every `every_s`."""

    def __init__(
        self, what: str, total: int, report: ProgressCallback, every_s: float = 5.0
    ) -> None:
        self.what, self.total, self.report, self.every_s = what, total, report, every_s
        self.done = self.failed = 0
        self.started = self._last = time.monotonic()

    def tick(self, *, failed: bool = False) -> None:
        """Count one finished day (`failed`: it did not make it), and report if it is time to."""
        if failed:
            self.failed += 1
        else:
            self.done += 1
        now = time.monotonic()
        if self.finished or now - self._last >= self.every_s:
            self._last = now
            self.report(self.summary())

    @property
    def finished(self) -> bool:
        """Every day has been counted."""
        return self.done + self.failed == self.total

    def summary(self) -> str:
        """e.g. `fetched 120/1143 days (10%), 2 failed, 45.2 days/s, ETA 23s`."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        finished = self.done + self.failed
        rate = finished / elapsed
        eta = (self.total - finished) / rate if rate else float("inf")
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.what} {self.done}/{self.total} days ({self.done / self.total:.0%}){failed}, "
            f"{rate:.1f} days/s, {'done' if self.finished else f'ETA {eta:.0f}s'}"
        )


@dataclass(frozen=True)
class FetchedDay:
    """One day as it arrived: its table (no rows: the API had no data), checks and timing."""

    day: str
    table: pa.Table
    check_failures: Mapping[str, str] = field(default_factory=dict)  # check -> why
    seconds: float = 0.0  # fetching and decoding it took


class DayStream:
    """A range's days, fetched and decoded concurrently, handed out in the order they arrive.

    At most `concurrency` requests are in flight, and at most twice as many days between their
    request and the consumer, so a new day starts only as the consumer takes one: memory stays
    flat however long the range. Days that fail are not handed out; they are
    collected in `failures` with their cause. `stop()` (or leaving the iteration early) makes no
    new request: queued days are dropped and days in flight are abandoned whole.

    Args:
        client: the API client (one pooled HTTP session).
        days: the days to fetch.
        concurrency: days fetched at once.
        cpu_workers: processes that decode (0: one thread beside the fetches; None: automatic, see
            core.workers).
        may_start: asked before each new request; False leaves the rest in `unfinished` (the
            Lambda's deadline).
        on_progress: receives a progress line every few seconds.
    """

    def __init__(
        self,
        client: CovidApiClient,
        days: Iterable[dt.date],
        *,
        concurrency: int,
        cpu_workers: int | None = None,
        may_start: Callable[[], bool] | None = None,
        on_progress: ProgressCallback = log.info,
    ) -> None:
        self.client = client
        self.days = [day.isoformat() for day in days]
        self.concurrency = concurrency
        self.cpu_workers = workers.workers_for(cpu_workers, len(self.days))
        self.may_start = may_start or (lambda: True)
        self.on_progress = on_progress
        self.failures: dict[str, str] = {}  # day -> cause
        self.transient = True  # every failure may pass on a later try
        self.unfinished: list[str] = []  # not started (deadline) or abandoned (stop)
        self.check_failures: dict[str, dict[str, str]] = {}  # day -> check -> why
        self.rows: dict[str, int] = {}  # rows of each day handed out
        self._stop = threading.Event()

    @property
    def total(self) -> int:
        """Days in the range."""
        return len(self.days)

    @property
    def api_url(self) -> str:
        """Where the days are fetched from, for messages."""
        return self.client.base_url

    def stop(self) -> None:
        """Make no new request: queued days are dropped, days in flight abandoned."""
        self._stop.set()

    def failure_report(self, written: int, write_failures: Mapping[str, str]) -> str:
        """The message for a run with failed days: counts, causes, the API, what to do."""
        failures = {**self.failures, **write_failures}
        return run_failure_message(failures, self.total, f"failed (API: {self.api_url})", written)

    def __iter__(self) -> Iterator[FetchedDay]:
        queries = self.client.countries.queries  # a request per country, or one for ALL
        pending = deque((day, iso) for day in self.days for iso in queries)
        progress = Progress("fetched", self.total, self.on_progress)
        decoder = workers.DecodePool(self.cpu_workers)
        fetchers = ThreadPoolExecutor(self.concurrency, thread_name_prefix="fetch")
        # Two stages, each bounded: requests in flight, and days being decoded. A request's
        # slot frees as soon as its bytes are in, so decoding never holds back the fetching.
        fetching: dict[Future[DayPayload], tuple[str, str | None]] = {}
        arrived: dict[str, dict[str | None, DayPayload]] = {}  # a day's countries so far
        decoding: dict[Future[_Decoded], str] = {}
        began: dict[str, float] = {}
        try:
            while True:
                while (
                    pending
                    and len(fetching) < self.concurrency
                    and len(fetching) + len(decoding) < 2 * self.concurrency
                    and not self._stop.is_set()
                    and self.may_start()
                ):
                    day, iso = pending.popleft()
                    if day in self.failures:
                        continue  # a day is all or nothing: its other countries are moot
                    began.setdefault(day, time.monotonic())
                    fetching[fetchers.submit(self._fetch, day, iso)] = (day, iso)
                if not fetching and not decoding:
                    break
                done, _ = wait([*fetching, *decoding], return_when=FIRST_COMPLETED)
                for future in done:
                    if future in fetching:
                        day, iso = fetching.pop(future)
                        payload = self._settle(day, iso, future, progress)
                        if payload is None or day in self.failures:
                            continue
                        parts = arrived.setdefault(day, {})
                        parts[iso] = payload
                        if len(parts) == len(queries):  # every country is in: decode the day
                            del arrived[day]
                            answers = [(query, parts[query].pages) for query in queries]
                            decoding[decoder.submit(payload.day, answers, self.countries)] = day
                        continue
                    day = decoding.pop(future)
                    decoded = self._settle(day, None, future, progress)
                    if decoded is not None:
                        progress.tick()
                        yield self._arrived(day, *decoded, time.monotonic() - began[day])
        finally:
            self._stop.set()  # also when the consumer left early: nothing more is asked for
            fetchers.shutdown(wait=False, cancel_futures=True)
            decoder.close()
            abandoned = {day for day, _ in pending} | {day for day, _ in fetching.values()}
            abandoned |= {*arrived, *decoding.values()}
            self.unfinished = sorted({*self.unfinished, *abandoned} - set(self.failures))

    @property
    def countries(self) -> str:
        """The country set's label (USA, CAN,USA, ALL): what the files record."""
        return self.client.countries.label

    def _fetch(self, day: str, iso: str | None) -> DayPayload:
        payload = self.client.fetch(dt.date.fromisoformat(day), iso, self._stop)
        if self._stop.is_set():
            raise FetchStopped(day)
        return payload

    def _settle(self, day: str, iso: str | None, future: Future[Any], progress: Progress) -> Any:
        """The future's result, or None when the day failed (recorded) or was stopped."""
        try:
            return future.result()
        except (FetchStopped, CancelledError):
            self.unfinished.append(day)
        except (ApiError, transform.SchemaError) as error:
            if day not in self.failures:  # the first cause of a day is the one reported
                cause = str(error).removeprefix(f"{day}: ")
                many = len(self.client.countries.queries) > 1
                self.failures[day] = f"{iso}: {cause}" if many and iso else cause
                self.transient &= isinstance(error, ApiError) and error.transient
                progress.tick(failed=True)
        return None

    def _arrived(
        self, day: str, table: pa.Table, failing: dict[str, str], seconds: float
    ) -> FetchedDay:
        self.rows[day] = table.num_rows
        if failing:
            self.check_failures[day] = failing
        return FetchedDay(day, table, failing, seconds)


_Decoded = tuple[pa.Table, dict[str, str]]  # a day's table and the checks it fails


WriteDay = Callable[[FetchedDay], WrittenFile]
OnWritten = Callable[[FetchedDay, WrittenFile | None], None]


def write_stream(
    days: Iterable[FetchedDay],
    write: WriteDay,
    *,
    concurrency: int,
    total: int,
    on_written: OnWritten,
) -> dict[str, str]:
    """Write each day as it arrives, `concurrency` at a time; a day without rows is skipped.

    `on_written` is called in this thread for each day as it lands (None: skipped), so the
    caller can record it at once. A new day is taken only when a write slot is free: the
    writes pace the stream. On any exception, an interrupt too, the writes in flight finish
    and are reported through `on_written` before it propagates; nothing is half-written.

    Returns:
        The days that could not be written, with their cause (the others were written).

    Raises:
        StorageAccessError: the store cannot be written at all: no further day is taken, and
            the message says which days (of `total`) were written before it.
    """
    failures: dict[str, str] = {}
    written: list[str] = []
    fatal: StorageAccessError | None = None
    in_flight: dict[Future[WrittenFile], FetchedDay] = {}
    writers = ThreadPoolExecutor(concurrency, thread_name_prefix="write")

    def land(block: bool) -> None:
        nonlocal fatal
        done, _ = wait(in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            fetched = in_flight.pop(future)
            try:
                file = future.result()
            except StorageAccessError as error:
                fatal = fatal or error  # every other day would meet the same wall: stop
                continue
            except Exception as error:  # any other storage error: that day's alone
                failures[fetched.day] = f"{type(error).__name__}: {error}"
                continue
            written.append(fetched.day)
            on_written(fetched, file)

    iterator = iter(days)
    try:
        for fetched in iterator:
            if not fetched.table.num_rows:
                on_written(fetched, None)  # skipped: nothing to write
                continue
            while len(in_flight) >= concurrency:
                land(block=True)
            if fatal is not None:
                break
            in_flight[writers.submit(write, fetched)] = fetched
            land(block=False)
            if fatal is not None:
                break
    finally:
        if hasattr(iterator, "close"):
            iterator.close()  # a DayStream stops fetching here, whatever happened
        while in_flight:  # also on an interrupt: these end whole, and are recorded
            land(block=True)
        writers.shutdown()
    if fatal is not None:
        raise stopped_by(fatal, written, total)
    return failures


def stopped_by(error: StorageAccessError, written: list[str], total: int) -> StorageAccessError:
    """`error`, plus what was written before it: partial work is reported, not hidden."""
    done = f"{len(written)} of {total} days were written before it" + (
        f" ({short_list(written)}; each file whole)" if written else ""
    )
    return StorageAccessError(f"{error}\nStopped: {done}; no further day was started.")


@dataclass
class RangeReport:
    """What a range backfill did, day by day, as the Lambda handler returns it."""

    written: dict[str, WrittenFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)
    check_failures: dict[str, dict[str, str]] = field(default_factory=dict)  # day -> check -> why
    duration_s: float = 0.0

    def to_json(self) -> dict:
        """A JSON-serialisable summary; `remaining` days were not started (deadline)."""
        return {
            "written": sorted(self.written),
            "files": {
                day: {"uri": f.uri, "rows": f.rows, "bytes": f.bytes}
                for day, f in sorted(self.written.items())
            },
            "skipped": sorted(self.skipped),
            "failed": dict(sorted(self.failed.items())),
            "remaining": self.remaining,
            "check_failures": dict(sorted(self.check_failures.items())),
            "counts": {
                "written": len(self.written),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "remaining": len(self.remaining),
                "rows": sum(file.rows for file in self.written.values()),
                "bytes": sum(file.bytes for file in self.written.values()),
            },
            "duration_s": round(self.duration_s, 3),
        }


TimeLeft = Callable[[], float]
_MARGIN_S = 5.0  # kept free at the end for returning the answer
_FIRST_DAY_ESTIMATE_S = 10.0  # until a day has been timed


def backfill_range(
    client: CovidApiClient,
    store: Store,
    prefix: str,
    days: Iterable[dt.date],
    *,
    concurrency: int,
    staging_dir: Path,
    cpu_workers: int | None = None,
    time_left_s: TimeLeft | None = None,
    on_progress: ProgressCallback = log.info,
) -> RangeReport:
    """Fetch, decode and write each day as soon as it arrives, `concurrency` days at a time.

    Each day is written through a file in `staging_dir` and dropped, so neither memory nor the
    staging directory grows with the range. With `time_left_s`, no day is started unless the
    slowest day so far (times 1.5, plus a margin) still fits; the days not started are
    returned as `remaining`, for the next invocation. Failed days are reported with their
    cause and do not stop the others. Each day's table is also checked (core.checks) before it
    is written; failing checks are reported, not fatal.

    Raises:
        StorageAccessError: once the writes in flight end, if the store cannot be written at
            all; no further day is started, and the message says which days were written.
    """
    started = time.monotonic()
    report = RangeReport()
    write_seconds: dict[str, float] = {}
    slowest_s = 0.0

    def fits() -> bool:
        if time_left_s is None:
            return True
        needed = (slowest_s * 1.5 if slowest_s else _FIRST_DAY_ESTIMATE_S) + _MARGIN_S
        return time_left_s() >= needed

    def write(fetched: FetchedDay) -> WrittenFile:
        began = time.monotonic()
        file = write_day_via_file(
            store, prefix, fetched.day, fetched.table, stream.countries, staging_dir
        )
        write_seconds[fetched.day] = time.monotonic() - began
        return file

    def on_written(fetched: FetchedDay, file: WrittenFile | None) -> None:
        nonlocal slowest_s
        slowest_s = max(slowest_s, fetched.seconds + write_seconds.get(fetched.day, 0.0))
        if file is None:
            report.skipped.append(fetched.day)
        else:
            report.written[fetched.day] = file

    stream = DayStream(
        client,
        days,
        concurrency=concurrency,
        cpu_workers=cpu_workers,
        may_start=fits,
        on_progress=on_progress,
    )
    write_failures = write_stream(
        stream, write, concurrency=concurrency, total=stream.total, on_written=on_written
    )
    report.failed = {**stream.failures, **write_failures}
    report.check_failures = stream.check_failures
    report.remaining = stream.unfinished
    report.duration_s = time.monotonic() - started
    if report.remaining:
        on_progress(f"out of time: {len(report.remaining)} days left for the next invocation")
    return report
