"""Strict validation of `POST /api/v1/execution` bodies (supervisor-entered execution points).

These points are part of the scorecard agents are paid by, so nothing is coerced: `"3"`,
`true`, `null` or a float where an id belongs are errors, not values. Every error names the
field (`FieldError.field`) so the API answers a 400 a person can act on.

- `shop`, `agent`: ids (1–128 printable characters) of a shop and agent this worker knows: in
  the configuration (shops table, roster) or seen in events.
- `period`: `today`, `month`, `YYYY-MM` or `YYYY-MM-DD`, within this month or the previous one
  (points for a month are usually entered just after it closes; the worker keeps daily figures
  only back to shortly before this month, so anything older could never be scored) and not in
  the future.
- `points`: a JSON number from 0 to the execution item's weight for the agent's team.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.config import Config
from streams.domain.windows import month_start_ms, period_start_ms
from streams.events import MAX_ID_CHARS, valid_id

__all__ = ["FIELDS", "Execution", "FieldError", "parse_execution"]

FIELDS = ("shop", "agent", "period", "points")
_PERIOD = re.compile(r"today|month|\d{4}-\d{2}(?:-\d{2})?", re.ASCII)
RETAINED_MONTHS = 2  # this month and the previous one


class FieldError(ValueError):
    """A bad field in a request body; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Execution:
    shop: str
    agent: str
    period: str
    points: float


def parse_execution(
    body: Any, config: Config, known: Callable[[str, str], tuple[bool, bool]], now_ms: int
) -> Execution:
    """Validate a decoded JSON body; `known(shop, agent)` says whether each is known."""
    if not isinstance(body, Mapping):
        raise FieldError("body", "must be a JSON object")
    for key in body:
        if key not in FIELDS:
            raise FieldError(str(key)[:64], f"unknown field (expected {', '.join(FIELDS)})")
    shop = _id(body, "shop")
    agent = _id(body, "agent")
    shop_known, agent_known = known(shop, agent)
    if not shop_known:
        raise FieldError("shop", f"unknown shop {shop!r} (not configured, not seen in events)")
    if not agent_known:
        raise FieldError(
            "agent", f"unknown agent {agent!r} (not in the roster, not seen in {shop!r})"
        )
    period = body.get("period", "month")
    rules = config.rules(shop)
    if type(period) is not str or _PERIOD.fullmatch(period) is None:
        raise FieldError("period", "must be today, month, YYYY-MM or YYYY-MM-DD")
    try:
        start = period_start_ms(period, now_ms, rules)
    except (ValueError, OverflowError, OSError):
        raise FieldError("period", f"not a valid date: {period!r}") from None
    oldest = month_start_ms(now_ms, rules)
    for _ in range(RETAINED_MONTHS - 1):
        oldest = month_start_ms(oldest - 1, rules)
    if not oldest <= start <= now_ms:
        raise FieldError("period", f"{period!r} is outside the retained months (this month and "
                                   "the previous one) or in the future")
    points: Any = body.get("points")
    if type(points) not in (int, float) or not math.isfinite(points):
        raise FieldError("points", "must be a JSON number")
    weight = config.scorecard(config.team_of(agent)).weights.get("execution", 0.0)
    if not 0 <= points <= weight:
        raise FieldError("points", f"must be between 0 and {weight:g} (the execution weight)")
    return Execution(shop, agent, period, float(points))


def _id(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise FieldError(name, "required")
    if type(value) is not str:
        raise FieldError(name, "must be a string")
    if not valid_id(value):
        raise FieldError(name, f"must be 1–{MAX_ID_CHARS} printable characters")
    return value
