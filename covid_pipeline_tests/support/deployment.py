"""Dagster as a person runs it: the project's instance homes, `dg dev`, the CLI, runs."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest.mock
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from covid_pipeline_tests.support.project import PROJECT_ROOT

# The code location, as every entry point names it ([tool.dg], [tool.dagster], workspace.yaml).
LOCATION = "covid_pipeline"


DAILY = dg.AssetKey("covid_daily_reports")


def materialize_days(
    defs: dg.Definitions,
    first: str,
    last: str | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    resources: dict[str, Any] | None = None,
    run_config: dict[str, Any] | None = None,
    selection: list[dg.AssetKey] | None = [DAILY],  # noqa: B006 (never mutated)
) -> dg.ExecuteInProcessResult:
    """One in-process run over first..last (both included), as a single-run backfill runs it.

    `selection` None runs every asset; a failed run is returned, not raised.
    """
    tags = {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last or first,
    }
    with contextlib.ExitStack() as stack:
        return dg.materialize(
            defs.assets,  # type: ignore[arg-type]
            selection=selection,
            resources=defs.resources if resources is None else resources,
            instance=instance or stack.enter_context(dg.instance_for_test()),
            tags=tags,
            run_config=run_config,
            raise_on_error=False,
        )


def failure_message(result: Any) -> str:
    """The description of the one failed step of an in-process Dagster run."""
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failure.step_failure_data.user_failure_data.description


# The project's two instance files: the embedded default and production's.
INSTANCE_FILES = {"sqlite": "dagster-instance.yaml", "postgres": "dagster-instance.postgres.yaml"}


def project_dagster_home(path: Path, instance_file: str = INSTANCE_FILES["sqlite"]) -> str:
    """`path` as a DAGSTER_HOME holding the project's dagster.yaml, as `make install` makes it."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / instance_file, path / "dagster.yaml")
    return str(path)


def open_instance(home: Path | str, env: dict[str, str] | None = None) -> dg.DagsterInstance:
    """The Dagster instance in `home`, opened as Dagster's commands open it: DAGSTER_HOME set.

    (The project's dagster.yaml names its storage's directory as `env: DAGSTER_HOME`, and the
    Postgres one its server as DAGSTER_PG_* variables, in `env`.)
    """
    with unittest.mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home), **(env or {})}):
        return dg.DagsterInstance.from_config(str(home))


@dataclass(frozen=True)
class DagsterHome:
    """A DAGSTER_HOME with one of the project's instance files, and the variables it reads."""

    path: Path
    env: dict[str, str]  # DAGSTER_HOME, and for Postgres its server and event batching

    def instance(self) -> dg.DagsterInstance:
        return open_instance(self.path, self.env)


INSTANCES = tuple(INSTANCE_FILES)


# A test that runs on both of the project's instances: the embedded default and production's.
ON_BOTH_INSTANCES = pytest.mark.parametrize("dagster_home", INSTANCES, indirect=True)


def run_events(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], list[str]]:
    """A run's Dagster event types in order, and the days it recorded as materialized, sorted."""
    events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
    materialized = sorted(
        event.event_specific_data.materialization.partition
        for event in events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    )
    return [event.event_type_value for event in events], materialized


def dagster_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run the `dagster` command installed beside this Python; fail with its output."""
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"dagster {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout + result.stderr


@dataclass(frozen=True)
class DagsterDev:
    """A running `dg dev`: where its UI is, where it writes, where it keeps its runs."""

    url: str  # the UI, e.g. http://127.0.0.1:41234
    warehouse: Path
    home: DagsterHome

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    def instance(self) -> dg.DagsterInstance:
        """The instance the UI and daemon use (its runs and events), opened from the test."""
        return self.home.instance()

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a GraphQL query, as the UI sends it."""
        answer = requests.post(
            self.graphql, json={"query": query, "variables": variables or {}}, timeout=30
        ).json()
        assert "errors" not in answer, answer
        data: dict[str, Any] = answer["data"]
        return data

    def location_names(self) -> list[str]:
        """The code locations the server loaded, by name."""
        answer = self.query(
            "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
        )
        return [entry["name"] for entry in answer["workspaceOrError"]["locationEntries"]]

    def launch_backfill(self, days: list[str]) -> str:
        """Backfill `days` of the daily asset as the UI's launch dialog does; its id."""
        params = {
            "assetSelection": [{"path": ["covid_daily_reports"]}],
            "partitionNames": days,
            "fromFailure": False,
        }
        launched = self.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return str(launched["backfillId"])

    def wait_for_backfill(self, backfill_id: str, timeout_s: float = 300) -> str:
        """The backfill's final status (the daemon ticks every 30 s)."""
        status, deadline = None, time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.query(_BACKFILL_STATUS, {"id": backfill_id})
            status = answer["partitionBackfillOrError"]["status"]
            if status in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                return str(status)
            time.sleep(2)
        raise AssertionError(f"backfill {backfill_id} still {status} after {timeout_s} s")


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""


_BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""


def stop_dg_dev(process: subprocess.Popen) -> None:
    """Stop a `dg dev` started in a session of its own, and everything it started.

    SIGTERM goes to `dg` alone, which stops its webserver, daemon and code server in turn. Sent
    to the whole group, it also killed the code server, which `dg`'s monitoring thread then
    started again in the middle of the shutdown, and the shutdown waited for that new server
    to load the definitions (up to 7 s under two test workers). What outlives `dg` (a run's
    worker process) is killed with the group.
    """
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        warnings.warn("dg dev was still stopping 60 s after SIGTERM; killed it", stacklevel=2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is already empty
        pass
    process.wait()


def wait_for_asset(url: str, process: subprocess.Popen, log: Path) -> None:
    """Wait until the UI at `url` serves the daily asset; fail with the log if `process` ends."""
    query = '{ assetNodeOrError(assetKey: {path: ["covid_daily_reports"]}) { __typename } }'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster dev exited:\n{log.read_text()[-4000:]}"
        try:
            answer = requests.post(url, json={"query": query}, timeout=5).json()
            if answer["data"]["assetNodeOrError"]["__typename"] == "AssetNode":
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not load the asset:\n{log.read_text()[-4000:]}")
