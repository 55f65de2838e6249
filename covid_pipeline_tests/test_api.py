"""The HTTP client against the replay API over real sockets: retries, timeouts, pagination."""

import base64
import datetime as dt
import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.source.api import ApiError, CovidApiClient
from covid_pipeline.core.source.retry import RetryPolicy
from covid_pipeline_tests.support.api import api_client, fetch_day, records
from covid_pipeline_tests.support.project import free_port

DAY = dt.date(2020, 4, 16)


class SleepRecorder:
    """Stands in for time.sleep and the clock: the tests check delays without waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    def now(self) -> float:
        return sum(self.delays)


def make_client(url: str, sleep: SleepRecorder, **retry: float) -> CovidApiClient:
    return api_client(
        url,
        "CAN",
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
        retry=RetryPolicy(**{"max_retries": 3, "backoff_s": 0.1, **retry}),  # type: ignore[arg-type]
        sleep=sleep,
        clock=sleep.now,
    )


def test_api_fetches_a_day_as_the_api_sends_it(replay: ReplayServer) -> None:
    client = make_client(replay.url, SleepRecorder())
    assert records(fetch_day(client, DAY)) == jhu.reports("CAN", DAY)
    assert replay.stats()["requests"] == 1


def test_api_returns_empty_list_for_a_day_without_data(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="empty")])
    assert records(fetch_day(make_client(replay.url, SleepRecorder()), DAY)) == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, times=2),
        Fault(kind="status", status=502, times=2),
        Fault(kind="html", status=502, times=2),
        Fault(kind="hang", seconds=2, times=2),
        Fault(kind="reset", times=2),
        Fault(kind="malformed", times=2),
    ],
    ids=lambda fault: f"{fault.kind}-{fault.status}",
)
def test_api_recovers_from_transient_faults(replay: ReplayServer, fault: Fault) -> None:
    replay.set_faults([fault])
    sleep = SleepRecorder()
    assert records(fetch_day(make_client(replay.url, sleep), DAY)) == jhu.reports("CAN", DAY)
    assert replay.stats()["requests"] == 3
    # Exponential backoff with +-50% jitter: 0.1 then 0.2 seconds, give or take half.
    assert 0.05 <= sleep.delays[0] <= 0.15 and 0.1 <= sleep.delays[1] <= 0.3


def test_api_honours_retry_after_on_429(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=429, retry_after=7, times=1)])
    sleep = SleepRecorder()
    assert fetch_day(make_client(replay.url, sleep), DAY)
    assert sleep.delays == [7.0]


def test_api_caps_a_huge_retry_after(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=429, retry_after=3600, times=1)])
    sleep = SleepRecorder()
    assert fetch_day(make_client(replay.url, sleep, max_delay_s=2.0), DAY)
    assert sleep.delays == [2.0]


@pytest.mark.parametrize(
    "retry_after",
    [0, -5, "Thu, 01 Jan 1970 00:00:00 GMT", "soon"],
    ids=["zero", "negative", "a-past-http-date", "not-a-delay"],
)
def test_api_never_backs_off_less_than_its_own_delay_whatever_retry_after_says(
    replay: ReplayServer, retry_after: float | str
) -> None:
    """A limiter's `Retry-After: 0` (Laravel's, near its window's end) waits our backoff."""
    replay.set_faults([Fault(kind="status", status=429, retry_after=retry_after, times=2)])
    sleep = SleepRecorder()
    assert records(fetch_day(make_client(replay.url, sleep), DAY)) == jhu.reports("CAN", DAY)
    # The same exponential backoff as for a 503: 0.1 then 0.2 seconds, give or take half.
    assert 0.05 <= sleep.delays[0] <= 0.15 and 0.1 <= sleep.delays[1] <= 0.3, sleep.delays


def test_api_gives_up_after_its_retries_with_the_cause(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=503)])
    with pytest.raises(ApiError, match=r"2020-04-16: HTTP 503 \(gave up after 4 attempts\)") as err:
        fetch_day(make_client(replay.url, SleepRecorder()), DAY)
    assert err.value.transient
    assert replay.stats()["requests"] == 4


def test_api_does_not_retry_a_client_error(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=404)])
    with pytest.raises(ApiError, match="HTTP 404") as err:
        fetch_day(make_client(replay.url, SleepRecorder()), DAY)
    assert not err.value.transient
    assert replay.stats()["requests"] == 1


def test_api_follows_pagination(replay: ReplayServer) -> None:
    replay.page_size = 4
    answer = records(fetch_day(make_client(replay.url, SleepRecorder()), DAY))
    assert answer == jhu.reports("CAN", DAY)
    assert replay.stats()["requests"] == 4  # 14 records, 4 per page


@pytest.mark.reliability(
    "Security",
    "a next_page_url that points at another host",
    "that day fails at once: 'leaves the API's origin'; the other host is never asked",
)
def test_api_refuses_a_next_page_on_another_host(replay: ReplayServer) -> None:
    replay.page_size = 4
    replay.link_base = "http://elsewhere.invalid/api"  # a proxy that rewrites links, say
    with pytest.raises(ApiError, match="leaves the API's origin"):
        fetch_day(make_client(replay.url, SleepRecorder()), DAY)
    assert replay.stats()["requests"] == 1


class _ForwardProxy(ThreadingHTTPServer):
    """A plain HTTP forward proxy: passes each GET on, and keeps what it was asked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.asked: list[tuple[str, str | None]] = []  # (target URL, Proxy-Authorization)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ForwardProxy

    def do_GET(self) -> None:
        self.server.asked.append((self.path, self.headers.get("Proxy-Authorization")))
        target = urlsplit(self.path)  # a proxy is sent the whole URL
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        upstream.request("GET", f"{target.path}?{target.query}", headers={"Accept-Encoding": ""})
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def forward_proxy() -> Iterator[_ForwardProxy]:
    proxy = _ForwardProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_api_goes_through_the_proxy_the_environment_names(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with forward_proxy() as proxy:
        port = proxy.server_address[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://pipeline:s3cret@127.0.0.1:{port}")
        client = make_client(replay.url, SleepRecorder())
        assert records(fetch_day(client, DAY)) == jhu.reports("CAN", DAY)
    [(url, authorization)] = proxy.asked
    assert url == f"{replay.url}/reports?date={DAY}&iso=CAN"
    assert authorization == "Basic " + base64.b64encode(b"pipeline:s3cret").decode()


@pytest.mark.reliability(
    "Security",
    "the API answers with a redirect (301) to another host",
    "that day fails at once, naming where it moved and to set API_URL there; not followed",
)
def test_api_does_not_follow_a_redirect(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=301)])
    with pytest.raises(ApiError, match="HTTP 301") as err:
        fetch_day(make_client(replay.url, SleepRecorder()), DAY)
    assert "moved to https://elsewhere.invalid/api/reports?" in str(err.value)
    assert "set API_URL there" in str(err.value)
    assert not err.value.transient
    assert replay.stats()["requests"] == 1


@pytest.mark.reliability(
    "API",
    "the API goes down mid-run (connection refused after it answered)",
    "each day fails after its retries; after 50 failures in a row the rest fail at once "
    "without a request (circuit breaker)",
)
def test_api_fails_fast_once_the_api_is_down() -> None:
    sleep = SleepRecorder()
    with ReplayServer() as server:  # it answers once, then goes away
        client = make_client(server.url, sleep, circuit_breaker=6)
        fetch_day(client, DAY)
    client.close()  # drop the kept-alive connection, which the server's thread would still serve
    with pytest.raises(ApiError, match=r"connection refused \(127\.0\.0\.1:\d+\)"):
        fetch_day(client, DAY)  # 4 attempts: 4 failures in a row
    with pytest.raises(ApiError, match="not tried: the API failed 6 times in a row"):
        fetch_day(client, DAY + dt.timedelta(days=1))  # 2 more, then the breaker opens
    with pytest.raises(ApiError, match="not tried"):
        fetch_day(client, DAY + dt.timedelta(days=2))
    assert len(sleep.delays) == 3 + 2


@pytest.mark.reliability(
    "API",
    "the API is down from the start (connection refused, never answered)",
    "reported after 3 s of refusals, not after every day's retries: 'could not connect to "
    "<API_URL> ... Is the API up, and is API_URL right?'; the other days fail at once",
)
def test_api_that_never_answers_is_reported_within_seconds() -> None:
    sleep = SleepRecorder()
    url = f"http://127.0.0.1:{free_port()}/api"
    client = make_client(url, sleep, max_retries=8, backoff_s=0.5)
    with pytest.raises(ApiError, match=f"could not connect to {url}: it refused every") as err:
        fetch_day(client, DAY)
    assert err.value.transient
    # Backoff 0.5, 1, 2 (+-50%): the 3 s window closes after 3 or 4 attempts, not 9.
    assert 3.0 <= sleep.now() < 8.0 and len(sleep.delays) < 5
    with pytest.raises(ApiError, match="could not connect"):
        fetch_day(client, DAY + dt.timedelta(days=1))
    assert len(sleep.delays) < 5  # the next day was not even tried


def test_api_rides_through_a_restart_shorter_than_the_window() -> None:
    port = free_port()
    started: list[ReplayServer] = []

    class RestartsAfterTwoBackoffs(SleepRecorder):
        # Back up, on the same port, after two refused attempts' backoffs: 0.75-2.25 s with the
        # +-50 % jitter, inside the 3 s window whatever the draw. (Restarting at the first
        # backoff to reach 1 s let a low draw keep it down until the window closed.)
        def __call__(self, seconds: float) -> None:
            super().__call__(seconds)
            if len(self.delays) == 2 and not started:
                started.append(ReplayServer(port=port).start())

    sleep = RestartsAfterTwoBackoffs()
    client = make_client(f"http://127.0.0.1:{port}/api", sleep, max_retries=5, backoff_s=0.5)
    try:
        assert records(fetch_day(client, DAY)) == jhu.reports("CAN", DAY)
    finally:
        for server in started:
            server.stop()
    assert sleep.now() < 3.0 and started
