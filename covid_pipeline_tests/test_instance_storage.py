"""The project's Dagster instance storage (covid_pipeline/instance_storage.py), on real SQLite.

It is Dagster's SQLite storage with the event log's engines kept open: the claims are that the
instance of dagster-instance.yaml uses it, that what it writes is what Dagster's default
storage writes (each reads the other's), that Dagster's run watcher (the UI's live view of a
run) sees each event as it is stored, that it keeps few files open however many runs a
long-lived process sees, and that concurrent writers lose nothing.
"""

import os
import queue
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from covid_pipeline.instance_storage import OPEN_DATABASES, ConnectedSqliteEventLogStorage
from covid_pipeline_tests.support.deployment import open_instance, project_dagster_home

DAYS = dg.StaticPartitionsDefinition([f"2021-01-{n:02d}" for n in range(1, 13)])


@dg.asset(partitions_def=DAYS)
def numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"day": context.partition_key})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A DAGSTER_HOME with the project's dagster.yaml, set as Dagster's commands have it."""
    path = project_dagster_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", path)
    return path


def _materialize(instance: dg.DagsterInstance, days: list[str]) -> None:
    for day in days:  # a run each: each run has a database file of its own
        assert dg.materialize([numbers], partition_key=day, instance=instance).success


def _default_storage_instance(home: str, tmp_path: Path) -> dg.DagsterInstance:
    """An instance over `home`'s files with Dagster's default SQLite storage."""
    other = tmp_path / "default"
    other.mkdir()
    (other / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\n")
    return dg.DagsterInstance.from_config(str(other))


def test_project_instance_uses_it_and_shares_files_with_dagsters_default(
    home: str, tmp_path: Path
) -> None:
    days = DAYS.get_partition_keys()
    with dg.DagsterInstance.from_config(home) as instance:
        assert isinstance(instance.event_log_storage, ConnectedSqliteEventLogStorage)
        _materialize(instance, days[:6])

    with _default_storage_instance(home, tmp_path) as default:
        assert type(default.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert default.get_materialized_partitions(numbers.key) == set(days[:6])
        _materialize(default, days[6:])

    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.get_materialized_partitions(numbers.key) == set(days)
        records = instance.fetch_materializations(numbers.key, limit=100).records
        assert sorted(r.asset_materialization.metadata["day"].value for r in records) == days


def test_the_ui_follows_a_run_as_its_events_are_stored(home: str) -> None:
    """Dagster's UI follows a run by watching its database file, from another process."""
    with open_instance(home) as webserver, open_instance(home) as run_worker:
        result = dg.materialize([numbers], partition_key="2021-01-01", instance=run_worker)
        run = run_worker.get_run_by_id(result.run_id)
        assert run is not None
        seen: queue.Queue[str] = queue.Queue()
        webserver.watch_event_logs(run.run_id, None, lambda event, _: seen.put(event.message))
        for n in range(3):
            run_worker.report_engine_event(f"event {n}", run)
            _wait_for(seen, f"event {n}")  # raises queue.Empty if it never comes
        webserver.end_watch_event_logs(run.run_id, seen.put)


def _wait_for(seen: "queue.Queue[str]", message: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while seen.get(timeout=max(deadline - time.monotonic(), 0.01)) != message:
        pass  # the run's earlier events come first


def test_a_long_lived_process_keeps_few_run_databases_open(home: str) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        _materialize(instance, DAYS.get_partition_keys())  # 12 runs, 12 run databases
        runs_dir = Path(home) / "history" / "runs"
        run_files = {p.name for p in runs_dir.glob("*.db") if p.name != "index.db"}
        assert len(run_files) == 12
        open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
        open_runs = {Path(p).name for p in open_files if Path(p).name in run_files}
        assert 0 < len(open_runs) <= OPEN_DATABASES

        instance.wipe()  # deletes the run files: their connections must go first
        _materialize(instance, ["2021-01-01"])
        assert instance.get_materialized_partitions(numbers.key) == {"2021-01-01"}


def test_threads_writing_at_once_lose_no_event(home: str) -> None:
    with dg.DagsterInstance.from_config(home) as instance:

        def report(thread: int) -> None:
            for n in range(25):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization("reported", metadata={"n": thread * 100 + n})
                )

        threads = [threading.Thread(target=report, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = instance.fetch_materializations(dg.AssetKey("reported"), limit=1000).records
        stored = sorted(r.asset_materialization.metadata["n"].value for r in records)
        assert stored == sorted(t * 100 + n for t in range(4) for n in range(25))
