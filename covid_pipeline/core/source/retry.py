"""How long to wait between tries of a request, and when to stop trying: the circuit breaker.

One policy for every request of a run (the API client's; the Dagster asset has no step retry on
top, so the two never multiply). The breaker is shared by a client's threads: after many
transient failures in a row, or an API that has never answered and refuses every connection,
the remaining days fail at once instead of each spending its whole retry budget.
"""

import datetime as dt
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures of one request.

    The first two come from the settings (HTTP_MAX_RETRIES, HTTP_BACKOFF: core.config.api_client).
    """

    max_retries: int
    backoff_s: float  # first delay; doubles each attempt, with +-50% jitter
    max_delay_s: float = 60.0  # also caps a server's Retry-After
    # Transient failures in a row, across all days, after which the API is taken to be down and
    # the remaining days fail at once instead of each spending its whole retry budget.
    circuit_breaker: int = 50
    # An API that has never answered and refuses connections (or whose name does not resolve)
    # for this long is taken to be down at once: nothing listens there, and waiting out every
    # day's backoff would only delay the message. A restart shorter than this rides through.
    unreachable_after_s: float = 3.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt`, given the server's Retry-After.

        The server's word can lengthen the wait, never shorten it below our own backoff: a
        rate limiter answers `Retry-After: 0` near the end of its window (Laravel's throttle
        does), and taken literally every request of a range would retry at once and spend its
        whole budget in a second. A long Retry-After is honoured up to the cap.
        """
        # Exponential backoff with jitter, so concurrent workers do not retry in lockstep.
        backoff = self.backoff_s * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.5)
        wait = max(backoff, retry_after or 0.0)
        if retry_after is not None and retry_after > self.max_delay_s:
            log.warning(
                "server asked to wait %.0fs; waiting the %.0fs cap instead",
                retry_after,
                self.max_delay_s,
            )
        return min(wait, self.max_delay_s)


class CircuitBreaker:
    """Counts a client's transient failures in a row, and whether the API ever answered."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self._clock = policy, clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget earlier failures: a warm Lambda container must not inherit a tripped breaker."""
        with self._lock:
            self.failures_in_a_row = 0
            self._answered = False  # has the API ever answered (any status)?
            self._refused_since: float | None = None  # first refusal, while never answered

    def why_open(self, base_url: str) -> str | None:
        """Why no further request should be made, or None while requests may go on."""
        with self._lock:
            failures, refused_since = self.failures_in_a_row, self._refused_since
        waited = self.policy.unreachable_after_s
        if refused_since is not None and self._clock() - refused_since >= waited:
            return (
                f"could not connect to {base_url}: it refused every connection for "
                f"{waited:g}s and never answered. Is the API up, and is API_URL right?"
            )
        if failures >= self.policy.circuit_breaker:
            return f"not tried: the API failed {failures} times in a row; is {base_url} up?"
        return None

    def until_unreachable(self) -> float:
        """Seconds until an API that has refused every connection is taken to be down.

        Infinite once it has answered, or while it has not refused yet.
        """
        with self._lock:
            refused_since = self._refused_since
        if refused_since is None:
            return float("inf")
        return max(0.0, refused_since + self.policy.unreachable_after_s - self._clock())

    def failed(self) -> None:
        """A request failed in a way that may pass."""
        with self._lock:
            self.failures_in_a_row += 1

    def succeeded(self) -> None:
        """A day's request got its answer."""
        with self._lock:
            self.failures_in_a_row = 0

    def answered(self) -> None:
        """The API answered (any status): it is there."""
        with self._lock:
            self._answered, self._refused_since = True, None

    def refused(self) -> None:
        """Nothing listens there yet: start (or keep) the unreachable clock."""
        with self._lock:
            if not self._answered and self._refused_since is None:
                self._refused_since = self._clock()


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 section 10.2.3).

    A negative delay or a date already past reads as 0 (RetryPolicy.delay then backs off as
    usual); a value that is neither reads as None.
    """
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - dt.datetime.now(dt.timezone.utc)).total_seconds(), 0.0)
