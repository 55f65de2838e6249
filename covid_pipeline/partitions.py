"""The one daily partitioning every daily asset uses: the days the data exists for."""

import datetime as dt

import dagster as dg

from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(),
    end_date=(LAST_DAY + dt.timedelta(days=1)).isoformat(),  # end_date is exclusive
    timezone="UTC",
)
