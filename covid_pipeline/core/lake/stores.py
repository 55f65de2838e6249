"""The places that hold files by key, an S3 bucket or a local directory, written atomically.

S3 shows an object only once its upload is complete; locally a file is written beside its
final name and renamed over it (a process killed before the rename leaves a hidden temporary
file, which the next write of that folder removes). Re-writing a key replaces its file, so
backfills never duplicate data.

A store that cannot be written at all (no such bucket, access denied, bad credentials, a full
or read-only disk) raises `StorageAccessError`: every other day would fail the same way, so
callers stop at once instead of trying each day, and `preflight` finds most of these before
anything is fetched.
"""

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import botocore.exceptions
from botocore.config import Config

from covid_pipeline.core.lake.layout import DAY_FILES, DAY_FOLDERS, day_of, partition_key, s3_uri

_CONTENT_TYPE = "application/vnd.apache.parquet"

# S3 error codes that no retry or other day can get past: the bucket, the credentials or the
# policy is wrong. (botocore itself retries throttling such as 503 SlowDown, and 5xx.)
_FATAL_S3_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
    }
)
# Local errors that every day would meet too: the warehouse cannot be written.
_FATAL_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
# A file where a folder belongs is fatal at the warehouse's root, but at one day's folder it
# is that day's problem alone.
_FATAL_AT_ROOT_ERRNOS = _FATAL_ERRNOS | {errno.ENOTDIR, errno.EEXIST}
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-")  # .tmp-<pid>-...: whose write it was
S3_PAGE_KEYS = 1000  # the most keys one LIST returns


# Attempts per S3 request, the first included, for every S3 client of the project. S3 answers
# bursts with 503 SlowDown and botocore's standard mode backs off exponentially with jitter,
# but its default of 3 attempts gave up on a day hit by 3 SlowDowns in a row in the tests.
S3_MAX_ATTEMPTS = 6


def s3_client_config(pool_connections: int = 10) -> Config:
    """The configuration of an S3 client that writes `pool_connections` days at once."""
    return Config(
        retries={"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS},
        max_pool_connections=max(10, pool_connections),  # boto3's default pool holds 10
    )


class StorageAccessError(Exception):
    """The store cannot be written at all; the message names where and what to check."""


@dataclass(frozen=True)
class StoredFile:
    """A day's file as a listing shows it: no read of the file itself."""

    day: str
    key: str
    uri: str
    bytes: int
    modified: float  # POSIX seconds: S3's LastModified, or the local file's mtime


@dataclass(frozen=True)
class Listing:
    """One page of a prefix's day files, and where the next page starts."""

    files: list[StoredFile]
    resume_after: str | None  # the last key listed; None: the listing reached the end


class Store(Protocol):
    """A place that holds files by key: an S3 bucket or a local directory."""

    def uri(self, key: str) -> str:
        """The key as a URI a person or another tool can open."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically, replacing what was there."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key` atomically, replacing what was there."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there is no such file."""
        ...

    def days(self, prefix: str) -> Iterator[str]:
        """The days that have a file under `prefix`."""
        ...

    def list_files(self, prefix: str, after: str | None, limit: int) -> Listing:
        """Up to `limit` day files under `prefix` in key order, from the first key past `after`.

        On S3 one LIST request (`limit` at most 1,000, S3's page).
        """
        ...

    def preflight(self, prefix: str) -> None:
        """Raise StorageAccessError now if files under `prefix` clearly cannot be written."""
        ...


class LocalStore:
    """Files under a local directory, written to a temporary name and renamed into place."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()  # URIs in metadata must not depend on the cwd

    def uri(self, key: str) -> str:  # noqa: D102
        return str(self.root / key)

    def put(self, key: str, data: bytes) -> None:  # noqa: D102
        path = self.root / key
        with self._fatal_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_dead_writers_files(path.parent)
            # Same directory, so the rename is atomic; a dot name, so readers of *.parquet
            # skip it; our pid in it, so a later write can tell a dead writer's leftover.
            handle, temporary = tempfile.mkstemp(
                dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=".parquet.tmp"
            )
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def put_file(self, key: str, path: Path) -> None:  # noqa: D102
        self.put(key, path.read_bytes())

    def get(self, key: str) -> bytes | None:  # noqa: D102
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def days(self, prefix: str) -> Iterator[str]:  # noqa: D102
        base = self.root / prefix
        for path in sorted(base.glob(DAY_FILES)):
            day = day_of(path.relative_to(base).as_posix())
            if day is not None:
                yield day

    def list_files(self, prefix: str, after: str | None, limit: int) -> Listing:  # noqa: D102
        keyed = [(day, partition_key(prefix, day)) for day in self.days(prefix)]
        keyed = [(day, key) for day, key in keyed if after is None or key > after]
        files = []
        for day, key in keyed[:limit]:
            try:
                status = (self.root / key).stat()
            except FileNotFoundError:
                continue  # removed since the folder was read
            files.append(StoredFile(day, key, self.uri(key), status.st_size, status.st_mtime))
        return Listing(files, keyed[limit - 1][1] if len(keyed) > limit else None)

    def preflight(self, prefix: str) -> None:
        """Create the prefix's folder and a file in it, then remove the file."""
        folder = self.root / prefix
        with self._fatal_errors(folder, _FATAL_AT_ROOT_ERRNOS):
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass

    def _fatal_errors(
        self, path: Path, fatal: frozenset[int] = _FATAL_ERRNOS
    ) -> contextlib.AbstractContextManager[None]:
        return fatal_local_errors(f"the warehouse {self.root}", path, _WAREHOUSE_ADVICE, fatal)


_WAREHOUSE_ADVICE = (
    "Free space or fix the folder (WAREHOUSE_DIR), then re-run the same range: days already "
    "written are whole and are overwritten."
)
_LOCAL_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a file stands where a folder belongs",
    errno.EEXIST: "a file stands where a folder belongs",
}


@contextlib.contextmanager
def fatal_local_errors(
    where: str, path: Path, advice: str, fatal: frozenset[int] = _FATAL_ERRNOS
) -> Iterator[None]:
    """Turn the OSErrors in `fatal` into a StorageAccessError naming `where`, `path`, `advice`."""
    try:
        yield
    except OSError as error:
        if error.errno not in fatal:
            raise
        cause = _LOCAL_CAUSES.get(error.errno, "permission denied")
        raise StorageAccessError(
            f"cannot write under {where} ({path}): {cause} [{error.strerror}]. {advice}"
        ) from None


def _remove_dead_writers_files(folder: Path) -> None:
    """Delete temporary files left by writers that were killed before their rename."""
    for entry in os.scandir(folder):
        match = _TEMPORARY.match(entry.name)
        if match and not _alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


class S3Store:
    """Objects in an S3 bucket (any S3-compatible server: boto3 honours AWS_ENDPOINT_URL)."""

    def __init__(self, bucket: str, client: Any, prefix: str = "") -> None:
        self.bucket = bucket
        self.client = client
        self.prefix = prefix  # named in error messages only

    def uri(self, key: str) -> str:  # noqa: D102
        return s3_uri(self.bucket, key)

    def put(self, key: str, data: bytes) -> None:  # noqa: D102
        # A single PUT of the whole body: S3 makes the object visible only once it is complete.
        with self._fatal_errors("write"):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=_CONTENT_TYPE
            )

    def put_file(self, key: str, path: Path) -> None:  # noqa: D102
        # One PUT streamed from the file (a day is well under S3's 5 GB single-PUT limit).
        # upload_file would start a transfer manager and its threads for every day.
        with path.open("rb") as body, self._fatal_errors("write"):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=_CONTENT_TYPE
            )

    def get(self, key: str) -> bytes | None:  # noqa: D102
        with self._fatal_errors("read"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                return None
            data: bytes = response["Body"].read()
            return data

    def days(self, prefix: str) -> Iterator[str]:  # noqa: D102
        after = None
        while True:  # a page at a time: the one place S3's keys are read as days
            listing = self.list_files(prefix, after, S3_PAGE_KEYS)
            yield from (file.day for file in listing.files)
            if listing.resume_after is None:
                return
            after = listing.resume_after

    def list_files(self, prefix: str, after: str | None, limit: int) -> Listing:  # noqa: D102
        base = f"{prefix}/" if prefix else ""
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": f"{base}{DAY_FOLDERS}",
            "MaxKeys": limit,
        }
        if after is not None:
            request["StartAfter"] = after
        with self._fatal_errors("list"):
            answer = self.client.list_objects_v2(**request)
        entries = answer.get("Contents", [])
        files = []
        for entry in entries:
            day = day_of(entry["Key"][len(base) :])
            if day is not None:
                modified = entry["LastModified"].timestamp()
                files.append(
                    StoredFile(day, entry["Key"], self.uri(entry["Key"]), entry["Size"], modified)
                )
        truncated = answer.get("IsTruncated", False) and entries
        return Listing(files, entries[-1]["Key"] if truncated else None)

    def preflight(self, prefix: str) -> None:
        """List one key under the prefix: finds a missing bucket, bad keys, a wrong endpoint.

        Listing is what the Lambda's role may do under its prefix; a policy that allows it but
        denies writing is only found by the first write, which then stops the run.
        """
        try:
            with self._fatal_errors("list"):
                self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{prefix}/", MaxKeys=1)
        except botocore.exceptions.ConnectionError as error:
            # Fatal here only: botocore has already retried, and nothing has been written yet.
            # Later, a lost connection is one day's failure, which a re-run redoes.
            raise StorageAccessError(
                f"could not reach S3 at {self.client.meta.endpoint_url} to list "
                f"s3://{self.bucket}/{self.prefix}: {type(error).__name__}. Check "
                "AWS_ENDPOINT_URL and AWS_REGION, the network, and AWS_CA_BUNDLE if the "
                "endpoint uses a private CA."
            ) from error

    @contextlib.contextmanager
    def _fatal_errors(self, action: str) -> Iterator[None]:
        where = f"s3://{self.bucket}/{self.prefix}"
        try:
            yield
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in _FATAL_S3_CODES:
                raise
            raise StorageAccessError(
                f"S3 refused to {action} {where}: {code} "
                f"(HTTP {error.response.get('ResponseMetadata', {}).get('HTTPStatusCode')}). "
                f"{_S3_ADVICE.get(code, _S3_ADVICE['AccessDenied'])}"
            ) from None
        except botocore.exceptions.NoCredentialsError:
            raise StorageAccessError(
                f"no AWS credentials to {action} {where}: set AWS_PROFILE, or run with an "
                "IAM role (Lambda, ECS, EC2)"
            ) from None


_S3_ADVICE = {
    "NoSuchBucket": "Check BUCKET_NAME (and AWS_REGION); create the bucket first "
    "(infra/template.yaml does).",
    "InvalidBucketName": "Check BUCKET_NAME.",
    "InvalidAccessKeyId": "The access key is unknown to this endpoint: check the credentials "
    "(AWS_PROFILE, AWS_ACCESS_KEY_ID) and AWS_ENDPOINT_URL.",
    "SignatureDoesNotMatch": "The secret key does not match the access key: check the "
    "credentials (AWS_PROFILE, AWS_SECRET_ACCESS_KEY).",
    "ExpiredToken": "The session credentials have expired: refresh them.",
    "InvalidToken": "The session token is invalid: refresh the credentials.",
    "AccessDenied": "Check the IAM policy: it needs s3:ListBucket on the prefix and "
    "s3:GetObject and s3:PutObject under it (infra/template.yaml grants exactly these).",
}
