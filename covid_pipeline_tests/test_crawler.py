"""The Glue crawler waiter, against botocore's Stubber.

A crawler cannot run here (moto's never finishes), so every call is stubbed: the Stubber
checks each request and response against Glue's real API model, so the shapes are real.
"""

import datetime as dt

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from covid_pipeline.core.catalog.crawler import CrawlerError, run_crawler
from covid_pipeline_tests.support.fakes import FakeClock

NAME = "covid-crawler"
EARLIER = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)


def crawler(state: str, status: str | None = None, start: dt.datetime = EARLIER, **last) -> dict:
    body: dict = {"Name": NAME, "State": state}
    if status:
        body["LastCrawl"] = {"Status": status, "StartTime": start, **last}
    return {"Crawler": body}


@pytest.fixture
def glue():
    client = boto3.client("glue", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def run(client, clock: FakeClock, timeout_s: float = 600):
    return run_crawler(
        client, NAME, poll_interval_s=5, timeout_s=timeout_s, sleep=clock.sleep, clock=clock
    )


def test_crawler_starts_polls_until_ready_and_reports_metrics(glue) -> None:
    client, stub = glue
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("start_crawler", {}, {"Name": NAME})
    stub.add_response("get_crawler", crawler("RUNNING", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("get_crawler", crawler("STOPPING", "SUCCEEDED", NOW), {"Name": NAME})
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED", NOW), {"Name": NAME})
    stub.add_response(
        "get_crawler_metrics",
        {"CrawlerMetricsList": [{"CrawlerName": NAME, "TablesCreated": 1, "TablesUpdated": 0}]},
        {"CrawlerNameList": [NAME]},
    )
    clock = FakeClock()
    result = run(client, clock)
    assert (result.status, result.tables_created, result.tables_updated) == ("SUCCEEDED", 1, 0)
    assert clock.sleeps == [5, 5] and result.duration_s == 10


def test_crawler_does_not_mistake_the_previous_crawl_for_ours(glue) -> None:
    client, stub = glue
    stub.add_response("get_crawler", crawler("READY", "FAILED"), {"Name": NAME})
    stub.add_response("start_crawler", {}, {"Name": NAME})
    # Still READY with the old (failed) crawl: ours has not started yet, so keep polling.
    stub.add_response("get_crawler", crawler("READY", "FAILED"), {"Name": NAME})
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED", NOW), {"Name": NAME})
    stub.add_response(
        "get_crawler_metrics", {"CrawlerMetricsList": []}, {"CrawlerNameList": [NAME]}
    )
    assert run(client, FakeClock()).status == "SUCCEEDED"


def test_crawler_already_running_waits_for_that_crawl_then_runs_ours(glue) -> None:
    client, stub = glue
    stub.add_response("get_crawler", crawler("RUNNING", "SUCCEEDED"), {"Name": NAME})
    stub.add_client_error("start_crawler", "CrawlerRunningException", "Crawler is running")
    stub.add_response("get_crawler", crawler("RUNNING", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED", NOW), {"Name": NAME})
    stub.add_response("start_crawler", {}, {"Name": NAME})
    later = NOW + dt.timedelta(hours=1)
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED", later), {"Name": NAME})
    stub.add_response(
        "get_crawler_metrics", {"CrawlerMetricsList": []}, {"CrawlerNameList": [NAME]}
    )
    assert run(client, FakeClock()).status == "SUCCEEDED"


@pytest.mark.parametrize("status", ["FAILED", "CANCELLED"])
def test_crawler_failure_carries_the_crawlers_own_message(glue, status: str) -> None:
    client, stub = glue
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("start_crawler", {}, {"Name": NAME})
    ended = crawler(
        "READY", status, NOW, ErrorMessage="Insufficient Lake Formation permission(s)",
        LogGroup="/aws-glue/crawlers", LogStream=NAME,
    )  # fmt: skip
    stub.add_response("get_crawler", ended, {"Name": NAME})
    with pytest.raises(CrawlerError) as error:
        run(client, FakeClock())
    assert str(error.value) == (
        f"crawler {NAME} {status}: Insufficient Lake Formation permission(s) "
        f"(CloudWatch: /aws-glue/crawlers {NAME})"
    )


def test_crawler_timeout_stops_the_crawl(glue) -> None:
    client, stub = glue
    stub.add_response("get_crawler", crawler("READY", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("start_crawler", {}, {"Name": NAME})
    for _ in range(3):
        stub.add_response("get_crawler", crawler("RUNNING", "SUCCEEDED"), {"Name": NAME})
    stub.add_response("stop_crawler", {}, {"Name": NAME})
    with pytest.raises(
        CrawlerError, match=r"did not finish in time \(state RUNNING\); it was stopped"
    ):
        run(client, FakeClock(), timeout_s=10)


def test_crawler_unknown_name_raises_the_glue_error(glue, caplog: pytest.LogCaptureFixture) -> None:
    client, stub = glue
    stub.add_client_error("get_crawler", "EntityNotFoundException", "Crawler entry not found")
    with pytest.raises(ClientError, match="EntityNotFoundException"):
        run(client, FakeClock())
    assert "get_crawler failed with EntityNotFoundException" in caplog.text
