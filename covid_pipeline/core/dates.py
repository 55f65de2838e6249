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


def parse_range(start: object, end: object, max_days: int | None = None) -> list[dt.date]:
    """The days from `start` to `end` (YYYY-MM-DD strings, both included), validated together.

    Raises:
        ValueError: one message naming every problem: a missing or malformed date, a day
            outside the data's range, an end before the start, or more than `max_days` days.
    """
    problems, days = [], {}
    for name, value in (("start_date", start), ("end_date", end)):
        if value is None or value == "":
            problems.append(f"{name} is missing (expected YYYY-MM-DD)")
        elif not isinstance(value, str):
            problems.append(f"{name} must be a YYYY-MM-DD string, not {type(value).__name__}")
        else:
            try:
                days[name] = parse_day(value, name)
            except ValueError as error:
                problems.append(str(error))
    if len(days) == 2:
        first, last = days["start_date"], days["end_date"]
        if last < first:
            problems.append(f"end_date {last} is before start_date {first}")
        elif max_days is not None and (last - first).days + 1 > max_days:
            problems.append(
                f"{(last - first).days + 1} days is more than one invocation takes ({max_days}); "
                "split the range"
            )
    if problems:
        raise ValueError("; ".join(problems))
    return day_range(days["start_date"], days["end_date"])
