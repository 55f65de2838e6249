"""Turn the bundled JHU CSSE files into covid-api.com `/reports` records.

covid-api.com serves JHU CSSE's daily reports (see docs/covid_api_contract.md), so replaying
the JHU files gives answers with the API's real shape and real numbers. The bundled copy has
gaps (see jhu/README.md), so each (country, day) uses the most detailed source that has it:

1. the JHU daily report for that day (provinces, and US counties as `cities`);
2. for the US, the JHU US state report (states, no counties);
3. the JHU global time series (country or province totals, every day of the history).

Values follow the contract's derivation rules: `*_diff` against the previous day of the same
region, `active = confirmed - deaths - recovered`, `fatality_rate = round(deaths/confirmed, 4)`
sent as the integer 0 when there are no deaths, lat/long as strings.
"""

import csv
import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY

DATA_DIR = Path(__file__).parent / "jhu"

# JHU renamed countries during 2020; covid-api.com reports them under one name (and the SARs
# as provinces of China). Values: (country name, province override or None).
_COUNTRY_ALIASES = {
    "Mainland China": ("China", None),
    "Hong Kong": ("China", "Hong Kong"),
    "Hong Kong SAR": ("China", "Hong Kong"),
    "Macau": ("China", "Macau"),
    "Macao SAR": ("China", "Macau"),
    "UK": ("United Kingdom", None),
    "North Ireland": ("United Kingdom", "Northern Ireland"),
    "South Korea": ("Korea, South", None),
    "Taiwan": ("Taiwan*", None),
    "Ivory Coast": ("Cote d'Ivoire", None),
}
# Entities JHU lists as countries without an iso3, under the codes covid-api.com gives them
# (its GET /regions, as captured by a public client: see docs/covid_api_contract.md, section
# 2). The API's other such codes (Others, cruise) name entities of February and early March
# 2020, which the bundled daily reports do not reach.
API_CODES = {
    "Diamond Princess": "NA-SHIP-DP",
    "MS Zaandam": "NA-SHIP-MSZ",
}
# Countries that joined the time series after the bundled (2020) UID lookup table was cut.
_LATER_COUNTRIES = {
    "Kiribati": "KIR",
    "Korea, North": "PRK",
    "Marshall Islands": "MHL",
    "Micronesia": "FSM",
    "Nauru": "NRU",
    "Palau": "PLW",
    "Samoa": "WSM",
    "Solomon Islands": "SLB",
    "Tonga": "TON",
    "Tuvalu": "TUV",
    "Vanuatu": "VUT",
}
_TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %H:%M",
    "%m/%d/%Y %H:%M:%S",
)


@dataclass
class City:
    """Cumulative counts of one US county on one day."""

    name: str
    fips: int | None
    lat: str
    long: str
    confirmed: int
    deaths: int
    last_update: str


@dataclass
class Region:
    """Cumulative counts of one province (or a whole country) on one day."""

    iso: str
    name: str
    province: str
    lat: str
    long: str
    confirmed: int = 0
    deaths: int = 0
    recovered: int = 0
    last_update: str = ""
    cities: dict[str, City] = field(default_factory=dict)


Regions = dict[str, dict[str, Region]]  # iso -> province -> Region


def reports(iso: str, day: dt.date) -> list[dict]:
    """The `data` list covid-api.com returns for `/reports?date=<day>&iso=<iso>`.

    An empty `iso` is the unfiltered query: every country's records, country by country.
    """
    if not iso:
        return [record for code, _ in regions() for record in reports(code, day)]
    today = provinces_on(day, iso)
    yesterday = provinces_on(day - dt.timedelta(days=1), iso)
    return [_record(day, region, yesterday.get(name)) for name, region in sorted(today.items())]


@functools.cache
def regions() -> list[tuple[str, str]]:
    """(iso, name) of every region the data knows, by iso: what `GET /regions` lists."""
    names = {iso: series[0].country for iso, series in _time_series_by_iso().items()}
    return sorted(names.items())


def code_of(text: str) -> str:
    """The region code `text` names, as the API spells it: codes compare without case."""
    return _codes_by_upper().get(text.upper(), text.upper())


@functools.cache
def _codes_by_upper() -> dict[str, str]:
    return {code.upper(): code for code, _ in regions()}


def provinces_on(day: dt.date, iso: str) -> dict[str, Region]:
    """Cumulative regions of one country on `day`, from the most detailed source that has it."""
    if not FIRST_DAY <= day <= LAST_DAY:
        return {}
    provinces = _daily_report(day).get(iso)
    if provinces is None and iso == "USA":
        provinces = _us_state_report(day).get(iso)
    if provinces is None:
        provinces = _time_series(day, iso)
    return provinces


def _record(day: dt.date, today: Region, yesterday: Region | None) -> dict:
    before = yesterday or Region(today.iso, today.name, today.province, "", "")
    diffs = {
        key: getattr(today, key) - getattr(before, key)
        for key in ("confirmed", "deaths", "recovered")
    }
    return {
        "date": day.isoformat(),
        "confirmed": today.confirmed,
        "deaths": today.deaths,
        "recovered": today.recovered,
        "confirmed_diff": diffs["confirmed"],
        "deaths_diff": diffs["deaths"],
        "recovered_diff": diffs["recovered"],
        "last_update": today.last_update,
        "active": today.confirmed - today.deaths - today.recovered,
        "active_diff": diffs["confirmed"] - diffs["deaths"] - diffs["recovered"],
        "fatality_rate": _fatality_rate(today.deaths, today.confirmed),
        "region": {
            "iso": today.iso,
            "name": today.name,
            "province": today.province,
            "lat": today.lat,
            "long": today.long,
            "cities": [
                _city_record(day, city, before.cities.get(name))
                for name, city in sorted(today.cities.items())
            ],
        },
    }


def _city_record(day: dt.date, today: City, yesterday: City | None) -> dict:
    return {
        "name": today.name,
        "date": day.isoformat(),
        "fips": today.fips,
        "lat": today.lat,
        "long": today.long,
        "confirmed": today.confirmed,
        "deaths": today.deaths,
        "confirmed_diff": today.confirmed - (yesterday.confirmed if yesterday else 0),
        "deaths_diff": today.deaths - (yesterday.deaths if yesterday else 0),
        "last_update": today.last_update,
    }


def _fatality_rate(deaths: int, confirmed: int) -> int | float:
    # The API sends the integer 0 here, which is why consumers must not infer types per day.
    if deaths == 0 or confirmed == 0:
        return 0
    return round(deaths / confirmed, 4)


# --- sources ---------------------------------------------------------------------------------


@functools.lru_cache(
    maxsize=8
)  # a backfill walks days in order: today's file is tomorrow's "yesterday"
def _daily_report(day: dt.date) -> Regions:
    path = DATA_DIR / "daily_reports" / f"{day:%m-%d-%Y}.csv"
    if not path.exists():
        return {}
    regions: Regions = {}
    rows = list(_read_csv(path))
    fallback_update = max((_timestamp(r["last_update"]) for r in rows), default="")
    for row in rows:
        place = _place(row["country"], row["province"])
        if place is None:
            continue
        iso, name, province = place
        region = _region(regions, iso, name, province, row["lat"], row["long"])
        confirmed, deaths = _count(row["confirmed"]), _count(row["deaths"])
        update = _timestamp(row["last_update"]) or fallback_update
        region.confirmed += confirmed
        region.deaths += deaths
        region.recovered += _count(row["recovered"])
        region.last_update = max(region.last_update, update)
        if row.get("admin2"):  # a US county: the API nests counties under their state
            region.cities[row["admin2"]] = City(
                name=row["admin2"],
                fips=int(float(row["fips"])) if row.get("fips") else None,
                lat=_coordinate(row["lat"]),
                long=_coordinate(row["long"]),
                confirmed=confirmed,
                deaths=deaths,
                last_update=update,
            )
    return regions


@functools.lru_cache(maxsize=8)
def _us_state_report(day: dt.date) -> Regions:
    path = DATA_DIR / "daily_reports_us" / f"{day:%m-%d-%Y}.csv"
    if not path.exists():
        return {}
    regions: Regions = {}
    rows = list(_read_csv(path))
    fallback_update = max((_timestamp(r["last_update"]) for r in rows), default="")
    for row in rows:
        region = _region(regions, "USA", "US", row["province"], row["lat"], row["long"])
        region.confirmed = _count(row["confirmed"])
        region.deaths = _count(row["deaths"])
        region.recovered = _count(row["recovered"])
        region.last_update = _timestamp(row["last_update"]) or fallback_update
    return regions


def _time_series(day: dt.date, iso: str) -> dict[str, Region]:
    column = (day - FIRST_DAY).days
    regions: Regions = {}
    for series in _time_series_by_iso().get(iso, []):
        counts = {kind: values[column] for kind, values in series.values.items()}
        if not any(counts.values()):
            continue  # JHU lists a region from day one; the API only once it has cases
        region = _region(regions, iso, series.country, series.province, series.lat, series.long)
        region.confirmed += counts.get("confirmed", 0)
        region.deaths += counts.get("deaths", 0)
        region.recovered += counts.get("recovered", 0)
        # The time series has no timestamps: stamp the end of the day it reports.
        region.last_update = f"{day.isoformat()} 23:59:59"
    return regions.get(iso, {})


@dataclass(frozen=True)
class _Series:
    country: str
    province: str
    lat: str
    long: str
    values: dict[str, list[int]]


@functools.cache
def _time_series_by_iso() -> dict[str, list[_Series]]:
    """The three global time series, joined per region and grouped by country ISO code."""
    joined: dict[tuple[str, str], dict[str, list[int]]] = {}
    coordinates: dict[tuple[str, str], tuple[str, str]] = {}
    for kind in ("confirmed", "deaths", "recovered"):
        path = DATA_DIR / "time_series" / f"time_series_covid19_{kind}_global.csv"
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for province, country, lat, long, *values in reader:
                key = (country.strip(), province.strip())
                joined.setdefault(key, {})[kind] = [_count(v) for v in values]
                coordinates.setdefault(key, (lat, long))
    by_iso: dict[str, list[_Series]] = {}
    for key, values in joined.items():
        place = _place(*key)
        if place is not None:
            iso, name, province = place
            by_iso.setdefault(iso, []).append(_Series(name, province, *coordinates[key], values))
    return by_iso


# --- parsing helpers -------------------------------------------------------------------------

_HEADER_NAMES = {
    "Province/State": "province",
    "Province_State": "province",
    "Country/Region": "country",
    "Country_Region": "country",
    "Last Update": "last_update",
    "Last_Update": "last_update",
    "Latitude": "lat",
    "Lat": "lat",
    "Longitude": "long",
    "Long_": "long",
    "Admin2": "admin2",
    "FIPS": "fips",
    "Confirmed": "confirmed",
    "Deaths": "deaths",
    "Recovered": "recovered",
}


def _read_csv(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a JHU CSV under one set of column names, whatever the file's era."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        names = [_HEADER_NAMES.get(name.strip(), name.strip()) for name in next(reader)]
        for values in reader:
            row = dict.fromkeys(("province", "lat", "long", "recovered", "admin2", "fips"), "")
            row.update((n, v.strip()) for n, v in zip(names, values, strict=False))
            yield row


@functools.cache
def _country_isos() -> dict[str, str]:
    isos = _LATER_COUNTRIES | API_CODES
    with (DATA_DIR / "UID_ISO_FIPS_LookUp_Table.csv").open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if not row["Province_State"] and not row["Admin2"] and row["iso3"]:
                isos[row["Country_Region"]] = row["iso3"]
    return isos


@functools.cache
def _province_coordinates() -> dict[tuple[str, str], tuple[str, str]]:
    coordinates = {}
    with (DATA_DIR / "UID_ISO_FIPS_LookUp_Table.csv").open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if row["Province_State"] and not row["Admin2"]:
                key = (row["Country_Region"], row["Province_State"])
                coordinates[key] = (row["Lat"], row["Long_"])
    return coordinates


def _place(country: str, province: str) -> tuple[str, str, str] | None:
    """(iso, country name, province) as the API names them, or None for unmapped places."""
    name, province_override = _COUNTRY_ALIASES.get(country, (country, None))
    iso = _country_isos().get(name)
    if iso is None:
        return None  # entities without a code of the API's known here: the Olympics, Antarctica
    return iso, name, province_override or province


def _region(regions: Regions, iso: str, name: str, province: str, lat: str, long: str) -> Region:
    provinces = regions.setdefault(iso, {})
    if province not in provinces:
        # County rows carry county coordinates; the state's own come from the lookup table.
        lat, long = _province_coordinates().get((name, province), (lat, long))
        provinces[province] = Region(iso, name, province, _coordinate(lat), _coordinate(long))
    return provinces[province]


def _count(value: str) -> int:
    return int(float(value)) if value.strip() else 0  # JHU writes some counts as "67948.0"


def _coordinate(value: str) -> str:
    return f"{float(value):.4f}" if value.strip() else "0.0"


@functools.lru_cache(maxsize=4096)  # a file repeats a handful of timestamps thousands of times
def _timestamp(value: str) -> str:
    for fmt in _TIMESTAMP_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return ""
