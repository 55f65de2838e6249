"""Where a day's CPU work (decoding, checking, encoding) runs: worker processes, or a thread.

Once days are heavy (a US day: ~3,200 counties) a backfill is bound by CPU, not by the API's
latency, and threads share one core through the GIL. So on a machine with more than one CPU,
a long range decodes in worker processes while the main process fetches, writes and records.
A worker hands back the day's file, encoded: a fifth of the table's size, and bytes cross back
without being pickled field by field (the main process is the one every day goes through). A
short range does not repay starting them, and AWS Lambda cannot run them (no /dev/shm for
their semaphores): there, days are decoded in one thread beside the fetches.
"""

import ctypes
import datetime as dt
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from covid_pipeline.core.lake.day_files import DayFile, encode_day
from covid_pipeline.core.schema import decode

# Days a range needs before worker processes pay for their start (~0.4 s of CPU each, to
# import pyarrow): decoding in threads costs ~2.5 ms of contended CPU per heavy day.
MIN_DAYS_FOR_PROCESSES = 120
MAX_AUTO_WORKERS = 4  # decoding keeps up with the API at two or three; more only costs memory


def workers_for(setting: int | None, days: int) -> int:
    """Worker processes for a range of `days`: `setting` if given (0: none), else automatic.

    Automatic: one per CPU, up to MAX_AUTO_WORKERS. Since the workers encode each day's file
    too, the main process only fetches, writes and records, about a third of a day's CPU: on 2
    CPUs the history (local lake) took 8.4 s with two workers and 11.4 s with one
    (docs/performance.md).
    """
    if setting is not None:
        return setting
    cpus = os.cpu_count() or 1
    if cpus < 2 or days < MIN_DAYS_FOR_PROCESSES or not _processes_can_run():
        return 0
    return min(cpus, MAX_AUTO_WORKERS)


def _processes_can_run() -> bool:
    try:
        _worker_context().Lock()  # needs sem_open, which Lambda lacks
    except (OSError, ImportError):
        return False
    return True


class DecodePool:
    """Decodes days in `workers` processes, or in one thread of this process when it is 0.

    Either way decoding runs beside the fetches, never in a fetching thread: a slot for a
    request is free again as soon as the day's bytes are in.
    """

    def __init__(self, workers: int) -> None:
        self._pool: Executor
        if workers:
            self._pool = ProcessPoolExecutor(
                workers, mp_context=_worker_context(), initializer=_start_worker
            )
        else:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="decode")

    def submit(
        self, day: dt.date, answers: Sequence[decode.Answer], countries: str, writer: str
    ) -> "Future[tuple[DayFile, dict[str, str]]]":
        """The day's file and the single-day checks it fails (see core.schema.decode), to come."""
        return self._pool.submit(decode_to_file, day, answers, countries, writer)

    def close(self) -> None:
        """Stop the workers; work not yet started is dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _worker_context() -> multiprocessing.context.BaseContext:
    """How workers start: forked from a clean server process that has what they import.

    Not fork: the parent runs threads (Dagster's among them), and a forked child can inherit a
    lock one of them held. Not spawn: each spawned worker imports the parent's main script
    again (as `__mp_main__`) before it can work, and under `dagster asset materialize` that
    script imports Dagster's CLI: 1.4 s and 0.9 s of CPU per worker, measured, and 0.7-0.9 s
    of the history's wall. The forkserver imports the main script ("__main__" in its preload,
    which CPython's forkserver handles since 3.4), this module and pandas once, and forks each
    worker from there. (pyarrow imports pandas on its first conversion of a Python list, to
    tell pandas objects apart: 0.17 s of CPU each worker would otherwise pay.) The server
    lives as long as this process, idle between ranges.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__, "pandas"])
    return context


def decode_to_file(
    day: dt.date, answers: Sequence[decode.Answer], countries: str, writer: str
) -> tuple[DayFile, dict[str, str]]:
    """A day's file, stamped by `writer`, and the single-day checks its table fails."""
    table, failing = decode.decode_and_check(day, answers, countries)
    return encode_day(table, countries, writer), failing


def _start_worker() -> None:
    # Ctrl-C reaches the whole process group; the parent decides what a stop means and ends
    # its workers itself, so they must not die mid-task with a traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _reuse_day_sized_buffers()


# glibc's mallopt parameters (malloc.h), and what they are set to in a worker.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 16 << 20  # far above a day's page: 627 KB for the US, 820 KB for the world
_TRIM_THRESHOLD = 64 << 20  # free heap kept for the next days before it goes back


def _reuse_day_sized_buffers() -> None:
    """Let glibc reuse a day's buffers from the heap, instead of mapping each one afresh.

    A worker receives each day's pages and frees them once decoded. glibc serves blocks that
    large with a fresh mmap (or trims the heap under them once freed), so every day faulted
    its pages in again: ~200 page faults a day and 0.3 s of system time per worker over the
    history (docs/performance.md). With fixed thresholds above a day's size, they are reused.
    On a C library without mallopt (musl's does nothing), allocation stays as it was.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter runs on
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
