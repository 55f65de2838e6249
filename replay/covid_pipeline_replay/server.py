"""A local stand-in for covid-api.com: real JHU data in the API's shape, with injectable faults.

Serves `GET /api/reports?date=YYYY-MM-DD&iso=XXX` (without `iso`: every country, the API's
unfiltered query) and `GET /api/regions` like the real API (see docs/covid_api_contract.md),
so the pipeline, its tests and the demo never need the internet.
Knobs: a fixed latency per request, forced pagination, fault rules (5xx, 429 with
Retry-After, a rate limiter's throttle window, hangs, connection resets, malformed bodies,
HTML error pages, empty days, and schema drift), and a load profile: `volume` serves every
US day at the real API's volume (replay/volume.py; for speed and memory, never for checking
values). Counters say how many
requests were served, so tests and benchmarks can check that nothing was fetched twice.

Control endpoints, for a server in another process: `GET /_replay/stats`,
`PUT /_replay/faults` (a JSON list of fault rules) and `POST /_replay/reset`.
"""

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from covid_pipeline_replay import jhu, volume

FaultKind = Literal[
    "status",  # answer `status` (with `retry_after`, if given) instead of the data
    "throttle",  # Laravel's throttle: 429 to every request for `seconds` from the first one
    "hang",  # wait `seconds` before answering, to trip the client's read timeout
    "reset",  # close the connection with a TCP reset, no answer
    "malformed",  # a truncated JSON body with status 200
    "html",  # an HTML error page with status `status` (default 502)
    "empty",  # 200 with {"data": []}: the API has no data that day
    "drop_field",  # leave `field` out of every record
    "extra_field",  # add an unknown field `field` to every record
    "string_numbers",  # send every count as a JSON string
    "null_counts",  # send every count as null
]
_COUNT_FIELDS = (
    "confirmed",
    "deaths",
    "recovered",
    "confirmed_diff",
    "deaths_diff",
    "recovered_diff",
    "active",
    "active_diff",
)
# The API's codes: ISO 3166-1 alpha-3, or its own (NA-SHIP-DP, GGY-JEY, Others, cruise).
_CODE_PATTERN = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
_ERROR_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"  # what a CDN sends


@dataclasses.dataclass
class Fault:
    """One fault rule: what to do, to which days, and how many times (None: every time).

    `retry_after` is sent as the Retry-After header: a number of seconds, or a string as it is
    (an HTTP date, say). A `throttle` rule without one answers as Laravel's throttle does: the
    whole seconds left in its window, rounded down, so 0 near its end.
    """

    kind: FaultKind
    dates: Sequence[str] | None = None
    times: int | None = None
    status: int = 503
    retry_after: float | str | None = None
    seconds: float = 30.0  # how long a `hang` waits, or a `throttle` window lasts
    field: str = "confirmed"
    # When a throttle window opened: at the first request the rule met.
    opened_at: float | None = dataclasses.field(default=None, init=False)

    def matches(self, date: str, now: float) -> bool:
        """Whether this rule still applies to a request for `date` at `now` (monotonic)."""
        if self.kind == "throttle" and self.opened_at is not None:
            if now >= self.opened_at + self.seconds:
                return False
        return (self.times is None or self.times > 0) and (self.dates is None or date in self.dates)

    def retry_after_header(self, now: float) -> str | None:
        """The Retry-After header to send at `now`, if any."""
        if isinstance(self.retry_after, str):
            return self.retry_after
        if self.retry_after is not None:
            return f"{self.retry_after:g}"
        if self.kind == "throttle" and self.opened_at is not None:
            return str(max(int(self.opened_at + self.seconds - now), 0))
        return None


class ReplayServer:
    """A threaded HTTP server on 127.0.0.1 that answers like covid-api.com.

    Use as a context manager, or call `start()` and `stop()`. `url` is the base to use as
    API_URL (it ends in `/api`, like the real one).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_s: float = 0.0,
        page_size: int | None = None,
        faults: Sequence[Fault] = (),
        tls: ssl.SSLContext | None = None,
        profile: str = "fixture",
    ) -> None:
        if profile not in volume.PROFILES:
            raise ValueError(f"profile {profile!r} must be one of {', '.join(volume.PROFILES)}")
        self.profile = profile
        if profile == "volume":
            # Which bundled days stand in for the others: built once, here. Left to the first
            # requests, every one of them would build it at once, past their read timeout.
            volume.county_days()
        self.latency_s = latency_s
        self.page_size = page_size
        # Base of pagination links; None uses the request's Host, as the real API does.
        self.link_base: str | None = None
        self._faults = list(faults)
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # "<iso> <date>" -> requests for that day
        self.faults_served = 0
        self.in_flight = 0  # report requests being answered now
        self.max_in_flight = 0  # the most at once since the last reset: the API's load
        self._httpd = _QuietServer((host, port), _Handler)
        self._httpd.daemon_threads = True  # hung requests must not block shutdown
        self._httpd.replay = self  # type: ignore[attr-defined]
        if tls is not None:  # HTTPS, for the tests of certificate verification
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. http://127.0.0.1:41234/api."""
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host}:{port}/api"

    def start(self) -> "ReplayServer":
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Replace the fault rules."""
        with self._lock:
            self._faults = list(faults)

    def reset(self) -> None:
        """Forget faults and counters."""
        with self._lock:
            self._faults = []
            self.link_base = None
            self.requests.clear()
            self.faults_served = 0
            self.max_in_flight = 0

    def stats(self) -> dict[str, Any]:
        """Counters as JSON-friendly values."""
        with self._lock:
            return {
                "requests": sum(self.requests.values()),
                "distinct_days": len(self.requests),
                "max_requests_per_day": max(self.requests.values(), default=0),
                "faults_served": self.faults_served,
                "max_in_flight": self.max_in_flight,
            }

    def take_fault(self, date: str) -> Fault | None:
        """Count a request for `date` and return the fault rule it triggers, if any."""
        now = time.monotonic()
        with self._lock:
            for fault in self._faults:
                if fault.matches(date, now):
                    if fault.kind == "throttle" and fault.opened_at is None:
                        fault.opened_at = now
                    if fault.times is not None:
                        fault.times -= 1
                    self.faults_served += 1
                    return fault
        return None

    def count(self, iso: str, date: str) -> None:
        """Count one request for a day's reports."""
        with self._lock:
            self.requests[f"{iso} {date}"] += 1

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a report request as in flight while it is answered."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are part of the tests, not news.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "covid-api-replay/1"
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API behind a CDN would
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux), which would add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    @property
    def replay(self) -> ReplayServer:
        return self.server.replay  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks make thousands of requests; keep stderr readable

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path == "/_replay/stats":
            self._send_json(200, self.replay.stats())
        elif url.path == "/api/reports":
            with self.replay.answering():
                self._reports(query)
        elif url.path == "/api/regions":
            data = [{"iso": iso, "name": name} for iso, name in jhu.regions()]
            self._send_json(200, {"data": data})
        else:
            self._send_json(404, {"message": f"Not found: {url.path}"})

    def do_PUT(self) -> None:
        if urlsplit(self.path).path != "/_replay/faults":
            self._send_json(404, {"message": "Not found"})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            faults = [Fault(**rule) for rule in json.loads(body)]
        except (ValueError, TypeError) as error:
            self._send_json(400, {"message": f"bad fault rules: {error}"})
            return
        self.replay.set_faults(faults)
        self._send_json(200, {"faults": len(faults)})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/_replay/reset":
            self._send_json(404, {"message": "Not found"})
            return
        self.replay.reset()
        self._send_json(200, {"reset": True})

    def _reports(self, query: dict[str, str]) -> None:
        date, iso = query.get("date", ""), query.get("iso", "")
        errors = {}
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            errors["date"] = ["The date does not match the format Y-m-d."]
        if iso and not (len(iso) <= 24 and _CODE_PATTERN.match(iso)):
            errors["iso"] = ["The iso format is invalid."]
        iso = jhu.code_of(iso) if iso else iso
        if errors:  # Laravel's validation answer, as the contract expects it
            self._send_json(422, {"message": "The given data was invalid.", "errors": errors})
            return
        self.replay.count(iso, date)
        if self.replay.latency_s:
            time.sleep(self.replay.latency_s)
        fault = self.replay.take_fault(date)
        if fault is not None and self._serve_transport_fault(fault):
            return
        if fault is None and not (query.get("per_page") or self.replay.page_size):
            # The common case, from a cache: the replay must not be what a benchmark measures.
            self._send_bytes(200, self._body(iso, day), "application/json")
            return
        records = self._records(iso, day) if fault is None or fault.kind != "empty" else []
        if fault is not None:
            records = _drift(records, fault)
        self._send_page(records, query)

    def _body(self, iso: str, day: dt.date) -> bytes:
        if self.replay.profile == "volume":
            return volume.encoded_reports(iso, day)
        return _encoded_reports(iso, day)

    def _records(self, iso: str, day: dt.date) -> list[dict]:
        if self.replay.profile == "volume":
            return volume.reports(iso, day)
        return jhu.reports(iso, day)

    def _serve_transport_fault(self, fault: Fault) -> bool:
        """Answer with a transport-level fault; False when the fault alters the data instead."""
        if fault.kind in ("status", "throttle"):
            retry_after = fault.retry_after_header(time.monotonic())
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            if fault.kind == "throttle":  # the body of Laravel's ThrottleRequestsException
                self._send_json(429, {"message": "Too Many Attempts."}, headers)
            elif 300 <= fault.status < 400:  # a redirect: the API moved, to another host
                headers["Location"] = f"https://elsewhere.invalid{self.path}"
                self._send_json(fault.status, {"message": "Moved"}, headers)
            else:
                self._send_json(fault.status, {"message": "Server Error"}, headers)
        elif fault.kind == "hang":
            time.sleep(fault.seconds)
            self._send_json(503, {"message": "Gateway Timeout"})
        elif fault.kind == "reset":
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif fault.kind == "malformed":
            self._send_bytes(200, b'{"data": [{"date": "', "application/json")
        elif fault.kind == "html":
            self._send_bytes(fault.status if fault.status != 503 else 502, _ERROR_PAGE, "text/html")
        else:
            return False
        return True

    def _send_page(self, records: list[dict], query: dict[str, str]) -> None:
        per_page = int(query.get("per_page") or self.replay.page_size or 0)
        if not per_page:
            self._send_json(200, {"data": records})
            return
        # Laravel's paginator body, as covid-api.com sends it when asked for pages.
        page = max(int(query.get("page") or 1), 1)
        last_page = max((len(records) + per_page - 1) // per_page, 1)
        start = (page - 1) * per_page
        api_base = self.replay.link_base or f"http://{self.headers.get('Host')}/api"
        base = f"{api_base}/reports"

        def page_url(number: int) -> str:
            return f"{base}?{urlencode({**query, 'page': number, 'per_page': per_page})}"

        self._send_json(
            200,
            {
                "current_page": page,
                "data": records[start : start + per_page],
                "first_page_url": page_url(1),
                "from": start + 1 if records else None,
                "last_page": last_page,
                "last_page_url": page_url(last_page),
                "next_page_url": page_url(page + 1) if page < last_page else None,
                "path": base,
                "per_page": str(per_page),
                "prev_page_url": page_url(page - 1) if page > 1 else None,
                "to": min(start + per_page, len(records)) if records else None,
                "total": len(records),
            },
        )

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@functools.lru_cache(maxsize=4096)  # every day of the history for a few countries
def _encoded_reports(iso: str, day: dt.date) -> bytes:
    return json.dumps({"data": jhu.reports(iso, day)}).encode()


def _drift(records: list[dict], fault: Fault) -> list[dict]:
    """Records altered the way an API's schema drifts."""
    drifted = []
    for record in records:
        record = {**record}
        if fault.kind == "drop_field":
            record.pop(fault.field, None)
        elif fault.kind == "extra_field":
            record[fault.field] = {"new": "value"}
        elif fault.kind == "string_numbers":
            record.update({name: str(record[name]) for name in _COUNT_FIELDS})
        elif fault.kind == "null_counts":
            record.update(dict.fromkeys(_COUNT_FIELDS))
        drifted.append(record)
    return drifted
