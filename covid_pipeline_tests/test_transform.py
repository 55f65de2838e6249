"""API records -> one explicit Arrow schema, whatever JSON types the API used that day."""

import copy
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from covid_pipeline_replay import jhu

from covid_pipeline.core.schema.transform import SCHEMA, SchemaError, to_table

SAMPLES = {
    sample["name"]: sample
    for sample in json.loads(
        (Path(__file__).parent / "data" / "covid_api_samples.json").read_text()
    )
}
# Real /reports bodies captured from covid-api.com (see data/README.md for provenance).
REPORT_SAMPLES = [
    ("reports_RUS_2021-02-27_Moscow", dt.date(2021, 2, 27)),
    ("reports_CAN_2020-04-16_excerpt", dt.date(2020, 4, 16)),
    ("reports_USA_2020-04-01_Recovered_excerpt", dt.date(2020, 4, 1)),
    ("reports_EGY_2020-04-16", dt.date(2020, 4, 16)),
]


@pytest.mark.parametrize(("name", "day"), REPORT_SAMPLES)
def test_transform_gives_every_captured_response_the_same_schema(name: str, day: dt.date) -> None:
    records = SAMPLES[name]["body"]["data"]
    table = to_table(day, records)
    assert table.schema.equals(SCHEMA, check_metadata=True)
    assert table.num_rows == len(records)


def test_transform_coerces_the_apis_loose_json_types() -> None:
    [recovered] = SAMPLES["reports_USA_2020-04-01_Recovered_excerpt"]["body"]["data"]
    assert recovered["fatality_rate"] == 0 and isinstance(recovered["fatality_rate"], int)
    row = to_table(dt.date(2020, 4, 1), [recovered]).to_pylist()[0]
    assert isinstance(row["fatality_rate"], float)
    assert (row["lat"], row["long"]) == (0.0, 0.0)  # the API's "0.0" strings
    assert row["active"] == recovered["active"] < 0
    assert row["cities"] == []
    assert row["last_update"] == dt.datetime.fromisoformat(recovered["last_update"])


def test_transform_keeps_full_coordinate_precision() -> None:
    [moscow] = SAMPLES["reports_RUS_2021-02-27_Moscow"]["body"]["data"]
    row = to_table(dt.date(2021, 2, 27), [moscow]).to_pylist()[0]
    assert row["lat"] == float(moscow["region"]["lat"])


def test_transform_nests_counties_with_a_fixed_type() -> None:
    day = dt.date(2021, 1, 15)
    table = to_table(day, jhu.reports("USA", day))
    delaware = next(r for r in table.to_pylist() if r["province"] == "Delaware")
    assert [c["name"] for c in delaware["cities"]] == ["Kent", "New Castle", "Sussex", "Unassigned"]
    assert delaware["cities"][0]["fips"] == 10001
    assert table.schema.field("cities").type == SCHEMA.field("cities").type


def test_transform_has_no_date_column_to_clash_with_the_partition() -> None:
    assert "date" not in SCHEMA.names
    assert SCHEMA.field("report_date").type == pa.date32()


def test_transform_of_no_records_is_an_empty_table_with_the_schema() -> None:
    table = to_table(dt.date(2021, 1, 1), [])
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)


def _ontario() -> dict:
    return copy.deepcopy(SAMPLES["reports_CAN_2020-04-16_excerpt"]["body"]["data"][-1])


def test_transform_ignores_unknown_fields() -> None:
    record = _ontario() | {"hospitalized": 12, "vaccinated": {"new": 1}}
    record["region"]["population"] = 14_000_000
    assert to_table(dt.date(2020, 4, 16), [record]).schema.equals(SCHEMA)


def test_transform_accepts_numbers_sent_as_strings_and_nulls() -> None:
    record = _ontario() | {"confirmed": "9840", "deaths": None, "fatality_rate": "0.0498"}
    row = to_table(dt.date(2020, 4, 16), [record]).to_pylist()[0]
    assert (row["confirmed"], row["deaths"], row["fatality_rate"]) == (9840, None, 0.0498)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "confirmed"}, r"2020-04-16: record 0 \(.*\): missing required field 'confirmed'"),
        ({"drop": "last_update"}, r"missing required field 'last_update'"),
        ({"drop_region": "iso"}, r"missing required field 'region.iso'"),
        ({"set": ("confirmed", 12.5)}, r"field 'confirmed' = 12.5 is not an integer"),
        ({"set": ("deaths", True)}, r"field 'deaths' is a boolean"),
        ({"set": ("last_update", "yesterday")}, r"field 'last_update' = 'yesterday' is not a"),
        ({"set": ("date", "2020-04-15")}, r"dated '2020-04-15', but 2020-04-16 was asked for"),
    ],
)
def test_transform_names_the_day_and_field_that_break_the_schema(
    change: dict, message: str
) -> None:
    record = _ontario()
    if "drop" in change:
        del record[change["drop"]]
    if "drop_region" in change:
        del record["region"][change["drop_region"]]
    if "set" in change:
        name, value = change["set"]
        record[name] = value
    with pytest.raises(SchemaError, match=message):
        to_table(dt.date(2020, 4, 16), [record])
