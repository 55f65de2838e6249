"""The API client as the tests build it, and its answer for one day as they read it."""

import datetime as dt
import json
from typing import Any

from covid_pipeline.core import config
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.source.api import CovidApiClient, DayPayload
from covid_pipeline.core.source.retry import RetryPolicy

# A rate limiter's window, as test_api_faults.py and test_dg.py throttle a range with it.
THROTTLED_DAYS = day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 20))
THROTTLE_S = 2.0
IN_FLIGHT = 8
# While the window is open at most IN_FLIGHT days are being fetched (a day waiting out its
# backoff keeps its slot), and each is tried at most 4 times in it: the shortest backoffs
# (half of 0.5, 1, 2 s) add up to 1.75 s < 2 s < 3.75 s. Then every day takes one request.
MOST_REQUESTS = IN_FLIGHT * 4 + len(THROTTLED_DAYS)

# The table's defaults (core.config): what a client gets unless a test says otherwise.
DEFAULTS = config.load_settings({})


def api_client(url: str, iso_code: str, **given: Any) -> CovidApiClient:
    """A client as core.config.api_client builds one from the defaults, `given` in their place."""
    defaults = {
        "connect_timeout_s": DEFAULTS.http_connect_timeout_s,
        "read_timeout_s": DEFAULTS.http_read_timeout_s,
        "retry": RetryPolicy(
            max_retries=DEFAULTS.http_max_retries, backoff_s=DEFAULTS.http_backoff_s
        ),
        "pool_size": DEFAULTS.fetch_concurrency,
    }
    return CovidApiClient(url, iso_code, **(defaults | given))


def fetch_day(client: CovidApiClient, day: dt.date) -> DayPayload:
    """The whole day of a set that takes one request a day (one country, or ALL)."""
    [iso] = client.countries.queries
    return client.fetch(day, iso)


def records(payload: DayPayload) -> list[dict[str, Any]]:
    """A day's records as plain dicts, page after page (what the decoder reads fast)."""
    return [record for page in payload.pages for record in json.loads(page)]
