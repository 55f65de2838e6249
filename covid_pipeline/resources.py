"""The API resource: thin, typed configuration around the core's client.

Its fields are settings (their defaults are the table's, in core.config). The daily asset turns
them into Settings (`settings()`, checked by the table) and builds the client and the knobs from
those the one way the Lambda does: `config.api_client`, `config.range_options`. The catalog's
resource is in catalog.py.
"""

from typing import Any

import dagster as dg

from covid_pipeline.core import config
from covid_pipeline.core.config import Settings
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.source.countries import Countries

# The table's defaults, for fields a test or run config may leave out; definitions.py sets all.
DEFAULTS = config.load_settings({})


class CovidApiResource(dg.ConfigurableResource):
    """covid-api.com (or a stand-in): where it is, which countries, and how hard to try."""

    api_url: str
    iso_code: str  # one code, a list (USA,CAN), or ALL: see core.source.countries
    fetch_concurrency: int = DEFAULTS.fetch_concurrency
    cpu_workers: int | None = DEFAULTS.cpu_workers  # decoding processes; None: automatic
    connect_timeout_s: float = DEFAULTS.http_connect_timeout_s
    read_timeout_s: float = DEFAULTS.http_read_timeout_s
    max_retries: int = DEFAULTS.http_max_retries
    backoff_s: float = DEFAULTS.http_backoff_s

    def settings(self) -> Settings:
        """These fields as settings, checked by the table as the environment's are.

        Run config can override the fields in the launchpad, past load_settings: a bad value
        fails the run without a retry.
        """
        try:
            return config.settings_with(
                {
                    "api_url": self.api_url,
                    "iso_code": self.iso_code,
                    "fetch_concurrency": self.fetch_concurrency,
                    "cpu_workers": self.cpu_workers,
                    "http_connect_timeout_s": self.connect_timeout_s,
                    "http_read_timeout_s": self.read_timeout_s,
                    "http_max_retries": self.max_retries,
                    "http_backoff_s": self.backoff_s,
                }
            )
        except ConfigError as error:
            raise dg.Failure(
                description=f"covid_api config: {error}", allow_retries=False
            ) from None

    def countries(self) -> Countries:
        """The set `iso_code` names; a bad value fails the run without a retry."""
        try:
            return Countries.parse(self.iso_code)
        except ValueError as error:
            raise dg.Failure(
                description=f"covid_api config: {error}", allow_retries=False
            ) from None


def setting(settings: Settings, field: str) -> Any:
    """The field's value for a resource: `dg.EnvVar` when it was read verbatim from a variable.

    Fields of other types than str and int, and values the settings changed (normalised or
    derived), are passed as they are.
    """
    name = settings.from_environment.get(field)
    current = getattr(settings, field)
    if name is None or isinstance(current, bool):
        return current
    if isinstance(current, int):
        return dg.EnvVar.int(name)
    return dg.EnvVar(name) if isinstance(current, str) else current
