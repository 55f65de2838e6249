"""HTTP client for covid-api.com's `GET /reports` (contract: docs/covid_api_contract.md).

One pool of connections per client (reused across days and threads), an explicit (connect,
read) timeout on every request, pagination and redirects that never leave the API's origin,
and one retry loop for everything that can pass: connection errors, timeouts, 429 and 5xx
(honouring Retry-After), and bodies cut short in transit (delays and the circuit breaker:
core.source.retry). Anything else fails the day at once with a message that says what came back.

This is the only retry budget of a run: the Dagster asset has no step retry policy on top, so
the two never multiply. An API that refuses every connection from the start is reported within
seconds, and a run that is told to stop makes no further request.

A day comes back as raw JSON (`DayPayload`): checking the envelope costs a fraction of parsing
the records, which `core.schema.decode` does where the CPU is (see core.engine.workers).

Requests go through urllib3, the library under requests: requests' own layers (preparing,
merging settings, cookies, hooks) cost as much CPU again as the request, in the one process
that every day of a range passes through (docs/performance.md, "The core's CPU, second pass").
requests still says what the environment asks for (proxies, REQUESTS_CA_BUNDLE), once.
"""

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import msgspec
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as http_errors

from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.source.countries import Countries, is_region_code
from covid_pipeline.core.source.retry import CircuitBreaker, RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
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
        self._http = _connection_pool(self.base_url, pool_size, self.timeout)

    def reset_circuit(self) -> None:
        """Forget earlier failures: a warm Lambda container must not inherit a tripped breaker."""
        self.circuit.reset()

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

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
        query = {"date": day.isoformat()} | ({"iso": iso} if iso is not None else {})
        url: str | None = f"{self.base_url}/reports?{urlencode(query)}"
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= _MAX_PAGES or url in seen:
                raise ApiError(day, f"pagination does not end (page URL {url})", transient=False)
            seen.add(url)
            page, url = self._get_page(day, url)
            pages.append(page)
            if url is not None and urlsplit(url)[:2] != self._origin:
                # Following a link elsewhere would send our requests to a host nobody chose.
                raise ApiError(
                    day, f"next_page_url {url!r} leaves the API's origin", transient=False
                )
        return tuple(pages)

    def _get_page(self, day: dt.date, url: str) -> tuple[bytes, str | None]:
        """One page's `data` array (raw JSON), and the next page's URL (None: the last)."""
        try:
            answer = self._http.request("GET", url, redirect=False)
        except http_errors.NewConnectionError as error:  # urllib3 counts it as a timeout too
            raise self._connection_failed(error) from None
        except http_errors.TimeoutError as error:
            raise _Transient(f"timed out ({type(error).__name__})") from None
        except http_errors.SSLError as error:
            # Not retried, and never answered by turning verification off: a certificate
            # that fails now will fail in a minute, and may mean someone is in between.
            raise ApiError(
                day,
                f"TLS certificate verification failed for {urlsplit(url).netloc} "
                f"({_tls_reason(error)}). If a proxy with its own CA sits in between, set "
                "REQUESTS_CA_BUNDLE to that CA's bundle (PEM).",
                transient=False,
            ) from None
        except (http_errors.ProtocolError, http_errors.DecodeError):
            raise _Transient("connection broke while reading the body") from None
        except http_errors.HTTPError as error:  # any other way of getting no answer (a proxy's)
            raise self._connection_failed(error) from None
        self.circuit.answered()
        body = answer.data
        if answer.status in _RETRY_STATUSES:
            retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
            raise _Transient(f"HTTP {answer.status}", retry_after)
        if answer.status in _REDIRECTS:
            # Not followed, as a next page elsewhere is not: the user says where the API is.
            location = answer.headers.get("Location", "?")
            raise ApiError(
                day,
                f"HTTP {answer.status} from {url}: it moved to {location}; set API_URL there",
                transient=False,
            )
        if answer.status != 200:
            raise ApiError(
                day, f"HTTP {answer.status} from {url}: {_snippet(body)}", transient=False
            )
        try:
            envelope = _ENVELOPE.decode(body)
        except msgspec.ValidationError:
            envelope = None  # valid JSON of the wrong shape: reported below
        except msgspec.DecodeError:
            # A 200 with a body that does not parse is most often a body cut short in transit.
            raise _Transient(f"malformed JSON body: {_snippet(body)}") from None
        if envelope is None or not (data := bytes(envelope.data)).lstrip().startswith(b"["):
            raise ApiError(
                day,
                f'expected a JSON object with a "data" list, got: {_snippet(body)}',
                transient=False,
            )
        return data, envelope.next_page_url

    def _connection_failed(self, error: http_errors.HTTPError) -> "_Transient":
        if isinstance(error, http_errors.NameResolutionError):
            cause = "name not resolved"
        elif isinstance(error, http_errors.NewConnectionError):
            cause = "connection refused" if "refused" in str(error) else "could not connect"
        else:
            return _Transient(f"connection failed ({type(error).__name__})")
        self.circuit.refused()
        return _Transient(f"{cause} ({urlsplit(self.base_url).netloc})")


def _connection_pool(base_url: str, size: int, timeout: tuple[float, float]) -> urllib3.PoolManager:
    """Pooled connections to the API: `size` kept open, through the environment's proxy if any.

    Certificates are always verified: against REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) when set,
    else certifi's bundle, as requests would. No retries or redirects of urllib3's own: the
    client's retry loop is the run's only one, and it logs each try.
    """
    environment = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
    bundle = environment["verify"]  # a bundle the user gave (a file or a directory), or True
    if not isinstance(bundle, str):
        bundle = certifi.where()  # requests' own default
    options: dict[str, Any] = dict(
        maxsize=size,
        retries=False,
        timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        headers=urllib3.make_headers(
            accept_encoding=True, user_agent="covid_pipeline/0.1 (urllib3)"
        ),
        cert_reqs="CERT_REQUIRED",
        **({"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle}),
    )
    proxy = requests.utils.select_proxy(base_url, environment["proxies"])
    if not proxy:
        return urllib3.PoolManager(**options)
    # Credentials in the proxy's URL go in Proxy-Authorization, as requests sends them.
    return urllib3.ProxyManager(proxy, proxy_headers=HTTPAdapter().proxy_headers(proxy), **options)


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
