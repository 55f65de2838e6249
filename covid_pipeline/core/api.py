"""HTTP client for covid-api.com's `GET /reports` (contract: docs/covid_api_contract.md).

One `requests.Session` per client (connections are reused across days and threads), an
explicit (connect, read) timeout on every request, and one retry loop for everything that
can pass: connection errors, timeouts, 429 and 5xx (honouring Retry-After), and bodies cut
short in transit. Anything else fails the day at once with a message that says what came back.
"""

import datetime as dt
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from covid_pipeline.core.config import ConfigError, api_url_problems, iso_code_problems

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_PAGES = 10_000  # far beyond any real answer; stops a server that pages forever
_SNIPPET = 200  # characters of an unexpected body worth showing; never dump whole bodies


class ApiError(Exception):
    """A day's reports could not be fetched.

    Attributes:
        day: the day asked for.
        transient: whether a later try may succeed (the failure was a timeout, 5xx, ...).
    """

    def __init__(self, day: dt.date, message: str, *, transient: bool) -> None:
        super().__init__(f"{day}: {message}")
        self.day = day
        self.transient = transient


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures of one request."""

    max_retries: int = 5
    backoff_s: float = 0.5  # first delay; doubles each attempt, with +-50% jitter
    max_delay_s: float = 60.0  # also caps a server's Retry-After
    # Transient failures in a row, across all days, after which the API is taken to be down and
    # the remaining days fail at once instead of each spending its whole retry budget.
    circuit_breaker: int = 50


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class CovidApiClient:
    """Fetches one country's reports, a day at a time, from covid-api.com or a stand-in."""

    def __init__(
        self,
        base_url: str,
        iso_code: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        pool_size: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Raises ConfigError for a base URL or country code that is not safe to use."""
        self.base_url = base_url.rstrip("/")
        problems = api_url_problems(self.base_url) + iso_code_problems(iso_code)
        if problems:
            raise ConfigError("; ".join(problems))
        self.iso_code = iso_code
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retry = retry
        self._sleep = sleep  # injectable, so tests can see the delays without waiting them out
        self._origin = urlsplit(self.base_url)[:2]
        self._failures_in_a_row = 0
        self._lock = threading.Lock()
        self._session = requests.Session()
        # One pooled connection per worker thread; urllib3's own retries stay off (ours log).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "covid_pipeline/0.1 (python-requests)"

    def reset_circuit(self) -> None:
        """Forget earlier failures: a warm Lambda container must not inherit a tripped breaker."""
        with self._lock:
            self._failures_in_a_row = 0

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def fetch_day(self, day: dt.date) -> list[dict]:
        """Every report record for `day`, following pagination; [] when the API has none.

        Raises:
            ApiError: after retries for transient failures, at once for the rest.
        """
        attempts = self.retry.max_retries + 1
        for attempt in range(1, attempts + 1):
            self._check_circuit(day)
            try:
                records = self._fetch_pages(day)
            except _Transient as failure:
                with self._lock:
                    self._failures_in_a_row += 1
                if attempt == attempts:
                    raise ApiError(
                        day, f"{failure} (gave up after {attempts} attempts)", transient=True
                    ) from None
                delay = self._delay(attempt, failure.retry_after)
                log.warning(
                    "%s: %s; retrying in %.2fs (attempt %d of %d)",
                    day,
                    failure,
                    delay,
                    attempt + 1,
                    attempts,
                )
                self._sleep(delay)
            else:
                with self._lock:
                    self._failures_in_a_row = 0
                return records
        raise AssertionError("unreachable")

    def _check_circuit(self, day: dt.date) -> None:
        with self._lock:
            failures = self._failures_in_a_row
        if failures >= self.retry.circuit_breaker:
            raise ApiError(
                day,
                f"not tried: the API failed {failures} times in a row; is {self.base_url} up?",
                transient=True,
            )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            if retry_after > self.retry.max_delay_s:
                log.warning(
                    "server asked to wait %.0fs; waiting the %.0fs cap instead",
                    retry_after,
                    self.retry.max_delay_s,
                )
            return min(retry_after, self.retry.max_delay_s)
        # Exponential backoff with jitter, so concurrent workers do not retry in lockstep.
        delay = self.retry.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        return min(delay, self.retry.max_delay_s)

    def _fetch_pages(self, day: dt.date) -> list[dict]:
        records: list[dict] = []
        url: str | None = f"{self.base_url}/reports"
        params: dict[str, str] | None = {"date": day.isoformat(), "iso": self.iso_code}
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= _MAX_PAGES or url in seen:
                raise ApiError(day, f"pagination does not end (page URL {url})", transient=False)
            seen.add(url)
            body = self._get_json(day, url, params)
            records.extend(body["data"])
            url, params = body.get("next_page_url"), None
            if url is not None and urlsplit(url)[:2] != self._origin:
                # Following a link elsewhere would send our requests to a host nobody chose.
                raise ApiError(
                    day, f"next_page_url {url!r} leaves the API's origin", transient=False
                )
        return records

    def _get_json(self, day: dt.date, url: str, params: dict[str, str] | None) -> dict:
        try:
            response = self._session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout as error:
            raise _Transient(f"timed out ({type(error).__name__})") from None
        except requests.exceptions.SSLError as error:
            # Not retried, and never answered by turning verification off: a certificate
            # that fails now will fail in a minute, and may mean someone is in between.
            raise ApiError(
                day,
                f"TLS certificate verification failed for {urlsplit(url).netloc} "
                f"({_tls_reason(error)}). If a proxy with its own CA sits in between, set "
                "REQUESTS_CA_BUNDLE to that CA's bundle (PEM).",
                transient=False,
            ) from None
        except requests.ConnectionError as error:
            raise _Transient(f"connection failed ({type(error).__name__})") from None
        except requests.exceptions.ChunkedEncodingError:
            raise _Transient("connection broke while reading the body") from None
        if response.status_code in _RETRY_STATUSES:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            raise _Transient(f"HTTP {response.status_code}", retry_after)
        if response.status_code != 200:
            raise ApiError(
                day,
                f"HTTP {response.status_code} from {response.url}: {_snippet(response.text)}",
                transient=False,
            )
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            # A 200 with a body that does not parse is most often a body cut short in transit.
            raise _Transient(f"malformed JSON body: {_snippet(response.text)}") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ApiError(
                day,
                f'expected a JSON object with a "data" list, got: {_snippet(response.text)}',
                transient=False,
            )
        return body


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
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


def _tls_reason(error: Exception) -> str:
    # OpenSSL's reason, e.g. "certificate verify failed: self-signed certificate", without
    # the layers of urllib3 and requests wrapped around it.
    text = str(error)
    for reason in ("certificate verify failed", "hostname mismatch", "wrong version number"):
        start = text.find(reason)
        if start != -1:
            end = text.find(")", start)
            return text[start : end if end != -1 else len(text)]
    return type(error).__name__


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else f"{text[:_SNIPPET]}... ({len(text)} characters)"
