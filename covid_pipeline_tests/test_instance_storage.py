"""The project's Dagster instance storage (covid_pipeline/instance_storage.py), on real SQLite.

It is Dagster's SQLite storage with the event log's engines kept open: the claims are that the
instance of dagster-instance.yaml uses it, that what it writes is what Dagster's default
storage writes (each reads the other's), that Dagster's run watcher (the UI's live view of a
run) sees each event as it is stored, that it keeps few files open however many runs a
long-lived process sees, that concurrent writers lose nothing, and that a range's
materializations, stored in one batch, read back as Dagster's own storage's do.
"""

import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,  # private: what the project's storage overrides (guarded here)
)

from covid_pipeline.instance_storage import (
    EVENT_BATCH_SIZE,
    OPEN_DATABASES,
    ConnectedSqliteEventLogStorage,
)
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


def _dagsters_own_home(where: Path, files: str | None = None) -> Path:
    """A DAGSTER_HOME at `where` with Dagster's default SQLite storage, over `files` or its own."""
    where.mkdir()
    (where / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {files or where}\n")
    return where


def _default_storage_instance(home: str, tmp_path: Path) -> dg.DagsterInstance:
    """An instance over `home`'s files with Dagster's default SQLite storage."""
    return dg.DagsterInstance.from_config(str(_dagsters_own_home(tmp_path / "default", home)))


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


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("positive", asset="ranged")],
)
def ranged(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for day in context.partition_keys:  # per-day metadata, as the raw asset's IO manager adds
        context.add_asset_metadata({"day": day}, partition_key=day)
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


def _materialize_range(instance: dg.DagsterInstance) -> str:
    days = DAYS.get_partition_keys()
    result = dg.materialize(
        [ranged],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
    )
    assert result.success
    return result.run_id


def _what_dagster_reads(instance: dg.DagsterInstance, run_id: str, home: Path) -> dict[str, object]:
    """What the UI shows of a range's run: per-day materializations, tags, checks' rows."""
    records = instance.fetch_materializations(ranged.key, limit=100).records
    latest = instance.get_latest_materialization_event(ranged.key)
    with sqlite3.connect(home / "history" / "runs" / "index.db") as index:
        check_rows = index.execute(
            "SELECT check_name, partition, execution_status, run_id = ?, evaluation_event"
            " FROM asset_check_executions ORDER BY partition",
            (run_id,),
        ).fetchall()
    return {
        "partitions": sorted(instance.get_materialized_partitions(ranged.key)),
        "metadata": sorted(r.asset_materialization.metadata["day"].value for r in records),
        "tags": sorted(
            (r.partition_key, sorted(r.asset_materialization.tags))
            for r in records
            if r.asset_materialization is not None
        ),
        "latest": latest.asset_materialization.partition if latest else None,
        "run_events": len(
            instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        ),
        # The event in each row, as Dagster reads it back, with the run's own id left out.
        "checks": [
            (*row[:4], type(dg.deserialize_value(row[4], dg.EventLogEntry).dagster_event).__name__)
            for row in check_rows
        ],
    }


def test_a_ranges_materializations_are_stored_in_one_batch_as_dagsters_own_stores_them(
    home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    batches: list[int] = []
    store_batch = ConnectedSqliteEventLogStorage.store_event_batch

    def counted(self: ConnectedSqliteEventLogStorage, events: list[dg.EventLogEntry]) -> None:
        batches.append(len(events))
        store_batch(self, events)

    monkeypatch.setattr(ConnectedSqliteEventLogStorage, "store_event_batch", counted)
    with dg.DagsterInstance.from_config(home) as instance:
        ours = _what_dagster_reads(instance, _materialize_range(instance), Path(home))
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == str(EVENT_BATCH_SIZE)  # set by the storage
    assert len(DAYS.get_partition_keys()) in batches  # the range's days, handed as one batch

    # The same run on Dagster's own SQLite storage (which stores a batch event by event).
    other = _dagsters_own_home(tmp_path / "other")
    with dg.DagsterInstance.from_config(str(other)) as default:
        assert _what_dagster_reads(default, _materialize_range(default), other) == ours
    assert ours["partitions"] == DAYS.get_partition_keys() and ours["run_events"] == 12
    assert [row[:4] for row in ours["checks"]] == [("positive", None, "SUCCEEDED", 1)]


def test_a_checks_rows_planned_for_each_day_are_dagsters_own(home: str, tmp_path: Path) -> None:
    """A run over a range (as the CLI and backfills create one) plans its checks for each day."""
    subset = DAYS.subset_with_partition_keys(DAYS.get_partition_keys())
    planned = dg.EventLogEntry(
        error_info=None,
        level="DEBUG",
        user_message="",
        run_id="a-range-run",
        timestamp=time.time(),
        dagster_event=dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
            job_name="__ASSET_JOB",
            event_specific_data=AssetCheckEvaluationPlanned(
                asset_key=ranged.key, check_name="positive", partitions_subset=subset
            ),
        ),
    )
    other = _dagsters_own_home(tmp_path / "other")
    rows = []
    for where in (home, str(other)):
        with dg.DagsterInstance.from_config(where) as instance:
            instance.event_log_storage.store_event(planned)
        with sqlite3.connect(Path(where) / "history" / "runs" / "index.db") as index:
            # Every column but the database's own clock (create_timestamp).
            rows.append(index.execute(f"SELECT {COLUMNS} FROM asset_check_executions").fetchall())
    ours, dagsters = rows
    assert len(ours) == 12 and ours == dagsters  # ids, days, the event and its time: all


COLUMNS = (
    "id, asset_key, check_name, partition, run_id, execution_status, evaluation_event, "
    "evaluation_event_timestamp, evaluation_event_storage_id, materialization_event_storage_id"
)


def test_a_batch_that_fails_leaves_nothing_and_dagster_stores_it_event_by_event(
    home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_asset_event = ConnectedSqliteEventLogStorage._store_asset_event
    failures: list[str] = []

    def fails_once(self: ConnectedSqliteEventLogStorage, *args: object) -> None:
        if not failures:  # the batch's last step: its rows are in, uncommitted
            failures.append("failed")
            raise RuntimeError("disk I/O error")
        store_asset_event(self, *args)

    monkeypatch.setattr(ConnectedSqliteEventLogStorage, "_store_asset_event", fails_once)
    with dg.DagsterInstance.from_config(home) as instance:
        run_id = _materialize_range(instance)
        read = _what_dagster_reads(instance, run_id, Path(home))
    assert failures == ["failed"]
    # Each day once: the failed batch left no row behind, and the fallback stored them all.
    assert read["run_events"] == 12 and read["partitions"] == DAYS.get_partition_keys()
    assert read["metadata"] == DAYS.get_partition_keys()
