"""Writing a stream of days into a store, a few at a time, each recorded as it lands.

A day without rows is skipped (no file). A day whose write fails is that day's failure alone,
unless the store cannot be written at all (StorageAccessError): then no further day is taken,
the writes in flight finish whole, and the error says which days were written before it.
"""

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from covid_pipeline.core.engine.report import short_list
from covid_pipeline.core.engine.stream import FetchedDay
from covid_pipeline.core.lake.day_files import WrittenFile
from covid_pipeline.core.lake.stores import StorageAccessError

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
            if not fetched.rows:
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
