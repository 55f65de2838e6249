"""Shared fixtures: the replay API and an S3 server, both real HTTP servers on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from covid_pipeline.replay.server import ReplayServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach real AWS: fake keys, a fixed region, no profile from the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name in ("API_URL", "ISO_CODE", "BUCKET_NAME", "PREFIX", "WAREHOUSE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def replay_server() -> Iterator[ReplayServer]:
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
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket; AWS_ENDPOINT_URL points every boto3 client at the server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


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
