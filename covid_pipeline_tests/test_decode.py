"""The fast decoder gives exactly the reference transform's table, or exactly its error."""

import copy
import datetime as dt
import json

import pytest
from covid_pipeline_replay import jhu, volume

from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY, day_range
from covid_pipeline.core.schema import decode, transform
from covid_pipeline.core.schema.transform import SchemaError, to_table

DAY = dt.date(2021, 1, 15)
# Every 9th day of the history, and every day whose US report nests counties.
SAMPLE_DAYS = sorted(set(day_range(FIRST_DAY, LAST_DAY)[::9]) | set(volume.county_days()))


def body(records: list[dict]) -> bytes:
    return json.dumps(records).encode()


def same_as_reference(day: dt.date, records: list[dict]) -> None:
    assert decode.decode_day(day, [body(records)]).equals(
        to_table(day, records), check_metadata=True
    )


@pytest.mark.parametrize("iso", ["USA", "CAN", "CHN"])
def test_decode_equals_the_reference_on_the_replayed_history(iso: str) -> None:
    for day in SAMPLE_DAYS:
        same_as_reference(day, jhu.reports(iso, day))


def test_decode_takes_its_fast_path_on_a_plain_county_day(monkeypatch: pytest.MonkeyPatch) -> None:
    records = jhu.reports("USA", DAY)
    expected = to_table(DAY, records)

    def no_reference(*_: object) -> None:
        raise AssertionError("the fast path handed a plain day to the reference")

    monkeypatch.setattr(transform, "to_table", no_reference)
    table = decode.decode_day(DAY, [body(records)])
    assert table.equals(expected) and table.num_rows == 56
    assert sum(len(cities) for cities in table["cities"].to_pylist()) == 3260


def test_decode_joins_pages_in_order() -> None:
    records = jhu.reports("USA", DAY)
    pages = [body(records[:20]), body(records[20:50]), body(records[50:])]
    assert decode.decode_day(DAY, pages).equals(to_table(DAY, records))


def _delaware() -> dict:
    records = jhu.reports("USA", DAY)
    return copy.deepcopy(next(r for r in records if r["region"]["province"] == "Delaware"))


def _edited(change: str) -> dict:
    """Delaware on 2021-01-15, with one change of the kind APIs drift into."""
    record, city = _delaware(), None
    city = record["region"]["cities"][0]
    edits = {
        "counts as strings": lambda: record.update(confirmed="68727", deaths_diff="5"),
        "null counts": lambda: record.update(confirmed=None, active=None),
        "an integer rate": lambda: record.update(fatality_rate=0),
        "a rate as a string": lambda: record.update(fatality_rate="0.0172"),
        "coordinates as numbers": lambda: record["region"].update(lat=39.3, long=-75.5),
        "empty coordinates": lambda: record["region"].update(lat="", long=""),
        "no coordinates": lambda: [record["region"].pop(k) for k in ("lat", "long")],
        "cities null": lambda: record["region"].update(cities=None),
        "cities missing": lambda: record["region"].pop("cities"),
        "a county count as a string": lambda: city.update(confirmed="18000"),
        "a county fips as a string": lambda: city.update(fips="10001"),
        "an empty county fips": lambda: city.update(fips=""),
        "a county without a timestamp": lambda: city.pop("last_update"),
        "a timestamp with an offset": lambda: record.update(
            last_update="2021-01-16T07:22:40+02:00"
        ),
        "a timestamp in T form": lambda: record.update(last_update="2021-01-16T05:22:40"),
        "an empty timestamp": lambda: record.update(last_update=""),
        "a null province": lambda: record["region"].update(province=None),
        "unknown fields": lambda: record.update(vaccinated={"new": 1}, hospitalized=3),
        "a float count that is whole": lambda: record.update(confirmed=68727.0),
        "a count beyond 2**53 as a string": lambda: record.update(confirmed="9007199254740993"),
    }
    edits[change]()
    return record


@pytest.mark.parametrize(
    "change",
    [
        "counts as strings",
        "null counts",
        "an integer rate",
        "a rate as a string",
        "coordinates as numbers",
        "empty coordinates",
        "no coordinates",
        "cities null",
        "cities missing",
        "a county count as a string",
        "a county fips as a string",
        "an empty county fips",
        "a county without a timestamp",
        "a timestamp with an offset",
        "a timestamp in T form",
        "an empty timestamp",
        "a null province",
        "unknown fields",
        "a float count that is whole",
        "a count beyond 2**53 as a string",
    ],
)
def test_decode_coerces_loose_values_as_the_reference_does(change: str) -> None:
    same_as_reference(DAY, [_edited("unknown fields"), _edited(change)])


@pytest.mark.parametrize(
    "break_it",
    [
        lambda r: r.pop("deaths"),
        lambda r: r["region"].pop("iso"),
        lambda r: r.update(confirmed=12.5),
        lambda r: r.update(deaths=True),
        lambda r: r.update(confirmed="many"),
        lambda r: r.update(confirmed=2**70),
        lambda r: r.update(last_update="yesterday"),
        lambda r: r.update(date="2021-01-14"),
        lambda r: r["region"].update(name=""),
        lambda r: r["region"].update(province=5),
        lambda r: r["region"].update(lat="north"),
        lambda r: r["region"]["cities"][1].pop("deaths"),
        lambda r: r["region"]["cities"][1].update(name=""),
        lambda r: r["region"]["cities"][1].update(confirmed=[1]),
        lambda r: r["region"].update(cities=[1, 2]),
        lambda r: r.update(region="Delaware"),
    ],
    ids=[
        "missing count", "missing iso", "fractional count", "boolean count", "word for a count",
        "count beyond int64", "bad timestamp", "another day", "empty country", "numeric province",
        "bad latitude", "county missing a count", "county without a name", "county count a list",
        "counties not objects", "region not an object",
    ],
)  # fmt: skip
def test_decode_names_the_day_record_and_field_as_the_reference_does(break_it) -> None:
    records = [_delaware(), _delaware()]
    break_it(records[1])
    with pytest.raises(SchemaError) as reference:
        to_table(DAY, records)
    with pytest.raises(SchemaError) as fast:
        decode.decode_day(DAY, [body(records)])
    assert str(fast.value) == str(reference.value)
    assert str(fast.value).startswith("2021-01-15: record 1 (Delaware)") or "record 1:" in str(
        fast.value
    )


def test_decode_of_no_records_is_an_empty_table_with_the_schema() -> None:
    table = decode.decode_day(DAY, [b"[]"])
    assert table.num_rows == 0 and table.schema.equals(transform.SCHEMA, check_metadata=True)
