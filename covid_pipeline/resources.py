"""The API resource: thin, typed configuration around the core's client.

The catalog's resources, one per catalog mode, are in catalog.py.
"""

from typing import Any

import dagster as dg

from covid_pipeline.core.api import CovidApiClient
from covid_pipeline.core.config import ConfigError, Settings
from covid_pipeline.core.countries import Countries
from covid_pipeline.core.retry import RetryPolicy


class CovidApiResource(dg.ConfigurableResource):
    """covid-api.com (or a stand-in): where it is, which countries, and how hard to try."""

    api_url: str
    iso_code: str  # one code, a list (USA,CAN), or ALL: see core.countries
    fetch_concurrency: int = 8
    cpu_workers: int | None = None  # processes that decode days; None: automatic
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 0.5

    def client(self) -> CovidApiClient:
        """A client with one pooled HTTP session, sized for `fetch_concurrency` threads.

        Run config can override these fields in the launchpad, past load_settings: the core
        client validates them again, and a bad value fails the run without a retry.
        """
        try:
            return CovidApiClient(
                self.api_url,
                self.iso_code,
                connect_timeout_s=self.connect_timeout_s,
                read_timeout_s=self.read_timeout_s,
                retry=RetryPolicy(max_retries=self.max_retries, backoff_s=self.backoff_s),
                pool_size=self.fetch_concurrency,
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
