"""Fetch, transform and write a range of days: the compute every entry point shares.

Days are fetched concurrently with a bounded pool (polite to a public API) over one HTTP
session, and written concurrently. A day that fails does not stop the others; the caller
gets every failure with its cause, and decides what a failure means for the run. The one
exception is a store that cannot be written at all (StorageAccessError): then no further
day is started, and the error says how many were written before it.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from covid_pipeline.core import checks, transform
from covid_pipeline.core.api import ApiError, CovidApiClient
from covid_pipeline.core.storage import (
    StorageAccessError,
    Store,
    WrittenFile,
    write_day,
    write_day_via_file,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]


def failure_report(failures: Mapping[str, str], total: int, what: str) -> str:
    """`N of M days <what>:` then a line per failed day with its cause, in day order."""
    lines = [f"{len(failures)} of {total} days {what}:"]
    lines += [f"  {day}: {cause}" for day, cause in sorted(failures.items())]
    return "\n".join(lines)


@dataclass
class FetchOutcome:
    """Tables for the days that were fetched, and the cause for each day that was not."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    transient: bool = True  # every failure may pass on a later try

    def failure_report(self) -> str:
        """One message that lists every failed day and its cause, for people."""
        return failure_report(self.failures, len(self.tables) + len(self.failures), "failed")


class WriteError(Exception):
    """Some days could not be written; the others were (each file is whole or absent)."""

    def __init__(self, written: Mapping[str, WrittenFile | None], failures: Mapping[str, str]):
        total = len(written) + len(failures)
        super().__init__(failure_report(failures, total, "could not be written"))
        self.written = dict(written)
        self.failures = dict(failures)


class Progress:
    """Counts finished days and reports done/total, rate and ETA, at most every `every_s`."""

    def __init__(
        self, what: str, total: int, report: ProgressCallback, every_s: float = 5.0
    ) -> None:
        self.what, self.total, self.report, self.every_s = what, total, report, every_s
        self.done = 0
        self.started = self._last = time.monotonic()

    def tick(self) -> None:
        """Count one finished day, and report if it is time to."""
        self.done += 1
        now = time.monotonic()
        if self.done == self.total or now - self._last >= self.every_s:
            self._last = now
            self.report(self.summary())

    def summary(self) -> str:
        """e.g. `fetched 120/1143 days (10%), 45.2 days/s, ETA 23s`."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        return (
            f"{self.what} {self.done}/{self.total} days ({self.done / self.total:.0%}), "
            f"{rate:.1f} days/s, {'done' if self.done == self.total else f'ETA {eta:.0f}s'}"
        )


def fetch_day(client: CovidApiClient, day: dt.date) -> pa.Table:
    """One day's reports as a table with the pipeline's schema (zero rows: no data)."""
    return transform.to_table(day, client.fetch_day(day))


def fetch_days(
    client: CovidApiClient,
    days: Iterable[dt.date],
    *,
    concurrency: int,
    on_progress: ProgressCallback = log.info,
) -> FetchOutcome:
    """Fetch and transform `days` concurrently; collect tables and failures, never raise."""
    days = list(days)
    outcome = FetchOutcome()
    progress = Progress("fetched", len(days), on_progress)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
        futures = {pool.submit(fetch_day, client, day): day for day in days}
        for future in as_completed(futures):
            day = futures[future].isoformat()
            try:
                outcome.tables[day] = future.result()
            except ApiError as error:
                outcome.failures[day] = str(error).removeprefix(f"{day}: ")
                outcome.transient &= error.transient
            except transform.SchemaError as error:
                outcome.failures[day] = str(error).removeprefix(f"{day}: ")
                outcome.transient = False
            progress.tick()
    outcome.tables = dict(sorted(outcome.tables.items()))  # in day order, however they arrived
    return outcome


def write_days(
    store: Store,
    prefix: str,
    tables: Mapping[str, pa.Table],
    *,
    concurrency: int,
    on_progress: ProgressCallback = log.info,
) -> dict[str, WrittenFile | None]:
    """Write each day's table to its partition; days with no rows are skipped (None).

    Raises WriteError, after every other day was attempted, if any day could not be written.

    A skipped day's existing file, if any, is left as it was: an API that has no data today
    is no reason to delete what it served before.
    """
    results: dict[str, WrittenFile | None] = {
        day: None for day, table in tables.items() if table.num_rows == 0
    }
    to_write = {day: table for day, table in tables.items() if table.num_rows}
    failures: dict[str, str] = {}
    fatal: StorageAccessError | None = None
    progress = Progress("wrote", len(to_write), on_progress)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="write") as pool:
        futures = {
            pool.submit(write_day, store, prefix, day, table): day
            for day, table in to_write.items()
        }
        for future in as_completed(futures):
            day = futures[future]
            if future.cancelled():
                continue
            try:
                results[day] = future.result()
            except StorageAccessError as error:
                # Every other day would meet the same wall: stop, do not storm the store.
                fatal = fatal or error
                for pending in futures:
                    pending.cancel()
            except Exception as error:  # any storage error: all are reported together, below
                failures[day] = f"{type(error).__name__}: {error}"
            progress.tick()
    results = dict(sorted(results.items()))  # in day order, however the writes finished
    if fatal is not None:
        raise stopped_by(fatal, [d for d, file in results.items() if file], len(to_write))
    if failures:
        raise WriteError(results, failures)
    return results


def stopped_by(error: StorageAccessError, written: list[str], total: int) -> StorageAccessError:
    """`error`, plus what was written before it: partial work is reported, not hidden."""
    done = f"{len(written)} of {total} days were written before it" + (
        f" ({short_list(written)}; each file whole)" if written else ""
    )
    return StorageAccessError(f"{error}\nStopped: {done}; no further day was started.")


def short_list(days: list[str], shown: int = 10) -> str:
    """`a, b, c and 5 more`: days for a log line or a message, in order."""
    days = sorted(days)
    more = f" and {len(days) - shown} more" if len(days) > shown else ""
    return ", ".join(days[:shown]) + more


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
    time_left_s: TimeLeft | None = None,
    on_progress: ProgressCallback = log.info,
) -> RangeReport:
    """Fetch, transform and write each day as soon as it arrives, `concurrency` days at a time.

    Unlike `fetch_days` + `write_days`, nothing accumulates: each day is written through a
    file in `staging_dir` and dropped, so memory stays flat however long the range. With
    `time_left_s`, no day is started unless the slowest day so far (times 1.5, plus a margin)
    still fits; the days not started are returned as `remaining`, for the next invocation.
    Failed days are reported with their cause and do not stop the others. Each day's table is
    also checked (core.checks) before it is written; failing checks are reported, not fatal.

    Raises:
        StorageAccessError: once the days in flight end, if the store cannot be written at
            all; no further day is started, and the message says which days were written.
    """
    started = time.monotonic()
    pending = [day.isoformat() for day in days]
    pending.reverse()  # pop() from the end takes days in order
    total = len(pending)
    report = RangeReport()
    progress = Progress("backfilled", total, on_progress)
    slowest_s = 0.0

    def process(day: str) -> tuple[WrittenFile | None, dict[str, str], float]:
        began = time.monotonic()
        table = fetch_day(client, dt.date.fromisoformat(day))
        failures = checks.failures_of_day(day, table, client.iso_code) if table.num_rows else {}
        written = (
            write_day_via_file(store, prefix, day, table, staging_dir) if table.num_rows else None
        )
        return written, failures, time.monotonic() - began

    def fits() -> bool:
        if time_left_s is None:
            return True
        needed = (slowest_s * 1.5 if slowest_s else _FIRST_DAY_ESTIMATE_S) + _MARGIN_S
        return time_left_s() >= needed

    fatal: StorageAccessError | None = None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="day") as pool:
        in_flight: dict[Future, str] = {}
        while pending or in_flight:
            while pending and len(in_flight) < concurrency and fits() and fatal is None:
                day = pending.pop()
                in_flight[pool.submit(process, day)] = day
            if not in_flight:
                break  # out of time: nothing running, nothing more will start
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                day = in_flight.pop(future)
                try:
                    written, failures, took = future.result()
                except StorageAccessError as error:
                    fatal = fatal or error  # every other day would fail the same way: stop
                    pending.append(day)
                except (ApiError, transform.SchemaError) as error:
                    report.failed[day] = str(error).removeprefix(f"{day}: ")
                except Exception as error:  # storage errors: reported per day, like the rest
                    report.failed[day] = f"{type(error).__name__}: {error}"
                else:
                    slowest_s = max(slowest_s, took)
                    if failures:
                        report.check_failures[day] = failures
                    if written is None:
                        report.skipped.append(day)
                    else:
                        report.written[day] = written
                progress.tick()
    report.remaining = sorted(pending)
    report.duration_s = time.monotonic() - started
    if fatal is not None:
        raise stopped_by(fatal, sorted(report.written), total)
    if report.remaining:
        on_progress(f"out of time: {len(report.remaining)} days left for the next invocation")
    return report
