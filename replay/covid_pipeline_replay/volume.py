"""The replay's load profile: every US day at the real API's volume. For speed and memory only.

The bundled JHU data nests US counties (`region.cities`) on only 56 of the 1143 days; the real
API sends every US state with its ~3,200 counties on every day from
2020-03-22. This profile serves such a day for every US day from then on: the real county
records of one of the 44 bundled days that list every county (late March 2020, January and
early February 2021), taken in turn, re-dated to the day asked for.
The numbers are therefore those of another day: use it to measure time and memory, never to
check values (the default `fixture` profile is the one whose values are right).
"""

import datetime as dt
import functools
import json

from covid_pipeline.core.dates import LAST_DAY
from covid_pipeline_replay import jhu

PROFILES = ("fixture", "volume")
FIRST_COUNTY_DAY = dt.date(2020, 3, 22)  # the real API nests US counties from this day on
_MIN_COUNTIES = 3000  # a day that lists every county (early April 2020 listed only some)


@functools.cache
def county_days() -> tuple[dt.date, ...]:
    """The bundled days whose US report nests every county, in order."""
    days = []
    day = FIRST_COUNTY_DAY
    while day <= LAST_DAY:
        states = jhu.provinces_on(day, "USA")
        if sum(len(state.cities) for state in states.values()) >= _MIN_COUNTIES:
            days.append(day)
        day += dt.timedelta(days=1)
    return tuple(days)


def stand_in(iso: str, day: dt.date) -> dt.date | None:
    """The county day whose records are served for `day`, or None to serve `day` as it is."""
    if iso != "USA" or not FIRST_COUNTY_DAY <= day <= LAST_DAY:
        return None
    days = county_days()
    return days[(day - FIRST_COUNTY_DAY).days % len(days)]


def reports(iso: str, day: dt.date) -> list[dict]:
    """The `data` list for `day` under the load profile (empty `iso`: every country)."""
    if not iso:  # the world, with the US at its real volume
        return [record for code, _ in jhu.regions() for record in reports(code, day)]
    source = stand_in(iso, day)
    if source is None:
        return jhu.reports(iso, day)
    return json.loads(encoded_reports(iso, day))["data"]


def encoded_reports(iso: str, day: dt.date) -> bytes:
    """The JSON body for `day` under the load profile, re-dated from its stand-in."""
    if not iso:
        return _encoded_world(day)
    source = stand_in(iso, day)
    if source is None:
        return _encoded(iso, day)
    # Records and counties carry their day as "date": "YYYY-MM-DD"; nothing else is re-dated.
    return _encoded(iso, source).replace(
        f'"date": "{source.isoformat()}"'.encode(), f'"date": "{day.isoformat()}"'.encode()
    )


# Every day of the history for a few countries (the 44 county days are ~700 KB each, the
# other countries' days a few KB): a smaller cache thrashed on a three-country backfill, and
# the replay, rebuilding answers, became what the benchmark measured.
@functools.lru_cache(maxsize=8192)
def _encoded(iso: str, day: dt.date) -> bytes:
    return json.dumps({"data": jhu.reports(iso, day)}).encode()


# The world's whole history (~0.8 MB a day with the US counties, ~1 GB): the bench backfills
# it through the CLI (the reporting table's world variant) after a month of it; with a month's
# cache the history evicted the month, and the replay, rebuilding every answer, was measured.
@functools.lru_cache(maxsize=2048)
def _encoded_world(day: dt.date) -> bytes:
    return json.dumps({"data": reports("", day)}).encode()
