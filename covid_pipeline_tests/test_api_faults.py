"""Every API fault the replay server injects, through the range backfill the Lambda runs.

Three days are backfilled with the fault on the middle one. Each case ends either recovered
(that day's file written and equal to what the API meant) or as a failure of that day alone,
named with its cause; the other two days are written either way, and a re-run once the fault
is gone completes the range. The Dagster asset's handling of a failed day is proven in
test_assets.py; both share the client and the transform tested here.
"""

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.engine.run import RangeOptions, RangeOutcome, run_range
from covid_pipeline.core.lake import day_files, stores
from covid_pipeline.core.source.retry import RetryPolicy
from covid_pipeline_tests.support.api import (
    IN_FLIGHT,
    MOST_REQUESTS,
    THROTTLE_S,
    THROTTLED_DAYS,
    api_client,
)
from covid_pipeline_tests.support.lake import assert_days_match_replay, replay_table

DAYS = day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 3))
FAULTY = "2021-01-02"
PREFIX = "usa"


def case(fault: Fault, case: str, outcome: str, failure: str | None = None):
    """One parameter: the fault, on FAULTY only, with its table row; `failure` when it fails."""
    fault.dates = [FAULTY]
    return pytest.param(
        fault, failure, id=case, marks=pytest.mark.reliability("API", case, outcome)
    )


RECOVERED = "recovered: retried, the day's file written and correct"
CASES = [
    case(Fault("status", status=503, times=3), "a burst of 503s", RECOVERED),
    case(Fault("status", status=502, times=3), "a burst of 502s", RECOVERED),
    case(
        Fault("status", status=429, retry_after=0.2, times=2),
        "429 with Retry-After",
        "recovered: waited as told (capped at 60 s), file written and correct",
    ),
    case(
        Fault("hang", seconds=3, times=1),
        "a connection that hangs past the read timeout",
        RECOVERED,
    ),
    case(Fault("reset", times=2), "connection reset by peer", RECOVERED),
    case(Fault("malformed", times=2), "a truncated JSON body (200)", RECOVERED),
    case(Fault("html", status=502, times=2), "a non-JSON HTML error page (502)", RECOVERED),
    case(
        Fault("status", status=503),
        "503 that never ends",
        "that day fails: 'HTTP 503 (gave up after 4 attempts)'; the others are written",
        failure="HTTP 503 (gave up after 4 attempts)",
    ),
    case(
        Fault("html", status=404),
        "a non-JSON error page that is not transient (404)",
        "that day fails at once with the status and a 200-character snippet of the page",
        failure="HTTP 404 from http://",
    ),
    case(
        Fault("drop_field", field="deaths"),
        "a required field went missing",
        "that day fails: names the record and the field; the others are written",
        failure="record 0 (Alabama): missing required field 'deaths'",
    ),
    case(
        Fault("extra_field", field="vaccinated"),
        "an unknown new field",
        "recovered: ignored, file written with the documented schema",
    ),
    case(
        Fault("string_numbers"),
        "numbers sent as strings",
        "recovered: coerced, file identical to the day sent as numbers",
    ),
    case(
        Fault("null_counts"),
        "null counts",
        "written: the nulls stay null (not zero) in nullable columns",
    ),
]


def run(replay: ReplayServer, store: stores.Store, tmp_path: Path) -> RangeOutcome:
    client = api_client(
        replay.url,
        "USA",
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        retry=RetryPolicy(max_retries=3, backoff_s=0.01),
    )
    try:
        return run_range(client, store, PREFIX, DAYS, RangeOptions(3, 3), staging_dir=tmp_path)
    finally:
        client.close()


@pytest.mark.parametrize(("fault", "failure"), CASES)
def test_api_fault_ends_recovered_or_as_that_days_failure(
    replay: ReplayServer, tmp_path: Path, fault: Fault, failure: str | None
) -> None:
    tables = {str(day): replay_table(day) for day in DAYS}  # loads the JHU data: not timed
    replay.set_faults([fault])
    store = stores.LocalStore(tmp_path / "warehouse")
    report = run(replay, store, tmp_path)

    others = ["2021-01-01", "2021-01-03"]
    for day in others:  # unaffected, whatever happened to the faulty day
        assert day_files.read_day(store, PREFIX, day).equals(tables[day]), day
    if failure is None:
        assert sorted(report.written) == [*others[:1], FAULTY, *others[1:]]
        written = day_files.read_day(store, PREFIX, FAULTY)
        if fault.kind == "null_counts":
            assert written.num_rows == tables[FAULTY].num_rows
            assert pc.all(pc.is_null(written["confirmed"])).as_py()
        else:
            assert written.equals(tables[FAULTY])
    else:
        assert list(report.failed) == [FAULTY] and failure in report.failed[FAULTY]
        assert len(report.failed[FAULTY]) < 400  # a cause, never a dumped body
        assert day_files.read_day(store, PREFIX, FAULTY) is None

        replay.set_faults([])  # the API is well again: the same range completes
        again = run(replay, store, tmp_path)
        assert len(again.written) == 3 and not again.failed
        assert day_files.read_day(store, PREFIX, FAULTY).equals(tables[FAULTY])


@pytest.mark.reliability(
    "API",
    "paginated answers (Laravel's paginator, 10 records a page)",
    "recovered: every page followed, file identical to the unpaginated day",
)
def test_api_paginated_answers_make_the_same_files(replay: ReplayServer, tmp_path: Path) -> None:
    tables = {str(day): replay_table(day) for day in DAYS}
    replay.page_size = 10
    store = stores.LocalStore(tmp_path / "warehouse")
    report = run(replay, store, tmp_path)
    assert len(report.written) == 3
    for day in report.written:
        assert day_files.read_day(store, PREFIX, day).equals(tables[day])
    assert replay.stats()["requests"] == 3 * 6  # 56 records a day: 6 pages each


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param(0, id="retry-after-0", marks=pytest.mark.reliability(
            "API",
            "a rate limiter's 2 s window (429 to every request), `Retry-After: 0`",
            f"recovered: each retry waits at least its own backoff; the 20 days all land, "
            f"with at most {MOST_REQUESTS} requests",
        )),
        pytest.param("Thu, 01 Jan 1970 00:00:00 GMT", id="retry-after-a-past-date",
                     marks=pytest.mark.reliability(
            "API",
            "a rate limiter's 2 s window, `Retry-After` an HTTP date already past",
            f"recovered: as for `Retry-After: 0`; at most {MOST_REQUESTS} requests",
        )),
        pytest.param(None, id="laravel-seconds-left", marks=pytest.mark.reliability(
            "API",
            "a rate limiter's 2 s window, `Retry-After` the seconds left in it (Laravel's own)",
            "recovered: the server's word is waited out, never less than our backoff",
        )),
    ],
)  # fmt: skip
def test_api_throttle_window_lands_the_whole_range_with_bounded_requests(
    replay: ReplayServer, tmp_path: Path, retry_after: float | str | None
) -> None:
    replay.set_faults([Fault("throttle", seconds=THROTTLE_S, retry_after=retry_after)])
    store = stores.LocalStore(tmp_path / "warehouse")
    client = api_client(
        replay.url,
        "USA",
    )  # the table's defaults: 5 retries, 0.5 s
    try:
        outcome = run_range(
            client, store, PREFIX, THROTTLED_DAYS, RangeOptions(IN_FLIGHT, IN_FLIGHT),
            staging_dir=tmp_path,
        )  # fmt: skip
    finally:
        client.close()
    assert not outcome.failed and len(outcome.written) == len(THROTTLED_DAYS)
    stats = replay.stats()
    assert IN_FLIGHT < stats["faults_served"] and stats["requests"] <= MOST_REQUESTS, stats
    assert_days_match_replay(store, PREFIX, [str(day) for day in THROTTLED_DAYS])
