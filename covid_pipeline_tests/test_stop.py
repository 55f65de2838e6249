"""A stop stops: Ctrl-C or SIGTERM into a CLI range backfill, then the same range again.

The backfill is `dagster asset materialize --partition-range` over ten months against a
replay API slowed to 150 ms a request, stopped once a few weeks have landed. Within seconds
the process is gone and the run is over, canceled or failed, never retried and never a
success; no request is made after the signal; the days that landed are materialized, each
file whole; nothing partial remains; and a second run over the same range completes it.
(The UI's *Terminate* is tested in a real browser, in test_browser.py.)
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.lake import stores
from covid_pipeline_tests.support.deployment import (
    ON_BOTH_INSTANCES,
    DagsterHome,
    dagster_cli,
    run_events,
)
from covid_pipeline_tests.support.lake import assert_days_match_replay

pytestmark = pytest.mark.slow

DAYS = [str(day) for day in day_range(dt.date(2020, 3, 1), dt.date(2020, 12, 31))]
PREFIX = "covid_daily_reports/usa"
CONCURRENCY = 4
STOP_BOUND_S = 10.0  # the bound: the run ends within 10 s of the signal
ARGS = [
    "asset", "materialize", "-m", "covid_pipeline.definitions", "--select",
    "covid_daily_reports", "--partition-range", f"{DAYS[0]}...{DAYS[-1]}",
]  # fmt: skip


def landed(warehouse: Path) -> list[str]:
    return list(stores.LocalStore(warehouse).days(PREFIX))


@pytest.mark.reliability(
    "Stop",
    "Ctrl-C (SIGINT to the process group) or SIGTERM into `dagster asset materialize` over "
    "ten months, 150 ms a request",
    "the process ends within 10 s, the run canceled or failed and not retried; no request "
    "after the signal; the days that landed are materialized, whole; the re-run completes",
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@ON_BOTH_INSTANCES
def test_stop_cli_backfill_stops_at_once_and_reruns_clean(
    signum: signal.Signals, replay: ReplayServer, tmp_path: Path, dagster_home: DagsterHome
) -> None:
    replay.latency_s = 0.15
    warehouse = tmp_path / "warehouse"
    env = {
        **os.environ,
        "API_URL": replay.url,
        "WAREHOUSE_DIR": str(warehouse),
        **dagster_home.env,
        "FETCH_CONCURRENCY": str(CONCURRENCY),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), *ARGS],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    while len(landed(warehouse)) < 20:
        assert process.poll() is None and time.monotonic() < deadline, "no day landed"
        time.sleep(0.05)

    requests_at_signal = replay.stats()["requests"]
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    else:
        process.send_signal(signal.SIGTERM)  # as `kill` or a supervisor sends it
    signalled = time.monotonic()
    process.wait(timeout=60)
    took = time.monotonic() - signalled
    sys.stderr.write(f"{signum.name}: the backfill ended {took:.1f}s after the signal\n")

    assert took < STOP_BOUND_S, f"the backfill took {took:.1f}s to stop"
    assert process.returncode != 0
    stats = replay.stats()
    # Requests already on the wire when the signal came may still arrive; nothing after them,
    # and no day asked for twice (no retry of the step, no retry of a request).
    assert stats["requests"] <= requests_at_signal + CONCURRENCY
    assert stats["max_requests_per_day"] == 1
    assert stats["requests"] < len(DAYS) / 2  # stopped early, not run to its end

    with dagster_home.instance() as instance:
        [run] = instance.get_runs()
        assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
        kinds, materialized = run_events(instance, run.run_id)
        assert kinds.count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in kinds
        # The range announced in one event, not one per day (docs/dagster-internals.md).
        assert kinds.count("ASSET_MATERIALIZATION_PLANNED") == 1
    written = landed(warehouse)
    assert materialized == written  # every day that landed is recorded, and only those
    assert_days_match_replay(stores.LocalStore(warehouse), PREFIX, written)
    leftovers = [p for p in warehouse.rglob("*") if p.is_file() and p.name != "data.parquet"]
    assert leftovers == []

    replay.latency_s = 0.0
    dagster_cli(ARGS, {**env, "FETCH_CONCURRENCY": "16"}, cwd=tmp_path, timeout=300)
    assert landed(warehouse) == DAYS
