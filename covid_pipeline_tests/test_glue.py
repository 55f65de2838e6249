"""Direct Glue registration against moto's Glue in server mode (it implements these calls)."""

from typing import Any

import boto3
import pytest

from covid_pipeline.core.catalog.glue import (
    GlueCatalogError,
    Projection,
    glue_columns,
    glue_type,
    project_table,
    projection_parameters,
    register_partitions,
    registered_days,
)
from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline_tests.support.project import infra_template

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


def _create_table_of_another_shape(glue: Any, name: str) -> None:
    glue.create_table(
        DatabaseName="covid",
        TableInput={
            "Name": name,
            "StorageDescriptor": {"Columns": [{"Name": "x", "Type": "int"}], "Location": LOCATION},
        },
    )


def test_glue_registration_refuses_a_table_of_another_shape(glue) -> None:
    glue.create_database(DatabaseInput={"Name": "covid"})
    _create_table_of_another_shape(glue, "reports_usa")
    with pytest.raises(GlueCatalogError, match="exists with other columns"):
        register_partitions(glue, "covid", "reports_usa", LOCATION, days(3))
    assert registered_days(glue, "covid", "reports_usa") == []


def test_glue_registration_refuses_a_table_elsewhere(glue) -> None:
    register_partitions(glue, "covid", "reports_usa", LOCATION, days(1))
    with pytest.raises(GlueCatalogError, match="points at s3://lake/covid_daily_reports/usa/"):
        register_partitions(glue, "covid", "reports_usa", "s3://lake/other/", days(1))


PROJECTION = {
    "classification": "parquet",
    "EXTERNAL": "TRUE",
    "projection.enabled": "true",
    "projection.date.type": "date",
    "projection.date.format": "yyyy-MM-dd",
    "projection.date.range": "2020-01-22,2023-03-09",
    "projection.date.interval": "1",
    "projection.date.interval.unit": "DAYS",
    "storage.location.template": f"{LOCATION}date=${{date}}/",
}


def project(glue):
    return project_table(glue, "covid", "reports", LOCATION, "2020-01-22", "2023-03-09")


def test_glue_projection_declares_the_table_with_exactly_these_parameters(glue) -> None:
    assert project(glue) == Projection(table_created=True, parameters_updated=False)
    table = glue.get_table(DatabaseName="covid", Name="reports")["Table"]
    assert table["Parameters"] == PROJECTION
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    assert table["StorageDescriptor"]["Location"] == LOCATION
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == SCHEMA.names
    # No crawler, no per-day call: not one partition is registered.
    assert registered_days(glue, "covid", "reports") == []


def test_glue_projection_is_idempotent(glue) -> None:
    project(glue)
    assert project(glue) == Projection(table_created=False, parameters_updated=False)


def test_glue_projection_sets_projection_on_a_table_of_the_right_shape(glue) -> None:
    register_partitions(glue, "covid", "reports", LOCATION, days(3))  # a glue_partitions table
    assert project(glue) == Projection(table_created=False, parameters_updated=True)
    table = glue.get_table(DatabaseName="covid", Name="reports")["Table"]
    assert table["Parameters"] == PROJECTION
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == SCHEMA.names


def test_glue_projection_refuses_a_table_of_another_shape_or_place(glue) -> None:
    register_partitions(glue, "covid", "reports", "s3://lake/other/", days(1))
    with pytest.raises(GlueCatalogError, match="points at s3://lake/other/"):
        project(glue)
    _create_table_of_another_shape(glue, "odd")
    with pytest.raises(GlueCatalogError, match="exists with other columns"):
        project_table(glue, "covid", "odd", LOCATION, "2020-01-22", "2023-03-09")
    assert "projection.enabled" not in glue.get_table(DatabaseName="covid", Name="odd")[
        "Table"
    ].get("Parameters", {})


def test_glue_projection_of_the_infra_template_is_the_pipelines() -> None:
    """infra/template.yaml's projected table: the columns and parameters project_table sets."""
    template = infra_template()
    table = template["Resources"]["ProjectedTable"]["Properties"]["TableInput"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [(c["Name"], c["Type"]) for c in glue_columns()]
    location = "s3://${BucketName}/${Prefix}/"
    assert table["StorageDescriptor"]["Location"] == location
    expected = projection_parameters(location, "2020-01-22", "2023-03-09")
    expected["storage.location.template"] = expected["storage.location.template"].replace(
        "${date}",
        "${!date}",  # !Sub's escape for a literal ${date}
    )
    assert table["Parameters"] == expected
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
