"""core.engine.run: a range as a stream: concurrency, failed days, skipped days, stops, progress."""

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.engine import report, workers, writes
from covid_pipeline.core.engine.run import RangeOptions, run_range
from covid_pipeline.core.engine.stream import DayStream, FetchedDay
from covid_pipeline.core.lake import day_files, parquet, stores
from covid_pipeline.core.source.api import CovidApiClient
from covid_pipeline.core.source.retry import RetryPolicy
from covid_pipeline_tests.support.api import api_client
from covid_pipeline_tests.support.lake import replay_table

DAYS = day_range(dt.date(2021, 1, 10), dt.date(2021, 1, 19))


def client(replay: ReplayServer) -> CovidApiClient:
    return api_client(
        replay.url, "USA", read_timeout_s=2, retry=RetryPolicy(max_retries=1, backoff_s=0.01)
    )


def table_of(fetched: FetchedDay) -> pa.Table:
    """The table in the day's file, as the worker encoded it."""
    return parquet.decode_parquet(fetched.file.data)


def stream(replay: ReplayServer, days: list[dt.date] = DAYS, **options) -> DayStream:
    return DayStream(client(replay), days, concurrency=4, **options)


@pytest.mark.parametrize("cpu_workers", [0, 2], ids=["decoded in threads", "in processes"])
def test_run_streams_each_day_once_concurrently(replay: ReplayServer, cpu_workers: int) -> None:
    days = stream(replay, cpu_workers=cpu_workers)
    arrived = {fetched.day: table_of(fetched) for fetched in days}
    assert days.failures == {} and days.unfinished == []
    assert sorted(arrived) == [d.isoformat() for d in DAYS]
    assert all(arrived[day].equals(replay_table(day)) for day in arrived)
    assert {day: table.num_rows for day, table in arrived.items()} == {day: 56 for day in arrived}
    stats = replay.stats()
    assert 1 <= stats.pop("max_in_flight") <= 4  # the stream's concurrency: the API's budget
    assert stats | {"faults_served": 0} == {
        "requests": 10,
        "distinct_days": 10,
        "max_requests_per_day": 1,
        "faults_served": 0,
    }


def test_run_keeps_at_most_its_concurrency_in_flight(replay: ReplayServer) -> None:
    days = iter(stream(replay))
    next(days)  # the consumer holds one day and takes no more
    threading.Event().wait(0.3)
    # The one taken, and at most twice the concurrency in flight: 4 being fetched, and 4
    # fetched and decoded, waiting to be taken.
    assert replay.stats()["requests"] <= 1 + 2 * 4
    days.close()


def test_run_reports_every_failed_day_and_keeps_the_others(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.set_faults(
        [
            Fault(kind="status", status=503, dates=["2021-01-12"]),
            Fault(kind="drop_field", field="deaths", dates=["2021-01-17", "2021-01-18"]),
        ]
    )
    days = stream(replay)
    assert len(list(days)) == 7
    assert sorted(days.failures) == ["2021-01-12", "2021-01-17", "2021-01-18"]
    outcome = run_range(client(replay), stores.LocalStore(tmp_path), "p", DAYS, RangeOptions(4, 4))
    assert sorted(outcome.failed) == ["2021-01-12", "2021-01-17", "2021-01-18"]
    assert len(outcome.written) == 7
    message = outcome.failure_message()
    assert message.startswith(f"3 of 10 days failed (API: {replay.url}):\n")
    assert "  2021-01-12: HTTP 503 (gave up after 2 attempts)" in message
    # Days that failed for the same reason are named together, once.
    assert (
        "  2021-01-17, 2021-01-18: record 0 (Alabama): missing required field 'deaths'" in message
    )
    assert "The other 7 of 10 days were written, each file whole." in message
    assert "Re-run the same range" in message


def test_run_stop_makes_no_new_request(replay: ReplayServer) -> None:
    replay.latency_s = 0.05
    days = stream(replay, day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 31)))
    taken = []
    for fetched in days:
        taken.append(fetched.day)
        if len(taken) == 3:
            days.stop()
    requests_at_stop = replay.stats()["requests"]
    threading.Event().wait(0.3)  # anything still queued would have been asked for by now
    assert replay.stats()["requests"] == requests_at_stop <= 3 + 2 * 4
    assert len(taken) + len(days.unfinished) == 31 and not days.failures


def test_run_writes_days_with_rows_and_skips_empty_ones(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2021-01-11", "2021-01-13"])])
    store = stores.LocalStore(tmp_path)
    landed: dict[str, day_files.WrittenFile | None] = {}
    failures = writes.write_stream(
        stream(replay),
        lambda day: day_files.put_day(store, "p", day.day, day.file),
        concurrency=3,
        total=len(DAYS),
        on_written=lambda day, file: landed.__setitem__(day.day, file),
    )
    assert failures == {}
    assert sorted(day for day, file in landed.items() if file is None) == [
        "2021-01-11",
        "2021-01-13",
    ]
    assert len(list(store.days("p"))) == 8 and len(landed) == 10


def test_run_write_failures_name_each_day_after_trying_all(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "date=2021-01-11").write_text("a file where a folder belongs")
    store = stores.LocalStore(tmp_path)
    days = [
        FetchedDay(d, day_files.encode_day(replay_table(d), "USA"))
        for d in ("2021-01-10", "2021-01-11", "2021-01-12")
    ]
    landed: list[str] = []
    failures = writes.write_stream(
        days,
        lambda day: day_files.put_day(store, "p", day.day, day.file),
        concurrency=2,
        total=3,
        on_written=lambda day, file: landed.append(day.day),
    )
    assert list(failures) == ["2021-01-11"] and "FileExistsError" in failures["2021-01-11"]
    assert sorted(landed) == ["2021-01-10", "2021-01-12"]


def test_run_progress_counts_failed_days_apart() -> None:
    messages: list[str] = []
    progress = report.Progress("fetched", 4, messages.append, every_s=0)
    for failed in (False, True, False, False):
        progress.tick(failed=failed)
    assert messages[0].startswith("fetched 1/4 days (25%), ") and "ETA" in messages[0]
    assert messages[1].startswith("fetched 1/4 days (25%), 1 failed, ")
    assert messages[-1].startswith("fetched 3/4 days (75%), 1 failed, ")
    assert messages[-1].endswith("done")


def test_run_decodes_in_processes_only_where_they_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 8)
    assert workers.workers_for(None, 1143) == workers.MAX_AUTO_WORKERS
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 2)
    assert workers.workers_for(None, 1143) == 2  # the main process's share is light
    assert workers.workers_for(None, 31) == 0  # a month does not repay starting them
    assert workers.workers_for(0, 1143) == 0 and workers.workers_for(2, 5) == 2  # as told
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 1)
    assert workers.workers_for(None, 1143) == 0  # one CPU: threads are as good
    monkeypatch.setattr(workers, "_processes_can_run", lambda: False)  # as in AWS Lambda
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 2)
    assert workers.workers_for(None, 1143) == 0


def test_run_fetches_each_country_of_a_list_once_a_day_into_one_table(
    replay: ReplayServer,
) -> None:
    client = api_client(replay.url, "USA,CAN", retry=RetryPolicy(max_retries=0, backoff_s=0))
    days = DayStream(client, DAYS[:3], concurrency=4)
    arrived = {fetched.day: table_of(fetched) for fetched in days}
    assert sorted(arrived) == [d.isoformat() for d in DAYS[:3]]
    for day, table in arrived.items():
        assert set(table["iso"].to_pylist()) == {"CAN", "USA"}
        assert table.num_rows == len(jhu.reports("CAN", dt.date.fromisoformat(day))) + 56
        assert table.filter(pc.equal(table["iso"], "USA")).equals(replay_table(day))
    # One request per (day, country), and no more.
    assert replay.stats()["requests"] == 6 and replay.stats()["max_requests_per_day"] == 1
    assert days.countries == "CAN,USA"


def test_run_fails_a_day_of_a_list_whole_naming_the_country(replay: ReplayServer) -> None:
    replay.set_faults([Fault(kind="status", status=404, dates=["2021-01-11"])])
    client = api_client(replay.url, "CAN,USA", retry=RetryPolicy(max_retries=0, backoff_s=0))
    days = DayStream(client, DAYS[:3], concurrency=4)
    arrived = [fetched.day for fetched in days]
    assert sorted(arrived) == ["2021-01-10", "2021-01-12"]  # all or nothing: no half day
    assert list(days.failures) == ["2021-01-11"]
    assert days.failures["2021-01-11"].startswith(("CAN: HTTP 404", "USA: HTTP 404"))


def test_run_fetches_the_whole_world_with_one_request_a_day(replay: ReplayServer) -> None:
    client = api_client(replay.url, "ALL", retry=RetryPolicy(max_retries=0, backoff_s=0))
    [fetched] = list(DayStream(client, [dt.date(2021, 1, 15)], concurrency=2))
    countries = set(table_of(fetched)["iso"].to_pylist())
    assert {"USA", "CAN", "DEU", "IND", "BRA"} <= countries and len(countries) > 150
    assert fetched.rows == len(jhu.reports("", dt.date(2021, 1, 15)))
    assert replay.stats()["requests"] == 1 and fetched.check_failures == {}
