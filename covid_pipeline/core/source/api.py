"""HTTP client for covid-api.com's `GET /reports` (contract: docs/covid_api_contract.md).

One `requests.Session` per client (connections are reused across days and threads), an
explicit (connect, read) timeout on every request, pagination that never leaves the API's
origin, and one retry loop for everything that can pass: connection errors, timeouts, 429 and
5xx (honouring Retry-After), and bodies cut short in transit (delays and the circuit breaker:
core.source.retry). Anything else fails the day at once with a message that says what came back.

This is the only retry budget of a run: the Dagster asset has no step retry policy on top, so
the two never multiply. An API that refuses every connection from the start is reported within
seconds, and a run that is told to stop makes no further request.

A day comes back as raw JSON (`DayPayload`): checking the envelope costs a fraction of parsing
the records, which `core.schema.decode` does where the CPU is (see core.engine.workers).
"""

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.source.countries import Countries, is_region_code
from covid_pipeline.core.source.retry import CircuitBreaker, RetryPolicy, retry_after_seconds

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


class FetchStopped(Exception):
    """The run was told to stop: no request was made for this day, or no further one."""


@dataclass(frozen=True)
class DayPayload:
    """One day's answer as it came: the raw JSON of each page's `data` array, in page order."""

    day: dt.date
    pages: tuple[bytes, ...]


class _Envelope(msgspec.Struct):
    # msgspec checks the whole body is JSON while it skips over `data`, which stays raw.
    data: msgspec.Raw
    next_page_url: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class CovidApiClient:
    """Fetches a set of countries' reports, a day at a time, from covid-api.com or a stand-in.

    A day of a set takes one request per country (`fetch`, with its ISO code), or for ALL one
    unfiltered request (`fetch` with None): `Countries.queries` says which.
    """

    def __init__(
        self,
        base_url: str,
        iso_code: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        retry: RetryPolicy,
        pool_size: int,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`iso_code` is ISO_CODE's value (one code, a list, or ALL).

        core.config.api_client builds one from the settings, whose table holds every default.
        Raises ConfigError for a base URL or country set that is not safe to use.
        """
        self.base_url = base_url.rstrip("/")
        problems = api_url_problems(self.base_url)
        try:
            self.countries = Countries.parse(iso_code)
        except ValueError as error:
            problems.append(str(error))
        if problems:
            raise ConfigError("; ".join(problems))
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retry = retry
        # Injectable, so tests can see the delays without waiting them out.
        self._sleep = sleep
        self._origin = urlsplit(self.base_url)[:2]
        self.circuit = CircuitBreaker(retry, clock)
        self._session = requests.Session()
        # One pooled connection per worker thread; urllib3's own retries stay off (ours log).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "covid_pipeline/0.1 (python-requests)"
        # requests reads the proxies and the CA bundle (REQUESTS_CA_BUNDLE) from the
        # environment again for every request, about 0.4 ms each: read them once, here.
        from_environment = self._session.merge_environment_settings(
            self.base_url, {}, None, None, None
        )
        self._session.proxies.update(from_environment["proxies"])
        self._session.verify = from_environment["verify"]
        self._session.trust_env = False

    def reset_circuit(self) -> None:
        """Forget earlier failures: a warm Lambda container must not inherit a tripped breaker."""
        self.circuit.reset()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def fetch(
        self, day: dt.date, iso: str | None, stop: threading.Event | None = None
    ) -> DayPayload:
        """Every report record of `iso` (None: every country) for `day`, as raw JSON pages.

        Args:
            day: the day to fetch.
            iso: one region's code, or None for the API's unfiltered query (the whole world).
            stop: once set, no further request is made (backoff waits end at once).

        Raises:
            ApiError: after retries for transient failures, at once for the rest.
            FetchStopped: `stop` was set before the day was fetched.
        """
        if iso is not None and not is_region_code(iso):  # it goes into the query string
            raise ApiError(day, f"{iso!r} is not a region code", transient=False)
        attempts = self.retry.max_retries + 1
        for attempt in range(1, attempts + 1):
            if stop is not None and stop.is_set():
                raise FetchStopped(day)
            why_open = self.circuit.why_open(self.base_url)
            if why_open is not None:
                raise ApiError(day, why_open, transient=True)
            try:
                pages = self._fetch_pages(day, iso)
            except _Transient as failure:
                self.circuit.failed()
                if attempt == attempts:
                    raise ApiError(
                        day, f"{failure} (gave up after {attempts} attempts)", transient=True
                    ) from None
                delay = self.retry.delay(attempt, failure.retry_after)
                # An API that has never answered is given up on when its window closes, not a
                # whole backoff later (with jitter, one more delay could add up to 6 s).
                delay = min(delay, self.circuit.until_unreachable())
                log.warning(
                    "%s: %s; retrying in %.2fs (attempt %d of %d)",
                    day,
                    failure,
                    delay,
                    attempt + 1,
                    attempts,
                )
                self._pause(delay, stop)
            else:
                self.circuit.succeeded()
                return DayPayload(day, pages)
        raise AssertionError("unreachable")

    def _pause(self, seconds: float, stop: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif stop is not None:
            stop.wait(seconds)  # a stop ends the wait: the loop then makes no further request
        else:
            time.sleep(seconds)

    def _fetch_pages(self, day: dt.date, iso: str | None) -> tuple[bytes, ...]:
        pages: list[bytes] = []
        url: str | None = f"{self.base_url}/reports"
        query = {"date": day.isoformat()} | ({"iso": iso} if iso is not None else {})
        params: dict[str, str] | None = query
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= _MAX_PAGES or url in seen:
                raise ApiError(day, f"pagination does not end (page URL {url})", transient=False)
            seen.add(url)
            envelope = self._get_page(day, url, params)
            pages.append(bytes(envelope.data))
            url, params = envelope.next_page_url, None
            if url is not None and urlsplit(url)[:2] != self._origin:
                # Following a link elsewhere would send our requests to a host nobody chose.
                raise ApiError(
                    day, f"next_page_url {url!r} leaves the API's origin", transient=False
                )
        return tuple(pages)

    def _get_page(self, day: dt.date, url: str, params: dict[str, str] | None) -> _Envelope:
        try:
            # Streamed, then read in one call: requests' own `content` reads a 600 KB body in
            # 10 KB chunks, a loop that cost about 1 ms of the GIL per day (docs/performance.md).
            with self._session.get(url, params=params, timeout=self.timeout, stream=True) as answer:
                body = answer.raw.read(decode_content=True)
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError) as error:
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
            raise self._connection_failed(error) from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError):
            raise _Transient("connection broke while reading the body") from None
        self.circuit.answered()
        if answer.status_code in _RETRY_STATUSES:
            retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
            raise _Transient(f"HTTP {answer.status_code}", retry_after)
        if answer.status_code != 200:
            raise ApiError(
                day,
                f"HTTP {answer.status_code} from {answer.url}: {_snippet(body)}",
                transient=False,
            )
        try:
            envelope = _ENVELOPE.decode(body)
        except msgspec.ValidationError:
            envelope = None  # valid JSON of the wrong shape: reported below
        except msgspec.DecodeError:
            # A 200 with a body that does not parse is most often a body cut short in transit.
            raise _Transient(f"malformed JSON body: {_snippet(body)}") from None
        if envelope is None or not bytes(envelope.data).lstrip().startswith(b"["):
            raise ApiError(
                day,
                f'expected a JSON object with a "data" list, got: {_snippet(body)}',
                transient=False,
            )
        return envelope

    def _connection_failed(self, error: requests.ConnectionError) -> "_Transient":
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, urllib3.exceptions.NameResolutionError):
            cause = "name not resolved"
        elif isinstance(reason, urllib3.exceptions.NewConnectionError):
            cause = "connection refused" if "refused" in str(reason) else "could not connect"
        else:
            return _Transient(f"connection failed ({type(error).__name__})")
        self.circuit.refused()
        return _Transient(f"{cause} ({urlsplit(self.base_url).netloc})")


def api_url_problems(url: str) -> list[str]:
    """Why `url` cannot be the API's base URL: only http(s) with a host, nothing to hide."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"API_URL {url!r} must be an http:// or https:// URL"]
    if parts.username or parts.password:
        return ["API_URL must not carry a user or password (it would show in logs and the UI)"]
    if parts.query or parts.fragment:
        return [f"API_URL {url!r} must be a base URL, without ?query or #fragment"]
    return []


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


def _snippet(body: bytes) -> str:
    text = " ".join(body.decode(errors="replace").split())
    return text if len(text) <= _SNIPPET else f"{text[:_SNIPPET]}... ({len(text)} characters)"
