"""The error every room of the core may raise about its settings, below them all.

Settings are checked in core.config, and the parts they configure check again what is given to
them directly (Dagster run config, a test): both raise ConfigError, so a caller catches one.
"""


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists every problem."""
