"""Hive layout, atomic writes and reads, on a local directory and on an S3 server over HTTP."""

import datetime as dt
import time
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from covid_pipeline_replay import jhu, volume

from covid_pipeline.core.lake import day_files, layout, parquet, scan, stores
from covid_pipeline.core.schema.transform import SCHEMA, to_table
from covid_pipeline_tests.support.s3 import S3_SERVERS, new_bucket, use_s3_server

DAY = dt.date(2021, 1, 15)


@pytest.fixture(scope="module")
def table():
    return to_table(DAY, jhu.reports("USA", DAY))


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> stores.Store:
    """A local directory, then a bucket on each S3 server (moto and Ceph RGW)."""
    if request.param == "local":
        return stores.LocalStore(tmp_path / "warehouse")
    use_s3_server(request, request.param)
    return stores.S3Store(new_bucket(), boto3.client("s3"))


def test_storage_key_is_the_hive_layout() -> None:
    assert (
        layout.partition_key("covid/usa", "2021-01-15") == "covid/usa/date=2021-01-15/data.parquet"
    )


def test_storage_round_trips_a_day(store: stores.Store, table) -> None:
    written = day_files.write_day(store, "covid/usa", "2021-01-15", table, "USA")
    assert written.uri.endswith("covid/usa/date=2021-01-15/data.parquet")
    assert written.rows == table.num_rows == 56
    back = day_files.read_day(store, "covid/usa", "2021-01-15")
    assert back is not None and back.equals(table)
    # The documented schema, field metadata (descriptions) included, and the file's country set.
    assert back.schema.remove_metadata().equals(SCHEMA, check_metadata=True)
    assert back.schema.metadata == {
        parquet.COUNTRIES_KEY: b"USA",
        parquet.WRITER_KEY: parquet.DIRECT_WRITER.encode(),
    }
    assert parquet.countries_of(back) == "USA"


def test_storage_lists_a_prefix_a_page_at_a_time_with_each_files_writer(
    store: stores.Store, table
) -> None:
    """What the lake sensor reads: pages of day files in key order; a file's rows and writer."""
    days = ["2021-01-15", "2021-01-16", "2021-01-17"]
    before = time.time() - 1  # S3 keeps whole seconds
    for day in days:
        day_files.write_day(store, "p", day, table, "USA", parquet.lambda_writer("f", day))
    store.put("p/notes.txt", b"not a day")  # other keys under the prefix are not days

    first = store.list_files("p", None, 2)
    assert [file.day for file in first.files] == days[:2]
    assert first.resume_after == first.files[-1].key == "p/date=2021-01-16/data.parquet"
    rest = store.list_files("p", first.resume_after, 2)
    assert [file.day for file in rest.files] == days[2:] and rest.resume_after is None
    assert store.list_files("other", None, 2).files == []

    file = rest.files[0]
    assert file.uri == store.uri(file.key) and before <= file.modified <= time.time() + 1
    found = scan.read_day_file(store, file)
    assert found is not None and found.rows == table.num_rows
    assert found.writer == "lambda f request 2021-01-17" and file.bytes > 0
    assert parquet.dagster_run_of(found.writer) is None
    assert parquet.dagster_run_of(parquet.dagster_writer("abc")) == "abc"
    fanned_out = parquet.lambda_writer("f", "r", dagster_run="abc")  # the fan-out's invocations
    assert fanned_out == "dagster run abc (lambda f request r)"
    assert parquet.dagster_run_of(fanned_out) == "abc"


def test_storage_writes_snappy_parquet(table) -> None:
    file = pq.ParquetFile(pa.BufferReader(parquet.encode_parquet(table, "USA")))
    columns = file.metadata.row_group(0)
    assert {columns.column(i).compression for i in range(columns.num_columns)} == {"SNAPPY"}


class CountingStore:
    """A store that counts its reads: the requests a reader makes, on S3."""

    def __init__(self, store: stores.Store) -> None:
        self.store, self.reads = store, 0

    def __getattr__(self, name: str):
        method = getattr(self.store, name)
        if not name.startswith("get"):
            return method

        def counted(*args):
            self.reads += 1
            return method(*args)

        return counted


def test_storage_reads_a_day_in_one_request_and_decodes_only_the_columns_asked_for(
    store: stores.Store,
) -> None:
    """A day at the real API's volume (~3,200 counties), read for the roll-up's columns.

    One GET of the whole file: a ranged read of the columns' bytes saved bytes but cost a
    second request, which took longer (docs/performance.md, "Reading the raw days").
    """
    day = "2021-01-15"
    big = to_table(dt.date.fromisoformat(day), volume.reports("USA", dt.date.fromisoformat(day)))
    day_files.write_day(store, "covid/usa", day, big, "USA")
    counting = CountingStore(store)
    columns = ["iso", "province", "confirmed", "deaths_diff"]
    back = day_files.read_day(counting, "covid/usa", day, columns)  # type: ignore[arg-type]
    assert back is not None and back.equals(big.select(columns))
    assert parquet.countries_of(back) == "USA"  # the file's stamp comes with the columns
    assert counting.reads == 1


def test_storage_overwrites_instead_of_duplicating(store: stores.Store, table) -> None:
    for _ in range(2):
        day_files.write_day(store, "p", "2021-01-15", table, "USA")
    day_files.write_day(store, "p", "2021-01-16", table.slice(0, 3), "USA")
    assert list(store.days("p")) == ["2021-01-15", "2021-01-16"]
    assert day_files.read_day(store, "p", "2021-01-16").num_rows == 3


def test_storage_reads_a_missing_day_as_none(store: stores.Store) -> None:
    assert day_files.read_day(store, "p", "2021-01-15") is None
    assert list(store.days("p")) == []


def test_storage_local_write_leaves_no_temporary_files(tmp_path: Path, table) -> None:
    store = stores.LocalStore(tmp_path)
    day_files.write_day(store, "p", "2021-01-15", table, "USA")
    assert sorted(p.name for p in (tmp_path / "p" / "date=2021-01-15").iterdir()) == [
        "data.parquet"
    ]


def test_storage_local_failed_write_keeps_the_previous_file(tmp_path: Path, table) -> None:
    store = stores.LocalStore(tmp_path)
    day_files.write_day(store, "p", "2021-01-15", table, "USA")
    # A write that breaks halfway (here: a body that cannot be written) must leave the old
    # file whole and no temporary file behind.
    with pytest.raises(TypeError):
        store.put(layout.partition_key("p", "2021-01-15"), object())  # type: ignore[arg-type]
    assert day_files.read_day(store, "p", "2021-01-15").equals(table)
    assert sorted(p.name for p in (tmp_path / "p" / "date=2021-01-15").iterdir()) == [
        "data.parquet"
    ]


def test_storage_country_set_check_passes_over_files_not_ours(store: stores.Store, table) -> None:
    """A stray file at the first day's key neither hides the set nor crashes the check."""
    store.put(layout.partition_key("p", "2021-01-14"), b"<html>502 Bad Gateway</html>")
    day_files.check_country_set(store, "p", "CAN")  # nothing of ours yet: any set may start
    day_files.write_day(store, "p", "2021-01-15", table, "USA")
    day_files.check_country_set(store, "p", "USA")
    with pytest.raises(
        day_files.CountrySetMismatch, match=r"holds files written for USA \(e\.g\. "
    ):
        day_files.check_country_set(store, "p", "CAN")


def test_storage_tells_a_day_of_ours_from_any_other_file(tmp_path: Path, table) -> None:
    ours = parquet.encode_parquet(table, "USA")
    assert parquet.day_footer(ours).num_rows == table.num_rows
    unstamped = tmp_path / "unstamped.parquet"  # files from before the stamps are still ours
    pq.write_table(table.replace_schema_metadata(None), unstamped)
    assert parquet.day_footer(str(unstamped)).num_rows == table.num_rows
    other = tmp_path / "other.parquet"
    pq.write_table(table.drop_columns(["cities"]).append_column("x", pa.array([1] * 56)), other)
    retyped = tmp_path / "retyped.parquet"
    pq.write_table(table.set_column(6, "confirmed", table["confirmed"].cast(pa.float64())), retyped)
    for source, reason in [
        (b"<html></html>", "not a Parquet file"),
        (ours[: len(ours) // 2], "not a Parquet file"),
        (b"", "not a Parquet file"),
        (str(other), "another schema: no column cities"),
        (str(retyped), "another schema: column confirmed is double, not int64"),
        (str(tmp_path / "missing.parquet"), "unreadable: "),
    ]:
        with pytest.raises(parquet.NotADayFile, match=reason):
            parquet.day_footer(source)


def test_storage_a_day_without_rows_written_directly_is_still_a_stamped_file(
    tmp_path: Path,
) -> None:
    """Runs skip such days; a caller that writes one anyway gets a real file, not zero bytes."""
    store = stores.LocalStore(tmp_path)
    written = day_files.write_day(store, "p", "2021-01-15", SCHEMA.empty_table(), "CAN")
    data = store.get(layout.partition_key("p", "2021-01-15"))
    assert data is not None and written.rows == 0 and written.bytes == len(data) > 0
    assert parquet.countries_of(parquet.decode_parquet(data)) == "CAN"
