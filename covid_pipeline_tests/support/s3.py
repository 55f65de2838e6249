"""The S3 servers the tests run against (moto, Ceph RGW), and what a bucket holds."""

import uuid
from dataclasses import dataclass

import boto3
import pytest


def new_bucket() -> str:
    """A fresh, empty bucket on the S3 server that AWS_ENDPOINT_URL points at."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@dataclass(frozen=True)
class S3Server:
    """An S3 server the tests write to, with the credentials it accepts."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str


S3_SERVERS = ("moto", "ceph")


def use_s3_server(request: pytest.FixtureRequest, name: str) -> S3Server:
    """Point boto3 (AWS_ENDPOINT_URL and credentials) at the S3 server `name`, for one test.

    moto stands in for S3's API; Ceph RGW is a real implementation that checks signatures.
    """
    if name == "moto":
        server = S3Server("moto", request.getfixturevalue("aws"), "testing", "testing")
    else:
        from covid_pipeline_tests.support.ceph_rgw import ACCESS_KEY, SECRET_KEY

        rgw = request.getfixturevalue("ceph_rgw")
        server = S3Server("ceph", rgw.endpoint, ACCESS_KEY, SECRET_KEY)
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    # boto3's default session keeps the credentials it first found: start a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return server


def s3_keys(bucket: str) -> dict[str, str]:
    """Every key in the bucket with its ETag."""
    paginator = boto3.client("s3").get_paginator("list_objects_v2")
    return {
        item["Key"]: item["ETag"]
        for page in paginator.paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    }


def days_under(bucket: str, prefix: str) -> list[str]:
    """The days that have a file under `prefix/` in the bucket, in order."""
    return sorted(
        key.split("date=")[1][:10] for key in s3_keys(bucket) if key.startswith(f"{prefix}/")
    )
