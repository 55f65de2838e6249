"""Dagster resources: thin, typed configuration around the core's clients."""

import dagster as dg

from covid_pipeline.core.api import CovidApiClient, RetryPolicy


class CovidApiResource(dg.ConfigurableResource):
    """covid-api.com (or a stand-in): where it is, which country, and how hard to try."""

    api_url: str
    iso_code: str
    fetch_concurrency: int = 8
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 0.5

    def client(self) -> CovidApiClient:
        """A client with one pooled HTTP session, sized for `fetch_concurrency` threads."""
        return CovidApiClient(
            self.api_url,
            self.iso_code,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            retry=RetryPolicy(max_retries=self.max_retries, backoff_s=self.backoff_s),
            pool_size=self.fetch_concurrency,
        )
