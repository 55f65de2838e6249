"""The API's JSON bytes -> a day's table, fast, with exactly the rules of `transform.to_table`.

A US day carries about 3,200 counties. Parsing that into dicts and coercing value by value is
what a backfill of the whole history would spend its time on (docs/performance.md has the
figures). Here msgspec decodes straight into typed Structs, validating as it parses (its lax
mode accepts numbers sent as strings, and integer `0` for a float, as `to_table` does), and the
columns are built in one pass per field.

Anything this fast path does not take as it is (a missing field, a value of an unexpected type,
a bad timestamp, a record dated another day) is handed to `transform.to_table`, the reference
implementation of the schema: it either coerces the value the same way or raises the
SchemaError that names the day, the record and the field. So both paths give the same table or
the same error; the tests hold them to it.
"""

import datetime as dt
import json
from collections.abc import Sequence

import msgspec
import pyarrow as pa

from covid_pipeline.core.schema import checks, transform
from covid_pipeline.core.schema.transform import SCHEMA


class _City(msgspec.Struct, gc=False):
    name: str
    confirmed: int | None
    deaths: int | None
    confirmed_diff: int | None
    deaths_diff: int | None
    fips: int | None = None
    lat: float | None = None
    long: float | None = None
    last_update: str | None = None


class _Region(msgspec.Struct, gc=False):
    iso: str
    name: str
    province: str | None
    lat: float | None = None
    long: float | None = None
    cities: list[_City] | None = None


class _Record(msgspec.Struct, gc=False):
    date: str
    region: _Region
    confirmed: int | None
    deaths: int | None
    recovered: int | None
    active: int | None
    confirmed_diff: int | None
    deaths_diff: int | None
    recovered_diff: int | None
    active_diff: int | None
    fatality_rate: float | None
    last_update: str | None


# strict=False: "9840" -> 9840 and 0 -> 0.0, as transform's coercions; bools stay refused.
_RECORDS = msgspec.json.Decoder(list[_Record], strict=False)
_CITIES_TYPE = SCHEMA.field("cities").type


class _NotPlain(Exception):
    """The day needs the reference path: it either coerces the odd value or names it."""


def decode_day(day: dt.date, pages: Sequence[bytes]) -> pa.Table:
    """One day's `data` arrays (raw JSON, one per page) as a table with exactly `SCHEMA`.

    Raises:
        SchemaError: naming the day, the record and the field, as `transform.to_table` does.
        ValueError: a page that is not JSON (the API client has checked that it is).
    """
    try:
        records = [record for page in pages for record in _RECORDS.decode(page)]
        return _build(day, records)
    except (msgspec.ValidationError, _NotPlain, ValueError, OverflowError, pa.ArrowException):
        # Rare: let the reference path coerce what it can and name what it cannot.
        return transform.to_table(day, [record for page in pages for record in json.loads(page)])


Answer = tuple[str | None, Sequence[bytes]]  # a country (None: every one), and its pages


def decode_and_check(
    day: dt.date, answers: Sequence[Answer], countries: str
) -> tuple[pa.Table, dict[str, str]]:
    """A day's table from each country's answer, and the single-day checks it fails.

    This is a day's CPU work. Each country's answer is decoded on its own, so a schema error
    names the country (when the day has several), then the record and the field.

    Args:
        day: the day.
        answers: (country asked for, its pages) for each request the day took.
        countries: the set's label (USA, CAN,USA, ALL), for the checks.
    """
    tables = []
    for iso, pages in answers:
        try:
            tables.append(decode_day(day, pages))
        except transform.SchemaError as error:
            if len(answers) == 1:
                raise
            cause = str(error).removeprefix(f"{day}: ")
            raise transform.SchemaError(f"{day}: {iso}: {cause}") from None
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    failing = checks.failures_of_day(day.isoformat(), table, countries) if table.num_rows else {}
    return table, failing


def _build(day: dt.date, records: list[_Record]) -> pa.Table:
    iso_day = day.isoformat()
    regions = [record.region for record in records]
    if any(record.date != iso_day for record in records):
        raise _NotPlain("a record dated another day")
    if not all(region.iso and region.name for region in regions):
        raise _NotPlain("an empty country name or code")
    cities: list[_City] = []
    offsets = [0]
    for region in regions:
        if region.cities:
            cities.extend(region.cities)
        offsets.append(len(cities))
    names = [city.name for city in cities]
    if not all(names):  # over a list, not a generator: a tenth of the time
        raise _NotPlain("a county without a name")
    stamps = _Timestamps()
    city_columns = [
        pa.array(names, pa.string()),
        pa.array([city.fips for city in cities], pa.int64()),
        pa.array([city.lat for city in cities], pa.float64()),
        pa.array([city.long for city in cities], pa.float64()),
        pa.array([city.confirmed for city in cities], pa.int64()),
        pa.array([city.deaths for city in cities], pa.int64()),
        pa.array([city.confirmed_diff for city in cities], pa.int64()),
        pa.array([city.deaths_diff for city in cities], pa.int64()),
        stamps.column([city.last_update for city in cities]),
    ]
    columns = {
        "report_date": pa.array([day] * len(records), pa.date32()),
        "iso": pa.array([region.iso for region in regions], pa.string()),
        "country": pa.array([region.name for region in regions], pa.string()),
        "province": pa.array([region.province or "" for region in regions], pa.string()),
        "lat": pa.array([region.lat for region in regions], pa.float64()),
        "long": pa.array([region.long for region in regions], pa.float64()),
        **{
            name: pa.array([getattr(record, name) for record in records], pa.int64())
            for name in transform.COUNT_COLUMNS
        },
        "fatality_rate": pa.array([record.fatality_rate for record in records], pa.float64()),
        "last_update": stamps.column([record.last_update for record in records]),
        "cities": pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.StructArray.from_arrays(city_columns, fields=list(transform.CITY_TYPE)),
            type=_CITIES_TYPE,
        ),
    }
    return pa.Table.from_arrays([columns[name] for name in SCHEMA.names], schema=SCHEMA)


class _Timestamps:
    """Parses each distinct timestamp of a day once: its counties share a handful.

    Kept as microseconds since the epoch: Arrow builds the column from integers several times
    faster than from datetime objects, with the same values.
    """

    def __init__(self) -> None:
        self._parsed: dict[str, int | None] = {"": None}  # empty means unknown

    def column(self, values: list[str | None]) -> pa.Array:
        parsed = self._parsed
        for value in set(values):
            if value is not None and value not in parsed:
                # A value that does not parse raises ValueError: the reference path names it.
                stamp = transform.parse_timestamp(value)
                parsed[value] = (stamp - _EPOCH) // _MICROSECOND
        stamps = [None if value is None else parsed[value] for value in values]
        return pa.array(stamps, pa.int64()).cast(SCHEMA.field("last_update").type)


_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)
