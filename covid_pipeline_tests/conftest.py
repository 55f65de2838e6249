"""Shared fixtures: the replay API and an S3 server, both real HTTP servers on 127.0.0.1."""

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest.mock
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import ReplayServer
from moto.server import ThreadedMotoServer

from covid_pipeline.core import local_catalog, storage, stores
from covid_pipeline.core.api import CovidApiClient, DayPayload
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.transform import to_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The code location, as every entry point names it ([tool.dg], [tool.dagster], workspace.yaml).
LOCATION = "covid_pipeline"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-table",
        metavar="PATH",
        help="write the table of the collected tests' reliability marks to PATH",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("--reliability-table")
    if path:
        from covid_pipeline_tests import reliability

        Path(path).write_text(reliability.table(items))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Keep each phase's report on the test, so fixtures can tell it failed (screenshots)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach real AWS: fake keys, a fixed region, no profile from the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    # Anything that reaches for AWS without a test server meets a closed port on this machine.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name in ("API_URL", "ISO_CODE", "BUCKET_NAME", "PREFIX", "WAREHOUSE_DIR", "CATALOG_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def replay_server() -> Iterator[ReplayServer]:
    # JHU's lookup table and time series, read once now: the first test's first request must
    # not wait for them past a short read timeout (test_api's is 0.5 s) and count a retry.
    jhu.regions()
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay(replay_server: ReplayServer) -> Iterator[ReplayServer]:
    """The replay API with no faults, no latency, no pagination and fresh counters."""
    replay_server.reset()
    replay_server.latency_s = 0.0
    replay_server.page_size = None
    yield replay_server
    replay_server.reset()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Moto in server mode: S3 over real HTTP, so boto3 and pyarrow both go through sockets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The moto server, emptied; AWS_ENDPOINT_URL points every boto3 client at it."""
    requests.post(f"{s3_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


@pytest.fixture
def s3_bucket(aws: str) -> str:
    """A fresh, empty bucket on the moto server."""
    return new_bucket()


def new_bucket() -> str:
    """A fresh, empty bucket on the S3 server that AWS_ENDPOINT_URL points at."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Ceph RGW, a real S3 server that enforces SigV4 (see ceph_rgw.py).

    Skipped where Ceph is not installed (scripts/install_ceph.sh installs it; `make test`
    runs that), except in CI, where a missing Ceph is a failure, not a skip.
    """
    from covid_pipeline_tests.ceph_rgw import CephRgw, missing_binaries

    missing = missing_binaries()
    if missing:
        message = (
            f"Ceph RGW is not installed (no {', '.join(missing)}): run scripts/install_ceph.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    rgw = CephRgw(tmp_path_factory.mktemp("ceph")).start()
    yield rgw
    rgw.stop()


@dataclass(frozen=True)
class S3Server:
    """An S3 server the tests write to, with the credentials it accepts."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str


S3_SERVERS = ("moto", "ceph")


@pytest.fixture(params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn, with AWS_ENDPOINT_URL and the credentials set for boto3."""
    return use_s3_server(request, request.param)


def use_s3_server(request: pytest.FixtureRequest, name: str) -> S3Server:
    """Point boto3 (AWS_ENDPOINT_URL and credentials) at the S3 server `name`, for one test.

    moto stands in for S3's API; Ceph RGW is a real implementation that checks signatures.
    """
    if name == "moto":
        server = S3Server("moto", request.getfixturevalue("aws"), "testing", "testing")
    else:
        from covid_pipeline_tests.ceph_rgw import ACCESS_KEY, SECRET_KEY

        rgw = request.getfixturevalue("ceph_rgw")
        server = S3Server("ceph", rgw.endpoint, ACCESS_KEY, SECRET_KEY)
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    # boto3's default session keeps the credentials it first found: start a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return server


@pytest.fixture
def any_s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on each S3 server in turn (moto, then Ceph RGW)."""
    return new_bucket()


CATALOG_TABLE = "covid_daily_reports_usa"
CATALOG_DAYS = day_range(dt.date(2020, 4, 1), dt.date(2020, 4, 14))


def replay_table(day: str | dt.date) -> pa.Table:
    """The replay's USA reports for `day` as the pipeline writes them: what its file holds."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return to_table(day, jhu.reports("USA", day))


def assert_days_match_replay(store: stores.Store, prefix: str, days: Iterable[str]) -> None:
    """Each day's file exists, reads whole, and holds exactly the replay's day."""
    for day in days:
        table = storage.read_day(store, prefix, day)
        assert table is not None and table.equals(replay_table(day)), day


def write_days(root: Path, days: list[dt.date]) -> None:
    """Write the replay's USA reports for `days` into a local warehouse at `root`."""
    store = stores.LocalStore(root)
    for day in days:
        storage.write_day(store, "covid_daily_reports/usa", str(day), replay_table(day), "USA")


# Files a shared lake may hold at a day's key that are not days of ours.
STRAY_KINDS = ("html", "truncated", "foreign")


def write_stray_file(path: Path, kind: str) -> None:
    """Replace the day's file at `path` with a file that is not a day of ours."""
    if kind == "html":  # a CDN's error page saved as the file
        path.write_bytes(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    elif kind == "truncated":  # a copy cut short
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # another tool's Parquet file
        pq.write_table(pa.table({"id": [1, 2], "value": ["a", "b"]}), path)


WORLD_TABLE = "covid_daily_reports_all"


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB catalog over two weeks of April 2020, written as the pipeline writes them.

    Two tables, as two deployments would make them: USA alone (ISO_CODE=USA), and every
    country in one table (ISO_CODE=ALL).
    """
    root = tmp_path_factory.mktemp("warehouse")
    write_days(root, CATALOG_DAYS)
    store = stores.LocalStore(root)
    for day in CATALOG_DAYS:
        world = to_table(day, jhu.reports("", day))
        storage.write_day(store, "covid_daily_reports/all", str(day), world, "ALL")
    database = root / "catalog.duckdb"
    local_catalog.register(database, root / "covid_daily_reports/usa", CATALOG_TABLE)
    local_catalog.register(database, root / "covid_daily_reports/all", WORLD_TABLE)
    return database


@pytest.fixture(scope="session")
def function_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/lambda.zip built and unpacked into an empty folder, the runtime client beside it."""
    from covid_pipeline_tests.lambda_runtime import build_function_root

    return build_function_root(tmp_path_factory.mktemp("lambda"))


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


def s3_keys(bucket: str) -> dict[str, str]:
    """Every key in the bucket with its ETag."""
    paginator = boto3.client("s3").get_paginator("list_objects_v2")
    return {
        item["Key"]: item["ETag"]
        for page in paginator.paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server on a free port (postgres_server.py), for the production instance.

    Skipped where PostgreSQL is not installed (scripts/install_postgres.sh installs it; `make
    test` runs that), except in CI, where a missing server is a failure, not a skip.
    """
    from covid_pipeline_tests.postgres_server import PostgresServer, bin_dir

    if bin_dir() is None:
        message = "PostgreSQL is not installed: run scripts/install_postgres.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(None, free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


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


@pytest.fixture
def dagster_home(request: pytest.FixtureRequest, tmp_path: Path) -> DagsterHome:
    """The project's SQLite instance, or (parametrized: ON_BOTH_INSTANCES) its Postgres one.

    The Postgres one gets a database of its own on the session's server, so no test sees
    another's runs, and the variables production runs with (postgres_server.PRODUCTION_ENV).
    """
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        home = project_dagster_home(tmp_path / "dagster_home")
        return DagsterHome(Path(home), {"DAGSTER_HOME": home})
    from covid_pipeline_tests.postgres_server import PRODUCTION_ENV

    server = request.getfixturevalue("postgres_server")
    database = f"dagster_{uuid.uuid4().hex[:12]}"
    server.create_database(database)
    home = project_dagster_home(tmp_path / "dagster_home", INSTANCE_FILES["postgres"])
    env = {"DAGSTER_HOME": home, **server.environment(database), **PRODUCTION_ENV}
    return DagsterHome(Path(home), env)


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


@pytest.fixture
def dagster_dev_env() -> dict[str, str]:
    """Settings for `dagster dev` on top of the fixture's own; a test module may override it."""
    return {}


@pytest.fixture
def dagster_dev(
    replay: ReplayServer,
    tmp_path: Path,
    dagster_home: DagsterHome,
    dagster_dev_env: dict[str, str],
) -> Iterator[DagsterDev]:
    """`dg dev` (webserver and daemon), as `make dev` runs it, on 127.0.0.1 over the replay API.

    With a throwaway DAGSTER_HOME that holds the project's dagster.yaml, as `make dev` has it
    (or its Postgres instance, for tests ON_BOTH_INSTANCES), and 4 days fetched at once, so
    that a backfill lasts long enough to be stopped.
    """
    port = free_port()
    dev = DagsterDev(f"http://127.0.0.1:{port}", tmp_path / "warehouse", dagster_home)
    env = {
        **os.environ,
        **dagster_home.env,
        "API_URL": replay.url,
        "WAREHOUSE_DIR": str(dev.warehouse),
        "FETCH_CONCURRENCY": "4",
        "VIRTUAL_ENV": sys.prefix,  # dg expects the project's venv to be the active one
        **dagster_dev_env,
    }
    log_path = tmp_path / "dagster_dev.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dg")),
                "dev",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that stopping it stops the daemon and code server too
        )
        try:
            _wait_for_asset(dev.graphql, process, log_path)
            yield dev
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _wait_for_asset(url: str, process: subprocess.Popen, log: Path) -> None:
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


def fetch_day(client: CovidApiClient, day: dt.date) -> DayPayload:
    """The whole day of a set that takes one request a day (one country, or ALL)."""
    [iso] = client.countries.queries
    return client.fetch(day, iso)


def records(payload: DayPayload) -> list[dict[str, Any]]:
    """A day's records as plain dicts, page after page (what the decoder reads fast)."""
    return [record for page in payload.pages for record in json.loads(page)]


def infra_template() -> dict[str, Any]:
    """infra/template.yaml, its short-form functions (!Ref, !Sub, !If, ...) read as arguments."""
    import yaml

    class CloudFormation(yaml.SafeLoader):
        """Reads CloudFormation's short-form functions as their argument."""

    def argument(loader: yaml.SafeLoader, _tag: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        return loader.construct_sequence(node)  # type: ignore[arg-type]

    CloudFormation.add_multi_constructor("!", argument)
    template: dict[str, Any] = yaml.load(
        (PROJECT_ROOT / "infra" / "template.yaml").read_text(), CloudFormation
    )
    return template


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any of the project's variables; set what a test needs."""
    from covid_pipeline.core.config import VARIABLES

    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    return monkeypatch
