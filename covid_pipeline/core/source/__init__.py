"""The API: the HTTP client, its retries and breaker, pagination, the region codes."""
