"""`ConfigError`: a bad configuration value, from the TOML file or the environment."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad configuration value; the message names the key (or variable) and the problem."""

