"""Where each day's Parquet file lives, and writing it there atomically.

The layout is fixed by the design: `<prefix>/date=YYYY-MM-DD/data.parquet`, under
`s3://<bucket>/` or under a local warehouse directory. Hive-style `date=` folders let Glue,
Athena and DuckDB read the day as a partition column. Every writer (the Dagster IO manager,
the Lambda handler) builds keys here, so they agree.

Writes are atomic: S3 shows an object only once its upload is complete; locally the file is
written beside its final name and renamed over it (a process killed before the rename leaves
a hidden temporary file, which the next write of that day removes). Re-running a day replaces
its file, so backfills never duplicate data.

A store that cannot be written at all (no such bucket, access denied, bad credentials, a full
or read-only disk) raises `StorageAccessError`: every other day would fail the same way, so
callers stop at once instead of trying each day, and `preflight` finds most of these before
anything is fetched.
"""

import contextlib
import errno
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import botocore.exceptions
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config

FILE_NAME = "data.parquet"
_CONTENT_TYPE = "application/vnd.apache.parquet"
_DAY_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})/" + re.escape(FILE_NAME) + "$")


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


def partition_key(prefix: str, day: str) -> str:
    """`<prefix>/date=<day>/data.parquet`, the one place the layout is spelled out."""
    return f"{prefix}/date={day}/{FILE_NAME}" if prefix else f"date={day}/{FILE_NAME}"


# Parquet key-value metadata: the country set a file was written for (its label, e.g. CAN,USA).
COUNTRIES_KEY = b"covid_pipeline.countries"


def encode_parquet(table: pa.Table, countries: str) -> bytes:
    """The table as one Snappy-compressed Parquet file, stamped with its country set."""
    buffer = io.BytesIO()
    pq.write_table(_stamped(table, countries), buffer, compression="snappy")
    return buffer.getvalue()


def _stamped(table: pa.Table, countries: str) -> pa.Table:
    return table.replace_schema_metadata({COUNTRIES_KEY: countries.encode()})


def countries_of(table: pa.Table) -> str:
    """The country set a day's file was written for; for older files, the countries in it."""
    stamp = (table.schema.metadata or {}).get(COUNTRIES_KEY)
    if stamp is not None:
        return stamp.decode()
    return countries_in([table])


def countries_in(tables: Iterable[pa.Table]) -> str:
    """The countries the rows of `tables` are of, as a set's label (e.g. CAN,USA)."""
    return ",".join(sorted({iso for table in tables for iso in table["iso"].to_pylist()}))


def decode_parquet(data: bytes) -> pa.Table:
    """The table in a Parquet file's bytes."""
    return pq.read_table(io.BytesIO(data))


@dataclass(frozen=True)
class WrittenFile:
    """What was written for one day."""

    day: str
    uri: str
    rows: int
    bytes: int


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

    def preflight(self, prefix: str) -> None:
        """Raise StorageAccessError now if files under `prefix` clearly cannot be written."""
        ...


def write_day(store: Store, prefix: str, day: str, table: pa.Table, countries: str) -> WrittenFile:
    """Write one day's table as its partition's file, stamped with its country set."""
    key = partition_key(prefix, day)
    data = encode_parquet(table, countries)
    store.put(key, data)
    return WrittenFile(day=day, uri=store.uri(key), rows=table.num_rows, bytes=len(data))


def write_day_via_file(
    store: Store, prefix: str, day: str, table: pa.Table, countries: str, staging_dir: Path
) -> WrittenFile:
    """Write one day's table to a local file first, upload it, then delete the file.

    For Lambda, whose memory is precious and whose /tmp is not: only one encoded day per
    worker ever exists, on disk, and only until it is uploaded.
    """
    key = partition_key(prefix, day)
    path = staging_dir / f"{day}.parquet"
    try:
        # A full /tmp would fail every day alike: stop the range, as a full warehouse does.
        with _fatal_local_errors(f"the staging directory {staging_dir}", path, _STAGING_ADVICE):
            pq.write_table(_stamped(table, countries), path, compression="snappy")
        size = path.stat().st_size
        store.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)
    return WrittenFile(day=day, uri=store.uri(key), rows=table.num_rows, bytes=size)


def check_ready(store: Store, prefix: str, countries: str) -> None:
    """Before anything is fetched: the store can be written, and the prefix is this set's.

    Raises:
        StorageAccessError: the store clearly cannot be written (see Store.preflight), or
            (CountrySetMismatch) the prefix holds another country set's files.
    """
    store.preflight(prefix)
    check_country_set(store, prefix, countries)


class CountrySetMismatch(StorageAccessError):
    """The prefix holds files of another country set; writing there would mix two sets."""


def check_country_set(store: Store, prefix: str, countries: str) -> None:
    """Refuse a prefix that already holds files written for another country set.

    One prefix holds one set, so that no day's file and no query mixes two (a day written for
    USA beside a day written for USA,CAN would look like Canada had no data). One existing
    file is read: every writer stamps each file with its set.

    Raises:
        CountrySetMismatch: naming both sets and what to do.
    """
    day = next(iter(store.days(prefix)), None)
    table = read_day(store, prefix, day) if day is not None else None
    found = countries_of(table) if table is not None else None
    if found is None or found == countries:
        return
    where = store.uri(prefix)
    raise CountrySetMismatch(
        f"{where} holds files written for {found} (e.g. {day}), and this run is for "
        f"{countries}: one prefix holds one country set, so that no day mixes two. Set "
        f"PREFIX to a folder of this set's own (the default follows ISO_CODE), or set ISO_CODE "
        f"back to {found}."
    )


def read_day(store: Store, prefix: str, day: str) -> pa.Table | None:
    """One day's table, or None when that day has no file (skipped: no data)."""
    data = store.get(partition_key(prefix, day))
    return None if data is None else decode_parquet(data)


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
        for path in sorted(base.glob(f"date=*/{FILE_NAME}")):
            match = _DAY_FOLDER.search(path.relative_to(base).as_posix())
            if match:
                yield match.group(1)

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
        return _fatal_local_errors(f"the warehouse {self.root}", path, _WAREHOUSE_ADVICE, fatal)


_WAREHOUSE_ADVICE = (
    "Free space or fix the folder (WAREHOUSE_DIR), then re-run the same range: days already "
    "written are whole and are overwritten."
)
_STAGING_ADVICE = (
    "Free space there (in Lambda: /tmp, sized by the function's EphemeralStorage), then re-run "
    "the same range: days already written are whole and are overwritten."
)
_LOCAL_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a file stands where a folder belongs",
    errno.EEXIST: "a file stands where a folder belongs",
}


@contextlib.contextmanager
def _fatal_local_errors(
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
        return f"s3://{self.bucket}/{key}"

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
            return response["Body"].read()

    def days(self, prefix: str) -> Iterator[str]:  # noqa: D102
        paginator = self.client.get_paginator("list_objects_v2")
        base = f"{prefix}/" if prefix else ""
        with self._fatal_errors("list"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{base}date="):
                for entry in page.get("Contents", []):
                    match = _DAY_FOLDER.search(entry["Key"][len(base) :])
                    if match:
                        yield match.group(1)

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
