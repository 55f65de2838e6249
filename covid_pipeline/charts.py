"""The epidemic's curve as a PNG in markdown, for the summary asset's metadata in the UI.

Dagster's UI draws numeric metadata per partition only for the latest 120 partitions, so the
whole history is drawn here, as Dagster's own tutorial does: a matplotlib figure, base64 in a
markdown image. matplotlib is for the Dagster layer only: the core and the Lambda never load it.
"""

import base64
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

# A Figure of its own, not pyplot: no global state, no screen, safe in a threaded server.
from matplotlib.figure import Figure

_MOST_LINES = 6  # a set of up to 6 codes gets a line per code; larger ones, their total


@dataclass
class Series:
    """Daily totals of the set (and per code, for small sets), 7-day averages."""

    days: list[dt.date] = field(default_factory=list)
    cases: list[float] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)
    by_code: dict[str, dict[dt.date, float]] = field(default_factory=dict)

    @classmethod
    def from_days(cls, days: Iterable[tuple[str, pa.Table | None]]) -> "Series":
        """From the country-day files, a day at a time (a day without a file is left out)."""
        series = cls()
        for day, table in days:
            if table is None or table.num_rows == 0:
                continue
            date = dt.date.fromisoformat(day)
            rows = table.select(["iso", "new_cases_7d_avg", "new_deaths_7d_avg"]).to_pylist()
            series.days.append(date)
            series.cases.append(sum(row["new_cases_7d_avg"] or 0.0 for row in rows))
            series.deaths.append(sum(row["new_deaths_7d_avg"] or 0.0 for row in rows))
            for row in rows:
                series.by_code.setdefault(row["iso"], {})[date] = row["new_cases_7d_avg"] or 0.0
        return series

    def peak(self) -> tuple[dt.date, float]:
        """The day new cases (7-day average) were highest, and that average."""
        index = max(range(len(self.cases)), key=self.cases.__getitem__)
        return self.days[index], self.cases[index]


def markdown(series: Series, label: str) -> str:
    """The chart as a markdown image (a PNG data URI), with a line saying what it shows."""
    figure = Figure(figsize=(10, 6), dpi=80)
    cases, deaths = figure.subplots(2, 1, sharex=True)
    if 1 < len(series.by_code) <= _MOST_LINES:
        for code, values in sorted(series.by_code.items()):
            days = sorted(values)
            cases.plot(days, [values[day] for day in days], label=code, linewidth=1)
        cases.legend(loc="upper left", fontsize="small")
    else:
        cases.plot(series.days, series.cases, color="tab:blue", linewidth=1)
    cases.set_title(f"{label}: new cases a day, 7-day average")
    deaths.plot(series.days, series.deaths, color="tab:red", linewidth=1)
    deaths.set_title(f"{label}: new deaths a day, 7-day average")
    for axes in (cases, deaths):
        axes.grid(alpha=0.3)
        axes.yaxis.set_major_formatter(lambda value, _position: f"{value:,.0f}")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    data = base64.b64encode(png.getvalue()).decode()
    first, last = series.days[0], series.days[-1]
    return (
        f"New cases and deaths of {label}, {first}..{last} ({len(series.days)} days), from "
        f"covid_country_daily (JHU CSSE data, CC BY 4.0).\n\n"
        f"![{label} new cases and deaths, 7-day averages](data:image/png;base64,{data})"
    )
