"""How a range tells people what it did: progress lines while it runs, one failure report after.

Every entry point (the IO manager, the Lambda handler, the fan-out) words these the same way.
"""

import time
from collections.abc import Callable, Mapping

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
