"""Where a day's CPU work (decoding and checking its JSON) runs: worker processes, or threads.

Once days are heavy (a US day: ~3,200 counties) a backfill is bound by CPU,
not by the API's latency, and threads share one core through the GIL. So on a machine with
more than one CPU, a long range decodes in worker processes while the main process fetches,
writes and records. A short range does not repay starting them, and AWS Lambda cannot run
them (no /dev/shm for their semaphores): there, days are decoded in one thread beside the
fetches.
"""

import datetime as dt
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import pyarrow as pa

from covid_pipeline.core.schema import decode

# Days a range needs before worker processes pay for their start (~0.4 s of CPU each, to
# import pyarrow): decoding in threads costs ~2.5 ms of contended CPU per heavy day.
MIN_DAYS_FOR_PROCESSES = 120
MAX_AUTO_WORKERS = 4  # decoding keeps up with the API at two or three; more only costs memory


def workers_for(setting: int | None, days: int) -> int:
    """Worker processes for a range of `days`: `setting` if given (0: none), else automatic.

    Automatic: one per CPU but one, up to MAX_AUTO_WORKERS. The main process keeps a core busy
    by itself (fetching, writing, recording); on 2 CPUs a second worker only competed with it
    for the cores (the history through the CLI: 18.8 s with two workers, 17.8 s with one).
    """
    if setting is not None:
        return setting
    cpus = os.cpu_count() or 1
    if cpus < 2 or days < MIN_DAYS_FOR_PROCESSES or not _processes_can_run():
        return 0
    return min(cpus - 1, MAX_AUTO_WORKERS)


def _processes_can_run() -> bool:
    try:
        multiprocessing.get_context("spawn").Lock()  # needs sem_open, which Lambda lacks
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
            # spawn, not fork: the parent runs threads (Dagster's among them), and a forked
            # child can inherit a lock that one of them held.
            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_interrupts,
            )
        else:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="decode")

    def submit(
        self, day: dt.date, answers: Sequence[decode.Answer], countries: str
    ) -> "Future[tuple[pa.Table, dict[str, str]]]":
        """The day's table and the single-day checks it fails (see core.schema.decode), to come."""
        return self._pool.submit(decode.decode_and_check, day, answers, countries)

    def close(self) -> None:
        """Stop the workers; work not yet started is dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent decides what a stop means and ends
    # its workers itself, so they must not die mid-task with a traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
