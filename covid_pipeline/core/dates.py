"""The days the data exists for, and parsing of user-given days."""

import datetime as dt

# JHU CSSE published from 2020-01-22 and stopped on 2023-03-10; covid-api.com has no other days.
FIRST_DAY = dt.date(2020, 1, 22)
LAST_DAY = dt.date(2023, 3, 9)


def parse_day(text: str, what: str = "date") -> dt.date:
    """Parse a YYYY-MM-DD day inside the data's range.

    Raises:
        ValueError: naming `what`, the value, and the accepted form and range.
    """
    try:
        day = dt.date.fromisoformat(text)
        if len(text) != 10:
            raise ValueError(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a YYYY-MM-DD date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(
            f"{what} {text} is outside the data's range {FIRST_DAY}..{LAST_DAY}"
        ) from None
    return day


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from `start` to `end`, both included."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
