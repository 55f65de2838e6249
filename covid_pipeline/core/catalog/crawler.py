"""Run a Glue crawler to completion: the design's way to catalog new partitions.

Like Airflow's GlueCrawlerHook: start the crawler, poll `get_crawler` until it is READY again,
then read `LastCrawl.Status`. A crawler cannot run twice at once, so if one is already running
we wait for that crawl and then run ours (the running one may have started before our files
landed). Every boto3 call goes through an injected client, so tests can use botocore's Stubber.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

FAILED_STATUSES = frozenset({"FAILED", "CANCELLED"})


class CrawlerError(RuntimeError):
    """The crawl failed, was cancelled, or did not finish in time."""


@dataclass(frozen=True)
class CrawlResult:
    """How the crawl went, from `get_crawler` and `get_crawler_metrics`."""

    status: str
    duration_s: float
    tables_created: int | None
    tables_updated: int | None


def run_crawler(
    glue: Any,
    name: str,
    *,
    poll_interval_s: float = 15.0,
    timeout_s: float = 1800.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CrawlResult:
    """Start crawler `name` and wait for its crawl to end.

    Raises:
        CrawlerError: with the crawler's own error message when the crawl FAILED or was
            CANCELLED, or when it did not finish within `timeout_s` (the crawl is then stopped).
        botocore.exceptions.ClientError: anything else Glue refused, logged with its code.
    """
    deadline = clock() + timeout_s
    before = _call(glue.get_crawler, Name=name)["Crawler"]
    previous_start = (before.get("LastCrawl") or {}).get("StartTime")
    while True:
        try:
            _call(glue.start_crawler, Name=name)
            break
        except glue.exceptions.CrawlerRunningException:
            log.info("crawler %s is already running; waiting for that crawl to end", name)
            previous_start = (
                _wait_until_ready(glue, name, None, deadline, poll_interval_s, sleep, clock)
                .get("LastCrawl", {})
                .get("StartTime")
            )
    started = clock()
    crawler = _wait_until_ready(glue, name, previous_start, deadline, poll_interval_s, sleep, clock)
    last = crawler.get("LastCrawl") or {}
    status = last.get("Status", "UNKNOWN")
    if status in FAILED_STATUSES:
        where = (
            f" (CloudWatch: {last['LogGroup']} {last.get('LogStream', '')})"
            if last.get("LogGroup")
            else ""
        )
        raise CrawlerError(
            f"crawler {name} {status}: {last.get('ErrorMessage', 'no message')}{where}"
        )
    metrics = _metrics(glue, name)
    return CrawlResult(
        status=status,
        duration_s=clock() - started,
        tables_created=metrics.get("TablesCreated"),
        tables_updated=metrics.get("TablesUpdated"),
    )


def stop_crawler(glue: Any, name: str) -> None:
    """Stop a running crawl (e.g. when the run that started it is interrupted)."""
    try:
        glue.stop_crawler(Name=name)
        log.warning("stopped crawler %s", name)
    except (glue.exceptions.CrawlerNotRunningException, glue.exceptions.CrawlerStoppingException):
        pass


def _wait_until_ready(
    glue: Any,
    name: str,
    previous_start: Any,
    deadline: float,
    poll_interval_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    """Poll until the crawler is READY with a crawl newer than `previous_start`."""
    while True:
        crawler: dict[str, Any] = _call(glue.get_crawler, Name=name)["Crawler"]
        last_start = (crawler.get("LastCrawl") or {}).get("StartTime")
        # READY with the old LastCrawl means our crawl has not started yet: keep waiting.
        if crawler["State"] == "READY" and (previous_start is None or last_start != previous_start):
            return crawler
        if clock() >= deadline:
            stop_crawler(glue, name)
            raise CrawlerError(
                f"crawler {name} did not finish in time (state {crawler['State']}); "
                "it was stopped. Raise CRAWLER_TIMEOUT if crawls are legitimately this slow."
            )
        sleep(poll_interval_s)


def _metrics(glue: Any, name: str) -> dict[str, Any]:
    try:
        metrics = glue.get_crawler_metrics(CrawlerNameList=[name])["CrawlerMetricsList"]
    except ClientError as error:
        # Metrics are a nicety for the UI; a crawl that succeeded has still succeeded.
        log.warning("no crawler metrics for %s: %s", name, error.response["Error"]["Code"])
        return {}
    return metrics[0] if metrics else {}


def _call(method: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = method(**kwargs)
        return answer
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        if code != "CrawlerRunningException":
            log.error("Glue %s failed with %s: %s", method.__name__, code, error)
        raise
