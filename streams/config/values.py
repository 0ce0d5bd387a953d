"""Typed reads of TOML values, each error naming the full dotted key.

Why by hand rather than a schema library: every message must name the dotted key a support
manager has to fix ("shops.s1.warning_seconds: must be a positive number, got 0"), with a
"did you mean" for typos; these few helpers do that in one line each.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.config.errors import ConfigError


def as_non_negative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: must be a number >= 0, got {value!r}")
    return float(value)


def as_timezone(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be an IANA time zone name, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}: unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')"
        ) from None
    return value


def as_seconds(value: Any, key: str) -> float:
    """A line in seconds: a positive number, or a duration string such as "3m"."""
    if isinstance(value, str):
        return parse_duration(value, key) / 1000.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key}: must be a positive number, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{key}: must be a positive number, got {value:g}")
    return float(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(value: Any, key: str = "duration") -> int:
    """Parse "10m", "24h", "2s", "500ms", "1h30m" or a number of seconds into milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: must be a duration like '10m' or a number of seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key}: must be a positive duration, got {value!r}")
        ms = round(value * 1000)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, total = 0, 0.0
        while pos < len(text):
            m = _DURATION_PART.match(text, pos)
            if m is None:
                break
            total += float(m.group(1)) * _UNIT_MS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ConfigError(
                f"{key}: cannot parse duration {value!r} "
                "(use e.g. '500ms', '2s', '10m', '1h30m', '24h' or a number of seconds)"
            )
        ms = round(total)
    else:
        raise ConfigError(f"{key}: must be a duration like '10m' or a number of seconds")
    if ms <= 0:
        raise ConfigError(f"{key}: must be a positive duration, got {value!r}")
    return ms


_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def parse_service_hours(value: Any, key: str = "service_hours") -> tuple[tuple[int, int], ...]:
    """Parse ["08:00-23:00", "22:00-02:00"] into local (start, end) minutes; end 24:00 is ok."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of 'HH:MM-HH:MM' strings, got {value!r}")
    spans: list[tuple[int, int]] = []
    for i, item in enumerate(value):
        item_key = f"{key}[{i}]"
        m = _HOURS.match(item.strip()) if isinstance(item, str) else None
        if m is None:
            raise ConfigError(f"{item_key}: must look like 'HH:MM-HH:MM', got {item!r}")
        sh, sm, eh, em = (int(g) for g in m.groups())
        if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
            raise ConfigError(f"{item_key}: not a valid time of day in {item!r}")
        start, end = sh * 60 + sm, eh * 60 + em
        if start == end:
            raise ConfigError(f"{item_key}: empty range {item!r} (use '00:00-24:00' for all day)")
        spans.append((start, end))
    return tuple(spans)


def as_table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a table, got {value!r}")
    return cast(Mapping[str, Any], value)


def as_str(value: Any, key: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value


def as_str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
    for i, item in enumerate(value):
        as_str(item, f"{key}[{i}]")
    return cast(list[str], value)


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{dotted}: unknown key{hint(key, allowed)}")


def hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]}?" if close else ""
