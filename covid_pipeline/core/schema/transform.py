"""API records -> an Arrow table with one explicit schema, whatever JSON types the API sent.

Inferring types per day makes partitions disagree (the API sends `0` for a float rate,
strings for coordinates, `[]` for empty lists), and Glue and Athena reject a table whose
partitions disagree. So every column's type is declared here, once, and every value is
coerced to it or the day fails with a message naming the day, the record and the field.

Grain: one row per region (a province, or the whole country when it has none) per day.
US counties stay inside their state's row as `cities`, a list of structs with a fixed type:
the row count stays the API's, and county detail is one UNNEST away in Athena or DuckDB.
There is no `date` column: the day lives in the `date=` folder (Glue and Athena reject a
data column that repeats a partition key); `report_date` keeps it inside the file.
"""

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

_TIMESTAMP = pa.timestamp("us")  # JHU's Last_Update, in UTC; Athena reads microseconds

CITY_TYPE = pa.struct(
    [
        pa.field("name", pa.string()),
        pa.field("fips", pa.int64()),
        pa.field("lat", pa.float64()),
        pa.field("long", pa.float64()),
        pa.field("confirmed", pa.int64()),
        pa.field("deaths", pa.int64()),
        pa.field("confirmed_diff", pa.int64()),
        pa.field("deaths_diff", pa.int64()),
        pa.field("last_update", _TIMESTAMP),
    ]
)

# What the table is, for catalogs (Glue's table description).
DESCRIPTION = "Daily COVID-19 reports from covid-api.com, one file per day"
# (column, type, nullable, description): the one declaration of the file format.
COLUMNS: Sequence[tuple[str, pa.DataType, bool, str]] = (
    ("report_date", pa.date32(), False, "Day the report is for (also the date= partition)"),
    ("iso", pa.string(), False, "The region's code as the API gives it: ISO alpha-3, or its own"),
    ("country", pa.string(), False, "Country name as JHU writes it (e.g. US)"),
    ("province", pa.string(), False, "Province or state; empty for country-level rows"),
    ("lat", pa.float64(), True, "Latitude of the region; null when the API sends none"),
    ("long", pa.float64(), True, "Longitude of the region; null when the API sends none"),
    ("confirmed", pa.int64(), True, "Cumulative confirmed cases"),
    ("deaths", pa.int64(), True, "Cumulative deaths"),
    ("recovered", pa.int64(), True, "Cumulative recovered (0 after JHU stopped, Aug 2021)"),
    ("active", pa.int64(), True, "confirmed - deaths - recovered (can be negative)"),
    ("confirmed_diff", pa.int64(), True, "Change in confirmed since the previous day"),
    ("deaths_diff", pa.int64(), True, "Change in deaths since the previous day"),
    ("recovered_diff", pa.int64(), True, "Change in recovered since the previous day"),
    ("active_diff", pa.int64(), True, "Change in active since the previous day"),
    ("fatality_rate", pa.float64(), True, "deaths / confirmed, rounded to 4 places"),
    ("last_update", _TIMESTAMP, True, "When JHU last updated the row (UTC)"),
    # "element" is the list item name Parquet uses, so a file reads back with the same schema.
    ("cities", pa.list_(pa.field("element", CITY_TYPE)), False, "US counties of the state"),
)
SCHEMA = pa.schema(
    [
        pa.field(name, type_, nullable=nullable, metadata={"description": description})
        for name, type_, nullable, description in COLUMNS
    ]
)

COUNT_COLUMNS = (  # the counts of a record, all int64
    "confirmed",
    "deaths",
    "recovered",
    "active",
    "confirmed_diff",
    "deaths_diff",
    "recovered_diff",
    "active_diff",
)
_CITY_COUNTS = ("confirmed", "deaths", "confirmed_diff", "deaths_diff")


class SchemaError(ValueError):
    """A record does not fit the schema; the message names the day, the record and the field."""


def to_table(day: dt.date, records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """One day's API records as a table with exactly `SCHEMA`; zero rows when there are none.

    Unknown extra fields are ignored. Raises SchemaError for a missing required field, a
    value that cannot be coerced, or a record dated another day.
    """
    rows = [_row(day, index, record) for index, record in enumerate(records)]
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    return pa.table(columns, schema=SCHEMA)


class _FieldError(ValueError):
    """A field that does not fit; the caller adds where it is (built only when it fails)."""


def _row(day: dt.date, index: int, record: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{day}: record {index}"
    try:
        if not isinstance(record, Mapping):
            raise _FieldError(f"expected a JSON object, got {type(record).__name__}")
        region = _required(record, "region")
        if not isinstance(region, Mapping):
            raise _FieldError("field 'region' must be an object")
        province = _string(_required(region, "province", "region."), "region.province")
    except _FieldError as error:
        raise SchemaError(f"{where}: {error}") from None
    where = f"{where} ({province or 'country level'})"
    try:
        record_day = _required(record, "date")
        if record_day != day.isoformat():
            raise _FieldError(f"dated {record_day!r}, but {day} was asked for")
        row: dict[str, Any] = {
            "report_date": day,
            "iso": _name(_required(region, "iso", "region."), "region.iso"),
            "country": _name(_required(region, "name", "region."), "region.name"),
            "province": province or "",
            "lat": _float(region.get("lat"), "region.lat"),
            "long": _float(region.get("long"), "region.long"),
            "fatality_rate": _float(_required(record, "fatality_rate"), "fatality_rate"),
            "last_update": _timestamp(_required(record, "last_update"), "last_update"),
        }
        for name in COUNT_COLUMNS:
            row[name] = _int(_required(record, name), name)
    except _FieldError as error:
        raise SchemaError(f"{where}: {error}") from None
    cities = region.get("cities") or []
    city_rows = []
    for number, city in enumerate(cities):
        try:
            city_rows.append(_city(city))
        except _FieldError as error:
            raise SchemaError(f"{where} city {number}: {error}") from None
    row["cities"] = city_rows
    return row


def _city(city: Any) -> dict[str, Any]:
    if not isinstance(city, Mapping):
        raise _FieldError(f"expected a JSON object, got {type(city).__name__}")
    row = {
        "name": _name(_required(city, "name"), "name"),
        "fips": _int(city.get("fips"), "fips"),
        "lat": _float(city.get("lat"), "lat"),
        "long": _float(city.get("long"), "long"),
        "last_update": _timestamp(city.get("last_update"), "last_update"),
    }
    for name in _CITY_COUNTS:
        row[name] = _int(_required(city, name), name)
    return row


def _required(record: Mapping[str, Any], name: str, path: str = "") -> Any:
    try:
        return record[name]
    except KeyError:
        raise _FieldError(f"missing required field '{path}{name}'") from None


# The coercions run for every value of every row (some 30,000 on a day with US counties), so
# each tries the type the API normally sends first, and formats no message unless it fails.


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int(value: Any, name: str) -> int | None:
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):  # bool is an int in Python, never in this API
        raise _FieldError(f"field '{name}' is a boolean, expected an integer")
    try:
        number = _number(value) if isinstance(value, str) else value
        if not isinstance(number, int | float) or (
            isinstance(number, float) and not number.is_integer()
        ):
            raise ValueError(value)
        integer = int(number)
    except (TypeError, ValueError, OverflowError):
        raise _FieldError(f"field '{name}' = {value!r} is not an integer") from None
    if not _INT64_MIN <= integer <= _INT64_MAX:
        raise _FieldError(f"field '{name}' = {value!r} does not fit a 64-bit integer")
    return integer


def _number(text: str) -> int | float:
    # "9840" as an int, exactly (a float would round past 2**53); "9840.0" through float.
    try:
        return int(text)
    except ValueError:
        return float(text)


def _float(value: Any, name: str) -> float | None:
    if type(value) is float:
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _FieldError(f"field '{name}' is a boolean, expected a number")
    if not isinstance(value, int | str):
        raise _FieldError(f"field '{name}' = {value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise _FieldError(f"field '{name}' = {value!r} is not a number") from None


def _string(value: Any, name: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _FieldError(f"field '{name}' = {value!r} is not a string")


def _name(value: Any, name: str) -> str:
    text = _string(value, name)
    if not text:
        raise _FieldError(f"field '{name}' is empty")
    return text


def _timestamp(value: Any, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _FieldError(f"field '{name}' = {value!r} is not a YYYY-MM-DD HH:MM:SS timestamp")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise _FieldError(
            f"field '{name}' = {value!r} is not a YYYY-MM-DD HH:MM:SS timestamp"
        ) from None


@functools.lru_cache(maxsize=4096)  # a day's counties share a handful of timestamps
def parse_timestamp(value: str) -> dt.datetime:
    """A timestamp as the API writes it, "YYYY-MM-DD HH:MM:SS" in UTC (or ISO 8601), naive UTC.

    Raises:
        ValueError: when `value` is not such a timestamp.
    """
    stamp = dt.datetime.fromisoformat(value)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return stamp
