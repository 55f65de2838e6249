"""The tools a data engineer would pick instead, each written the way its docs suggest.

Run by bench.py in the peers' own virtualenv (.venv-peers, pinned in peers.lock), never with the
project's dependencies: `python benchmarks/peers.py VARIANT`. Each variant backfills the same
days from the same replay API into the same S3 server, FETCH_CONCURRENCY requests in flight,
as the project does. Settings come from the environment: API_URL, ISO_CODE, FIRST_DAY,
LAST_DAY, FETCH_CONCURRENCY, BUCKET_NAME, PEER_PREFIX, AWS_ENDPOINT_URL, and PEER_DIR (the
local directory of the *_local variants).

  pyarrow_per_day   requests + pyarrow: each day written as one Parquet file as it arrives
  pyarrow_dataset   requests + pyarrow: every day fetched, then one write_dataset (hive)
  awswrangler       requests + pandas, then wr.s3.to_parquet(dataset=True, partition_cols)
  dlt               a dlt resource with parallel (deferred) fetches, filesystem destination
  pyarrow_per_day_local, pyarrow_dataset_local
                    the same two writing to PEER_DIR
  pandas_local      requests + pandas, then DataFrame.to_parquet(partition_cols) into PEER_DIR
                    (awswrangler's call without S3: awswrangler refuses local paths)
"""

import datetime as dt
import io
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import requests

API_URL = os.environ["API_URL"]
ISO = os.environ["ISO_CODE"]
FIRST = dt.date.fromisoformat(os.environ["FIRST_DAY"])
LAST = dt.date.fromisoformat(os.environ["LAST_DAY"])
CONCURRENCY = int(os.environ["FETCH_CONCURRENCY"])
BUCKET = os.environ["BUCKET_NAME"]
PREFIX = os.environ["PEER_PREFIX"]
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
LOCAL = os.environ.get("PEER_DIR", "")  # the *_local variants' directory


def days() -> list[str]:
    """FIRST..LAST, both included."""
    return [str(FIRST + dt.timedelta(days=n)) for n in range((LAST - FIRST).days + 1)]


_session = requests.Session()
_session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CONCURRENCY))


def fetch(day: str) -> list[dict]:
    """One day's records, as the API sends them."""
    response = _session.get(f"{API_URL}/reports", params={"date": day, "iso": ISO}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def pyarrow_per_day() -> None:
    """Each day as it arrives: records -> Table.from_pylist -> Parquet -> one PUT."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = None if LOCAL else boto3.client("s3", config=_pool(CONCURRENCY))

    def backfill(day: str) -> None:
        records = fetch(day)
        if not records:
            return
        key = f"{PREFIX}/date={day}/data.parquet"
        if s3 is None:  # local: pyarrow writes the file itself
            os.makedirs(os.path.dirname(f"{LOCAL}/{key}"), exist_ok=True)
            pq.write_table(pa.Table.from_pylist(records), f"{LOCAL}/{key}", compression="snappy")
            return
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records), buffer, compression="snappy")
        s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(backfill, days()))


def pyarrow_dataset() -> None:
    """Every day fetched, then one write_dataset partitioned by date (hive), straight to S3."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyarrow import fs

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        tables = [pa.Table.from_pylist(records) for records in pool.map(fetch, days()) if records]
    table = pa.concat_tables(tables, promote_options="permissive")
    if LOCAL:
        where, filesystem = f"{LOCAL}/{PREFIX}", fs.LocalFileSystem()
    else:
        where = f"{BUCKET}/{PREFIX}"
        filesystem = fs.S3FileSystem(endpoint_override=ENDPOINT, region="us-east-1")
    ds.write_dataset(
        table,
        where,
        filesystem=filesystem,
        format="parquet",
        partitioning=["date"],
        partitioning_flavor="hive",
        existing_data_behavior="delete_matching",
        max_rows_per_group=1 << 20,
    )


def awswrangler() -> None:
    """Every day fetched into pandas, then one to_parquet(dataset=True, partition_cols=[date])."""
    import awswrangler as wr
    import pandas as pd

    wr.config.s3_endpoint_url = ENDPOINT
    session = boto3.Session()  # without one, awswrangler builds a client per partition
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        frames = [pd.DataFrame(records) for records in pool.map(fetch, days()) if records]
    wr.s3.to_parquet(
        pd.concat(frames, ignore_index=True),
        path=f"s3://{BUCKET}/{PREFIX}/",
        dataset=True,
        partition_cols=["date"],
        mode="overwrite_partitions",
        boto3_session=session,
    )


def pandas_local() -> None:
    """Every day fetched into pandas, then one to_parquet(partition_cols=[date]) locally."""
    import pandas as pd

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        frames = [pd.DataFrame(records) for records in pool.map(fetch, days()) if records]
    pd.concat(frames, ignore_index=True).to_parquet(
        f"{LOCAL}/{PREFIX}", partition_cols=["date"], compression="snappy"
    )


def dlt() -> None:
    """A resource whose fetches run in parallel (dlt.defer), loaded as Parquet to S3."""
    import dlt as dlt_module

    os.environ["EXTRACT__WORKERS"] = str(CONCURRENCY)  # deferred fetches in flight

    # Without the hint dlt types fatality_rate from the first days' integer 0 as bigint and
    # puts later decimals in a variant column; every other type it infers right.
    hints = {"fatality_rate": {"data_type": "double"}}

    @dlt_module.resource(name="reports", write_disposition="append", columns=hints)
    def reports() -> Iterator:
        for day in days():
            yield _deferred_fetch(day)

    @dlt_module.defer
    def _deferred_fetch(day: str) -> list[dict]:
        return fetch(day)

    destination = dlt_module.destinations.filesystem(
        bucket_url=f"s3://{BUCKET}/{PREFIX}",
        credentials={
            "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "endpoint_url": ENDPOINT,
            "region_name": "us-east-1",
        },
    )
    pipeline = dlt_module.pipeline(
        pipeline_name="covid_bench",
        pipelines_dir=os.environ["DLT_PIPELINES_DIR"],
        destination=destination,
        dataset_name="covid",
    )
    pipeline.run(reports(), loader_file_format="parquet")


def _pool(connections: int) -> object:
    from botocore.config import Config

    return Config(max_pool_connections=max(10, connections))


VARIANTS = {
    "pyarrow_per_day": pyarrow_per_day,
    "pyarrow_dataset": pyarrow_dataset,
    "awswrangler": awswrangler,
    "dlt": dlt,
    "pyarrow_per_day_local": pyarrow_per_day,  # PEER_DIR set: the same code, to local files
    "pyarrow_dataset_local": pyarrow_dataset,
    "pandas_local": pandas_local,
}

if __name__ == "__main__":
    VARIANTS[sys.argv[1]]()
