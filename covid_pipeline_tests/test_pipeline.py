"""Fetching and writing a range: concurrency, per-day failures, skipped days, progress."""

import datetime as dt
from pathlib import Path

import pytest

from covid_pipeline.core import pipeline, storage
from covid_pipeline.core.api import CovidApiClient, RetryPolicy
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.transform import to_table
from covid_pipeline.replay import jhu
from covid_pipeline.replay.server import Fault, ReplayServer

DAYS = day_range(dt.date(2021, 1, 10), dt.date(2021, 1, 19))


def client(replay: ReplayServer) -> CovidApiClient:
    return CovidApiClient(
        replay.url, "USA", read_timeout_s=2, retry=RetryPolicy(max_retries=1, backoff_s=0.01)
    )


def test_pipeline_fetches_each_day_once_concurrently(replay: ReplayServer) -> None:
    outcome = pipeline.fetch_days(client(replay), DAYS, concurrency=4)
    assert outcome.failures == {}
    assert sorted(outcome.tables) == [d.isoformat() for d in DAYS]
    assert outcome.tables["2021-01-15"].equals(to_table(DAYS[5], jhu.reports("USA", DAYS[5])))
    assert replay.stats() | {"faults_served": 0} == {
        "requests": 10,
        "distinct_days": 10,
        "max_requests_per_day": 1,
        "faults_served": 0,
    }


def test_pipeline_reports_every_failed_day_and_keeps_the_others(replay: ReplayServer) -> None:
    replay.set_faults(
        [
            Fault(kind="status", status=503, dates=["2021-01-12"]),
            Fault(kind="drop_field", field="deaths", dates=["2021-01-17"]),
        ]
    )
    outcome = pipeline.fetch_days(client(replay), DAYS, concurrency=4)
    assert sorted(outcome.failures) == ["2021-01-12", "2021-01-17"]
    assert len(outcome.tables) == 8
    assert not outcome.transient  # a missing field will not pass on a retry
    report = outcome.failure_report()
    assert report.startswith("2 of 10 days failed:")
    assert "2021-01-12: HTTP 503 (gave up after 2 attempts)" in report
    assert "2021-01-17: record 0 (Alabama): missing required field 'deaths'" in report


def test_pipeline_writes_days_with_rows_and_skips_empty_ones(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2021-01-11", "2021-01-13"])])
    outcome = pipeline.fetch_days(client(replay), DAYS, concurrency=4)
    store = storage.LocalStore(tmp_path)
    written = pipeline.write_days(store, "p", outcome.tables, concurrency=3)
    assert [day for day, file in written.items() if file is None] == ["2021-01-11", "2021-01-13"]
    assert len(list(store.days("p"))) == 8


def test_pipeline_write_failures_name_each_day_after_trying_all(tmp_path: Path) -> None:
    table = to_table(DAYS[0], jhu.reports("USA", DAYS[0]))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "date=2021-01-11").write_text("a file where a folder belongs")
    store = storage.LocalStore(tmp_path)
    tables = {"2021-01-10": table, "2021-01-11": table, "2021-01-12": table}
    with pytest.raises(
        pipeline.WriteError, match=r"1 of 3 days could not be written:\n  2021-01-11: "
    ) as error:
        pipeline.write_days(store, "p", tables, concurrency=2)
    assert sorted(day for day, file in error.value.written.items() if file) == [
        "2021-01-10",
        "2021-01-12",
    ]


def test_pipeline_progress_reports_rate_and_eta() -> None:
    messages: list[str] = []
    progress = pipeline.Progress("fetched", 4, messages.append, every_s=0)
    for _ in range(4):
        progress.tick()
    assert messages[0].startswith("fetched 1/4 days (25%), ") and "ETA" in messages[0]
    assert messages[-1].startswith("fetched 4/4 days (100%), ") and messages[-1].endswith("done")
