"""Configuration: business rules from one TOML file (`rules`), deployment settings from the
environment (`settings`), both validated up front with errors that name the key (`values`).

Import from here: `from streams.config import Config, Settings, load_config, ...`.
"""

from __future__ import annotations

from streams.config.errors import ConfigError
from streams.config.rules import (
    PROFILES,
    Config,
    default_config,
    load_config,
    parse_config,
)
from streams.config.settings import Settings
from streams.config.values import parse_duration, parse_service_hours

__all__ = [
    "PROFILES",
    "Config",
    "ConfigError",
    "Settings",
    "default_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_service_hours",
]
