"""The reporting tables: raw days rolled up into the country-day table, and its checks."""
