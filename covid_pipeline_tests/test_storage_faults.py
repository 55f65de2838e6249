"""Storage faults: throttling is retried; a bucket, key or disk that cannot work stops at once.

S3 cases run against moto and against Ceph RGW (a real S3 server that checks signatures and
bucket policies); local cases against real file systems mounted for the test (a full tmpfs,
a read-only one), since the tests run as root, to whom permissions are no obstacle.
"""

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.engine.run import RangeOptions, RangeOutcome, run_range
from covid_pipeline.core.lake import stores
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.api import api_client
from covid_pipeline_tests.support.deployment import failure_message, materialize_days
from covid_pipeline_tests.support.lake import assert_days_match_replay
from covid_pipeline_tests.support.project import free_port
from covid_pipeline_tests.support.s3 import S3Server, new_bucket, use_s3_server
from covid_pipeline_tests.support.s3_fault_proxy import S3FaultProxy

reliability = pytest.mark.reliability
DAYS = day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 10))
PREFIX = "lake/usa"


# The days a backfill of concurrency 2 can have in flight when the store fails: two being
# fetched, two fetched and decoded waiting for the writer, two being written. No day of the
# range beyond those is started.
IN_FLIGHT = 3 * 2


def backfill(replay: ReplayServer, store: stores.Store, tmp_path: Path) -> RangeOutcome:
    """The Lambda's core path: fetch, write through /tmp, upload, two days at a time."""
    return run_range(
        api_client(replay.url, "USA"),
        store,
        PREFIX,
        DAYS,
        RangeOptions(fetch_concurrency=2, write_concurrency=2),
        staging_dir=tmp_path,
    )


@pytest.fixture
def proxy(
    s3_server: S3Server, any_s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3FaultProxy]:
    """The fault proxy in front of the test's S3 server (its bucket made); boto3 goes through it."""
    proxy = S3FaultProxy(s3_server.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the endpoint it first saw
    yield proxy
    proxy.stop()


@reliability(
    "Storage",
    "S3 answers 503 SlowDown to a burst of PUTs (moto, Ceph RGW)",
    "recovered: botocore retries with backoff (6 attempts); every day written and correct",
)
def test_storage_retries_slowdown_bursts(
    proxy: S3FaultProxy, any_s3_bucket: str, replay: ReplayServer, tmp_path: Path
) -> None:
    proxy.slowdowns = 4
    # The Lambda's client configuration: the project's retry budget, not boto3's default.
    client = boto3.client("s3", config=stores.s3_client_config())
    store = stores.S3Store(any_s3_bucket, client, PREFIX)
    report = backfill(replay, store, tmp_path)
    assert sorted(report.written) == [str(day) for day in DAYS] and not report.failed, report.failed
    assert proxy.served["PUT 503"] == 4 and proxy.served["PUT 200"] == len(DAYS)
    assert_days_match_replay(store, PREFIX, sorted(report.written))


@reliability(
    "Storage",
    "BUCKET_NAME names a bucket that does not exist (moto, Ceph RGW)",
    "refused before any fetch: StorageAccessError naming s3://bucket/prefix, one request",
)
def test_storage_missing_bucket_stops_before_fetching(
    proxy: S3FaultProxy, s3_server: S3Server, replay: ReplayServer, tmp_path: Path
) -> None:
    store = stores.S3Store("no-such-bucket-here", boto3.client("s3"), PREFIX)
    with pytest.raises(stores.StorageAccessError) as error:
        store.preflight(PREFIX)
    assert str(error.value).startswith(
        "S3 refused to list s3://no-such-bucket-here/lake/usa: NoSuchBucket (HTTP 404). "
        "Check BUCKET_NAME"
    )
    assert sum(proxy.served.values()) == 1  # no retry storm
    # And a write that meets it anyway (the bucket deleted mid-run) stops the range.
    with pytest.raises(stores.StorageAccessError, match="NoSuchBucket") as error:
        backfill(replay, store, tmp_path)
    assert "0 of 10 days were written before it; no further day was started" in str(error.value)
    assert proxy.served["PUT 404"] <= 2 and replay.stats()["requests"] <= IN_FLIGHT


@reliability(
    "Storage",
    "a bucket policy denies s3:PutObject (Ceph RGW)",
    "stops at once: StorageAccessError naming the bucket, prefix and IAM policy; at "
    "most the days in flight tried",
)
@pytest.mark.parametrize("s3_server", ["ceph"], indirect=True)  # moto ignores bucket policies
def test_storage_access_denied_stops_the_range_at_once(
    proxy: S3FaultProxy, any_s3_bucket: str, replay: ReplayServer, tmp_path: Path
) -> None:
    bucket = any_s3_bucket
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}  # fmt: skip
    boto3.client("s3").put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]})
    )
    store = stores.S3Store(bucket, boto3.client("s3"), PREFIX)
    store.preflight(PREFIX)  # listing is allowed: only the first write finds out
    with pytest.raises(stores.StorageAccessError) as error:
        backfill(replay, store, tmp_path)
    message = str(error.value)
    assert f"S3 refused to write s3://{bucket}/lake/usa: AccessDenied (HTTP 403)" in message
    assert "Check the IAM policy" in message and "no further day was started" in message
    assert proxy.served["PUT 403"] <= 2  # the days in flight, not one per day of the range
    assert replay.stats()["requests"] <= IN_FLIGHT


@reliability(
    "Storage",
    "wrong AWS secret key against Ceph RGW (SigV4 enforced)",
    "refused before any fetch: SignatureDoesNotMatch, 'check the credentials'",
)
def test_storage_wrong_secret_is_a_clear_authentication_error(
    request: pytest.FixtureRequest, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3_server(request, "ceph")
    bucket = new_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = stores.S3Store(bucket, boto3.session.Session().client("s3"), PREFIX)
    with pytest.raises(stores.StorageAccessError) as error:
        store.preflight(PREFIX)
    assert "SignatureDoesNotMatch (HTTP 403)" in str(error.value)
    assert "check the credentials" in str(error.value)
    assert "not-the-secret" not in str(error.value)  # never echo a secret


@reliability(
    "Storage",
    "AWS_ENDPOINT_URL points at a port where no S3 server listens",
    "refused before any fetch: StorageAccessError naming the endpoint and what to check",
)
def test_storage_unreachable_endpoint_is_refused_before_fetching(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    # Two attempts instead of six: the backoff between attempts is all the test would spend
    # its time on, and botocore's retrying is not what is tested here.
    monkeypatch.setattr(stores, "S3_MAX_ATTEMPTS", 2)
    settings = load_settings(
        {"API_URL": replay.url, "BUCKET_NAME": "lake-bucket", "PREFIX": PREFIX}
    )
    result = materialize_days(build_definitions(settings), "2021-01-05")
    assert failure_message(result).startswith(
        f"could not reach S3 at {endpoint} to list s3://lake-bucket/{PREFIX}: "
        "EndpointConnectionError. Check AWS_ENDPOINT_URL and AWS_REGION, the network, and "
        "AWS_CA_BUNDLE if the endpoint uses a private CA."
    )
    assert replay.stats()["requests"] == 0  # nothing fetched, and the step was not retried


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator:
    """Mount a small tmpfs (size in KiB, optionally read-only) at a folder of the test's."""
    mounted: list[Path] = []

    def mount(name: str, size_kib: int, read_only: bool = False) -> Path:
        path = tmp_path / name
        path.mkdir()
        options = f"size={size_kib}k,mode=0755" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


@reliability(
    "Storage",
    "the local disk fills up during a backfill (a 400 KiB tmpfs)",
    "stops at once: StorageAccessError 'the disk is full', names the days written; "
    "files whole, no temporary files",
)
def test_storage_full_disk_stops_with_whole_files(
    mount_tmpfs, replay: ReplayServer, tmp_path: Path
) -> None:
    warehouse = mount_tmpfs("warehouse", 400)  # a January 2021 day is about 140 KB
    store = stores.LocalStore(warehouse)
    staging = tmp_path / "staging"  # on the ordinary disk, as Lambda's /tmp is
    staging.mkdir()
    with pytest.raises(stores.StorageAccessError) as error:
        backfill(replay, store, staging)
    message = str(error.value)
    assert f"cannot write under the warehouse {warehouse}" in message
    assert "the disk is full" in message and "Free space or fix the folder" in message
    written = sorted(store.days(PREFIX))
    assert 1 <= len(written) <= 3 and f"{len(written)} of 10 days were written" in message
    assert_days_match_replay(store, PREFIX, written)
    leftovers = [p.name for p in warehouse.rglob("*") if p.is_file() and p.name != "data.parquet"]
    assert leftovers == []


@reliability(
    "Storage",
    "the Lambda's staging directory (/tmp) is full (a 64 KiB tmpfs; moto)",
    "stops at once: StorageAccessError 'the disk is full' naming the staging directory "
    "and EphemeralStorage; nothing uploaded, nothing left in /tmp",
)
@pytest.mark.parametrize("s3_server", ["moto"], indirect=True)
def test_storage_full_staging_directory_stops_the_range(
    mount_tmpfs, any_s3_bucket: str, replay: ReplayServer
) -> None:
    staging = mount_tmpfs("tmp", 64)  # a January 2021 day is about 140 KB: none fits
    store = stores.S3Store(any_s3_bucket, boto3.client("s3"), PREFIX)
    with pytest.raises(stores.StorageAccessError) as error:
        backfill(replay, store, staging)
    message = str(error.value)
    assert f"cannot write under the staging directory {staging}" in message
    assert "the disk is full" in message and "EphemeralStorage" in message
    assert "0 of 10 days were written before it" in message
    assert list(store.days(PREFIX)) == [] and list(staging.iterdir()) == []
    assert replay.stats()["requests"] <= IN_FLIGHT  # no further day started


@reliability(
    "Storage",
    "WAREHOUSE_DIR is on a read-only file system (Dagster asset)",
    "refused before any fetch: the run fails naming the warehouse, 'read-only', no retry",
)
def test_storage_unwritable_warehouse_fails_the_run_before_fetching(
    mount_tmpfs, replay: ReplayServer
) -> None:
    warehouse = mount_tmpfs("readonly", 64, read_only=True)
    settings = load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(warehouse)})
    defs = build_definitions(settings)
    result = materialize_days(defs, "2021-01-05")
    message = failure_message(result)
    assert f"cannot write under the warehouse {warehouse}" in message
    assert "the file system is read-only" in message
    assert replay.stats()["requests"] == 0  # nothing fetched, and the step was not retried


@reliability(
    "Storage",
    "S3 answers 503 SlowDown to a burst of PUTs from the Dagster IO manager (moto)",
    "recovered: the run succeeds, every day materialized and written",
)
@pytest.mark.parametrize("s3_server", ["moto"], indirect=True)
def test_storage_io_manager_rides_out_slowdown(
    proxy: S3FaultProxy, any_s3_bucket: str, replay: ReplayServer
) -> None:
    proxy.slowdowns = 3
    settings = load_settings(
        {"API_URL": replay.url, "BUCKET_NAME": any_s3_bucket, "PREFIX": PREFIX}
    )
    result = materialize_days(build_definitions(settings), "2021-01-01", "2021-01-05")
    assert result.success
    assert proxy.served["PUT 503"] == 3 and proxy.served["PUT 200"] == 5
    assert len(result.asset_materializations_for_node("covid_daily_reports")) == 5


@reliability(
    "Storage",
    "WAREHOUSE_DIR names a file, not a folder",
    "refused before any fetch: StorageAccessError 'a file stands where a folder belongs'",
)
def test_storage_warehouse_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "warehouse").write_text("not a folder")
    with pytest.raises(stores.StorageAccessError, match="a file stands where a folder belongs"):
        stores.LocalStore(tmp_path / "warehouse").preflight(PREFIX)
