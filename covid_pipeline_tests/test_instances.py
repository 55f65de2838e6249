"""The project's two Dagster instance files: the embedded default and production's PostgreSQL.

They differ in their storage only; each opens as Dagster opens it, with the API's one pool
(a limit of one, enforced per step) and run monitoring; and the Postgres one, against a real
server, stores runs and events in PostgreSQL with the driver it names.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from covid_pipeline.assets import API_POOL
from covid_pipeline_tests.support.deployment import (
    INSTANCE_FILES,
    INSTANCES,
    DagsterHome,
    open_instance,
    project_dagster_home,
)
from covid_pipeline_tests.support.postgres_server import PRODUCTION_ENV
from covid_pipeline_tests.support.project import PROJECT_ROOT


def load(kind: str) -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_ROOT / INSTANCE_FILES[kind]).read_text()))


def test_instance_files_differ_in_their_storage_alone() -> None:
    sqlite, postgres = load("sqlite"), load("postgres")
    assert sqlite.pop("storage") != postgres.pop("storage")
    assert sqlite == postgres  # the pool, run monitoring, logs, telemetry: kept in step


def test_postgres_instance_reads_its_server_and_secret_from_the_environment() -> None:
    database = load("postgres")["storage"]["postgres"]["postgres_db"]
    assert database.pop("scheme") == "postgresql+psycopg2"  # what SQLAlchemy 2.1 needs here
    assert database == {
        name: {"env": f"DAGSTER_PG_{variable}"}
        for name, variable in [
            ("hostname", "HOST"), ("port", "PORT"), ("username", "USER"),
            ("password", "PASSWORD"), ("db_name", "DB"),
        ]
    }  # fmt: skip


@pytest.mark.parametrize("dagster_home", INSTANCES, indirect=True)
def test_each_instance_has_the_apis_pool_and_run_monitoring(dagster_home: DagsterHome) -> None:
    with dagster_home.instance() as instance:
        assert instance.event_log_storage.supports_global_concurrency_limits
        pool = instance.event_log_storage.get_pool_config()
        assert pool.default_pool_limit == 1 and pool.pool_granularity.value == "op"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 5
        if dagster_home.env.get("DAGSTER_PG_DB"):
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"


def test_postgres_instance_keeps_runs_and_pool_slots_in_the_server(
    postgres_server, tmp_path: Path
) -> None:
    """A run's events land in PostgreSQL, and the pool's slot is claimed and freed there."""
    postgres_server.create_database("instances_test")
    home = project_dagster_home(tmp_path / "home", INSTANCE_FILES["postgres"])
    env = {**postgres_server.environment("instances_test"), **PRODUCTION_ENV}

    @dg.asset(pool=API_POOL)
    def pooled() -> int:
        return 1

    with open_instance(home, env) as instance:
        assert dg.materialize([pooled], instance=instance).success
        (run,) = instance.get_runs()
        kinds = [e.dagster_event.event_type_value for e in instance.all_logs(run.run_id)]
        assert "ASSET_MATERIALIZATION" in kinds and kinds[-1] == "PIPELINE_SUCCESS"
        limit = instance.event_log_storage.get_concurrency_info(API_POOL)
        assert limit.slot_count == 1 and limit.active_slot_count == 0  # claimed, then freed
    with open_instance(home, env) as again:  # another process's view: the same server
        assert [r.run_id for r in again.get_runs()] == [run.run_id]
