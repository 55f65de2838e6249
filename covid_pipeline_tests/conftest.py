"""Shared fixtures: the replay API and an S3 server, both real HTTP servers on 127.0.0.1."""

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import ReplayServer
from moto.server import ThreadedMotoServer

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.lake import day_files, stores
from covid_pipeline.core.reporting import country_daily, population
from covid_pipeline.core.schema.transform import to_table
from covid_pipeline_tests.support.deployment import (
    INSTANCE_FILES,
    DagsterDev,
    DagsterHome,
    project_dagster_home,
    stop_dg_dev,
    wait_for_asset,
)
from covid_pipeline_tests.support.lake import (
    CATALOG_DAYS,
    CATALOG_TABLE,
    COUNTRY_TABLE,
    WORLD_TABLE,
    write_days,
)
from covid_pipeline_tests.support.project import PROJECT_ROOT, free_port
from covid_pipeline_tests.support.s3 import S3_SERVERS, S3Server, new_bucket, use_s3_server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-table",
        metavar="PATH",
        help="write the table of the collected tests' reliability marks to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`bash .ci/run &`) with SIGINT ignored, and every process a
    # test starts inherits that. `dg dev` takes SIGTERM as it takes SIGINT, so it then ignored
    # both, and each of its teardowns waited out the timeout. Run as a terminal's job is run.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("--reliability-table")
    if path:
        from covid_pipeline_tests.support import reliability

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


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Ceph RGW, a real S3 server that enforces SigV4 (see ceph_rgw.py).

    Skipped where Ceph is not installed (scripts/install_ceph.sh installs it; `make test`
    runs that), except in CI, where a missing Ceph is a failure, not a skip.
    """
    from covid_pipeline_tests.support.ceph_rgw import CephRgw, missing_binaries

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


@pytest.fixture(params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn, with AWS_ENDPOINT_URL and the credentials set for boto3."""
    return use_s3_server(request, request.param)


@pytest.fixture
def any_s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket on each S3 server in turn (moto, then Ceph RGW)."""
    return new_bucket()


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB catalog over two weeks of April 2020, written as the pipeline writes them.

    Two tables, as two deployments would make them: USA alone (ISO_CODE=USA), and every
    country in one table (ISO_CODE=ALL); and USA's country-day table, rolled up by the core.
    """
    root = tmp_path_factory.mktemp("warehouse")
    write_days(root, CATALOG_DAYS)
    store = stores.LocalStore(root)
    for day in CATALOG_DAYS:
        world = to_table(day, jhu.reports("", day))
        day_files.write_day(store, "covid_daily_reports/all", str(day), world, "ALL")
    database = root / "catalog.duckdb"
    duckdb_catalog.register(database, root / "covid_daily_reports/usa", CATALOG_TABLE)
    duckdb_catalog.register(database, root / "covid_daily_reports/all", WORLD_TABLE)
    days = [str(day) for day in CATALOG_DAYS]
    raw = day_files.LakeDays(store, "covid_daily_reports/usa", tuple(days), None, read_ahead=4)
    for made in country_daily.roll_up(raw, set(days), population.populations()):
        day_files.write_day(store, "covid_country_daily/usa", made.day, made.table, "USA")
    duckdb_catalog.register(
        database, root / "covid_country_daily/usa", COUNTRY_TABLE, country_daily.SCHEMA
    )
    return database


@pytest.fixture(scope="session")
def function_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/lambda.zip built and unpacked into an empty folder, the runtime client beside it."""
    from covid_pipeline_tests.support.lambda_runtime import build_function_root

    return build_function_root(tmp_path_factory.mktemp("lambda"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server on a free port (postgres_server.py), for the production instance.

    Skipped where PostgreSQL is not installed (scripts/install_postgres.sh installs it; `make
    test` runs that), except in CI, where a missing server is a failure, not a skip.
    """
    from covid_pipeline_tests.support.postgres_server import PostgresServer, bin_dir

    if bin_dir() is None:
        message = "PostgreSQL is not installed: run scripts/install_postgres.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(None, free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


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
    from covid_pipeline_tests.support.postgres_server import PRODUCTION_ENV

    server = request.getfixturevalue("postgres_server")
    database = f"dagster_{uuid.uuid4().hex[:12]}"
    server.create_database(database)
    home = project_dagster_home(tmp_path / "dagster_home", INSTANCE_FILES["postgres"])
    env = {"DAGSTER_HOME": home, **server.environment(database), **PRODUCTION_ENV}
    return DagsterHome(Path(home), env)


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
        "AUTOMATION_INTERVAL": "5",  # the followers within seconds, not half a minute
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
            start_new_session=True,  # a group of its own, so that what outlives `dg` can be killed
        )
        try:
            wait_for_asset(dev.graphql, process, log_path)
            yield dev
        finally:
            stop_dg_dev(process)


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any of the project's variables; set what a test needs."""
    from covid_pipeline.core.config import VARIABLES

    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    return monkeypatch
