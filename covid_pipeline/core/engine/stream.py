"""A range's days fetched and decoded concurrently, handed out as they arrive: the scheduler.

`DayStream` fetches days over one HTTP session (a bounded pool, polite to a public API),
decodes each (core.engine.workers: in worker processes when that pays) and hands it out as soon
as it arrives. Nothing accumulates: only the days in flight exist in memory, however long the range.
A day that fails is not handed out; the stream keeps its cause. A stop (or leaving the
iteration early) makes no new request: queued days are dropped, days in flight abandoned.
"""

import datetime as dt
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from covid_pipeline.core.engine import workers
from covid_pipeline.core.engine.report import Progress, ProgressCallback
from covid_pipeline.core.lake.day_files import DayFile
from covid_pipeline.core.lake.parquet import DIRECT_WRITER
from covid_pipeline.core.schema import transform
from covid_pipeline.core.source.api import ApiError, CovidApiClient, DayPayload, FetchStopped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedDay:
    """One day as it arrived: its file (no rows: the API had no data), checks and timing."""

    day: str
    file: DayFile
    check_failures: Mapping[str, str] = field(default_factory=dict)  # check -> why
    seconds: float = 0.0  # fetching, decoding and encoding it took

    @property
    def rows(self) -> int:
        """The day's rows (0: nothing to write)."""
        return self.file.rows


class DayStream:
    """A range's days, fetched and decoded concurrently, handed out in the order they arrive.

    At most `concurrency` requests are in flight, and at most twice as many days between their
    request and the consumer, so a new day starts only as the consumer takes one: memory stays
    flat however long the range. Days that fail are not handed out; they are
    collected in `failures` with their cause, and every day neither handed out nor failed ends
    in `unfinished`: together they account for the whole range once the iteration ends.
    `stop()` (or leaving the iteration early) makes no new request: queued days are dropped
    and days in flight are abandoned whole.

    Args:
        client: the API client (one pooled HTTP session).
        days: the days to fetch.
        concurrency: days fetched at once.
        cpu_workers: processes that decode (0: one thread beside the fetches; None: automatic, see
            core.engine.workers).
        writer: who is writing, stamped in each day's file (core.lake.parquet).
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
        writer: str = DIRECT_WRITER,
        may_start: Callable[[], bool] | None = None,
        on_progress: ProgressCallback = log.info,
    ) -> None:
        self.client = client
        self.days = [day.isoformat() for day in days]
        self.concurrency = concurrency
        self.cpu_workers = workers.workers_for(cpu_workers, len(self.days))
        self.writer = writer
        self.may_start = may_start or (lambda: True)
        self.on_progress = on_progress
        self.failures: dict[str, str] = {}  # day -> cause
        self.unfinished: list[str] = []  # not started (deadline) or abandoned (stop)
        self._stop = threading.Event()

    @property
    def total(self) -> int:
        """Days in the range."""
        return len(self.days)

    def stop(self) -> None:
        """Make no new request: queued days are dropped, days in flight abandoned."""
        self._stop.set()

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
        # Each future puts itself here as it finishes: taking the next one costs the same
        # however many are in flight (wait(FIRST_COMPLETED) visits every one, each time: a
        # second of the main process's CPU over the history).
        finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
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
                    fetch = fetchers.submit(self._fetch, day, iso)
                    fetch.add_done_callback(finished.put)
                    fetching[fetch] = (day, iso)
                if not fetching and not decoding:
                    break
                future = finished.get()
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
                        decode = decoder.submit(payload.day, answers, self.countries, self.writer)
                        decode.add_done_callback(finished.put)
                        decoding[decode] = day
                    continue
                day = decoding.pop(future)
                decoded = self._settle(day, None, future, progress)
                if decoded is not None:
                    progress.tick()
                    file, failing = decoded
                    yield FetchedDay(day, file, failing, time.monotonic() - began[day])
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
                progress.tick(failed=True)
        return None


_Decoded = tuple[DayFile, dict[str, str]]  # a day's file and the checks its table fails
