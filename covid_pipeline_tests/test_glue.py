"""Direct Glue registration against moto's Glue in server mode (it implements these calls)."""

import boto3
import pytest

from covid_pipeline.core.glue import (
    GlueCatalogError,
    glue_columns,
    glue_type,
    register_partitions,
    registered_days,
)
from covid_pipeline.core.transform import SCHEMA

LOCATION = "s3://lake/covid_daily_reports/usa/"


@pytest.fixture
def glue(aws: str):
    return boto3.client("glue")


def days(n: int) -> list[str]:
    return [f"2021-{month:02d}-{day:02d}" for month in range(1, 13) for day in range(1, 29)][:n]


def test_glue_types_follow_the_schema() -> None:
    assert glue_type(SCHEMA.field("confirmed").type) == "bigint"
    assert glue_type(SCHEMA.field("report_date").type) == "date"
    assert glue_type(SCHEMA.field("cities").type) == (
        "array<struct<name:string,fips:bigint,lat:double,long:double,confirmed:bigint,"
        "deaths:bigint,confirmed_diff:bigint,deaths_diff:bigint,last_update:timestamp>>"
    )
    assert [c["Name"] for c in glue_columns()] == SCHEMA.names


def test_glue_registration_creates_table_and_one_partition_per_day(glue) -> None:
    written = days(250)  # more than two batches of 100
    result = register_partitions(glue, "covid", "reports_usa", LOCATION, written)
    assert (result.table_created, result.partitions_created, result.partitions_total) == (
        True,
        250,
        250,
    )
    table = glue.get_table(DatabaseName="covid", Name="reports_usa")["Table"]
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    assert table["StorageDescriptor"]["Location"] == LOCATION
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith(
        "ParquetHiveSerDe"
    )
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == SCHEMA.names
    assert registered_days(glue, "covid", "reports_usa") == sorted(written)
    partition = glue.get_partition(
        DatabaseName="covid", TableName="reports_usa", PartitionValues=["2021-01-15"]
    )["Partition"]
    assert partition["StorageDescriptor"]["Location"] == f"{LOCATION}date=2021-01-15/"


def test_glue_registration_is_idempotent_and_adds_only_new_days(glue) -> None:
    register_partitions(glue, "covid", "reports_usa", LOCATION, days(30))
    again = register_partitions(glue, "covid", "reports_usa", LOCATION, days(30))
    assert (again.table_created, again.partitions_created, again.partitions_total) == (False, 0, 30)
    more = register_partitions(glue, "covid", "reports_usa", LOCATION, days(35))
    assert (more.partitions_created, more.partitions_total) == (5, 35)
    assert registered_days(glue, "covid", "reports_usa") == days(35)


def test_glue_registration_refuses_a_table_of_another_shape(glue) -> None:
    glue.create_database(DatabaseInput={"Name": "covid"})
    glue.create_table(
        DatabaseName="covid",
        TableInput={
            "Name": "reports_usa",
            "StorageDescriptor": {"Columns": [{"Name": "x", "Type": "int"}], "Location": LOCATION},
        },
    )
    with pytest.raises(GlueCatalogError, match="exists with other columns"):
        register_partitions(glue, "covid", "reports_usa", LOCATION, days(3))
    assert registered_days(glue, "covid", "reports_usa") == []


def test_glue_registration_refuses_a_table_elsewhere(glue) -> None:
    register_partitions(glue, "covid", "reports_usa", LOCATION, days(1))
    with pytest.raises(GlueCatalogError, match="points at s3://lake/covid_daily_reports/usa/"):
        register_partitions(glue, "covid", "reports_usa", "s3://lake/other/", days(1))
