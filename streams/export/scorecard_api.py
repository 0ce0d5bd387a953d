"""`GET /api/v1/scorecard`: the 绩效考核表 of one period, as JSON, CSV or XLSX.

Reads the cards the domain put on each agent's snapshot (`streams.domain.scorecard`); computes
no KPI. A worker holds the cards of the current local day and month of each shop, nothing
older, so a past (or future) day or month is a 404 that lists what is held — never numbers of
another period. While the worker is still recovering its state the answer is a 503: a table
people are paid by must not be taken from half-restored figures.

The JSON document is the one source of the three formats: the files are rendered from it
(`scorecard_files`), and `kefu-pulse report` merges several workers' documents the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streams.config import Config
from streams.domain.limits import is_overflow, label
from streams.domain.model import AgentSnapshot, ScoreCard
from streams.domain.rules import zone
from streams.domain.scorecard import ITEMS
from streams.export import scorecard_files

FORMATS: tuple[str, ...] = ("json", "csv", "xlsx")
LANGS: tuple[str, ...] = ("zh", "en")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_MONTH = re.compile(r"\d{4}-\d{2}", re.ASCII)


class ScorecardError(Exception):
    """A request the endpoint answers with an error: HTTP status, message, field at fault."""

    def __init__(self, status: int, message: str, field: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, **self.extra}


@dataclass(frozen=True, slots=True)
class Query:
    period: str  # "today", "month", "YYYY-MM" or "YYYY-MM-DD"
    format: str
    lang: str


def parse_query(query: Mapping[str, str]) -> Query:
    """Strict parameters: anything unknown or malformed is a 400 naming the field."""
    for key in query:
        if key not in ("period", "format", "lang", "token"):
            raise ScorecardError(400, f"{key}: unknown parameter", key)
    period = query.get("period", "month")
    if period not in ("today", "month"):
        pattern, fmt = (_DAY, "%Y-%m-%d") if len(period) == 10 else (_MONTH, "%Y-%m")
        try:
            if not pattern.fullmatch(period):
                raise ValueError
            datetime.strptime(period, fmt)
        except ValueError:
            raise ScorecardError(
                400, f"period must be today, month, YYYY-MM or YYYY-MM-DD, got {period[:20]!r}",
                "period") from None
    fmt_ = query.get("format", "json")
    if fmt_ not in FORMATS:
        raise ScorecardError(400, f"format must be one of {', '.join(FORMATS)}", "format")
    lang = query.get("lang", "zh")
    if lang not in LANGS:
        raise ScorecardError(400, f"lang must be one of {', '.join(LANGS)}", "lang")
    return Query(period, fmt_, lang)


def _row(s: AgentSnapshot, card: ScoreCard, config: Config) -> dict[str, Any]:
    info = config.agent(s.agent)
    return {
        "shop": s.shop,
        "team": s.team,
        "agent": label(s.agent),
        "name": info.name if info and info.name else label(s.agent),
        "period": card.period,
        "items": {
            item: {
                "actual": card.actual.get(item),
                "target": card.target.get(item),
                "weight": card.weights.get(item),
                "points": card.items.get(item),
            }
            for item in ITEMS
        },
        "total": card.total,
        "pass_score": card.pass_score,
        "passed": card.passed,
    }


def held_periods(config: Config, shops: Iterable[str], now_ms: int) -> set[str]:
    """The days and months the worker holds now: the current ones in each shop's time zone."""
    zones = {config.rules(shop).timezone for shop in shops} | {config.defaults.timezone}
    out: set[str] = set()
    for tz in zones:
        local = datetime.fromtimestamp(now_ms / 1000, zone(tz))
        out |= {local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")}
    return out


def document(
    snapshots: Iterable[AgentSnapshot], config: Config, period: str, now_ms: int,
) -> dict[str, Any]:
    """The scorecard document of `period` for every scored agent of these snapshots.

    `today`/`month` pick each agent's current card. A named day or month picks the cards that
    score it; agents of shops whose local day or month is another one (time zones around
    midnight) are left out and their shops listed in `not_held_shops`. A named period no shop
    holds raises a 404."""
    snaps = [s for s in snapshots if s.agent and not is_overflow(s.agent) and s.score]
    kind = "today" if period == "today" or len(period) == 10 else "month"
    rows: list[dict[str, Any]] = []
    not_held: set[str] = set()
    for s in sorted(snaps, key=lambda s: (s.shop, s.team, s.agent)):
        card = s.score.get(kind)
        if card is None:
            continue
        if period in ("today", "month") or card.period == period:
            rows.append(_row(s, card, config))
        else:
            not_held.add(s.shop)
    if period not in ("today", "month") and not rows:
        held = held_periods(config, {s.shop for s in snaps} | set(config.shops), now_ms)
        held |= {c.period for s in snaps for c in s.score.values()}
        if period not in held:
            raise ScorecardError(
                404, f"period {period} is not held by this worker: it keeps the current day and "
                     "month of each shop only", "period", held=sorted(held))
    return {
        "period": period,
        "generated_at": now_ms / 1000,
        "items": list(ITEMS),
        "not_held_shops": sorted(not_held),
        "agents": rows,
    }


def render(doc: Mapping[str, Any], q: Query) -> tuple[bytes, str, dict[str, str]]:
    """(body, content type, extra headers) of a document in the asked format."""
    if q.format == "json":
        return orjson.dumps(doc), "application/json", {}
    name = scorecard_files.file_name(str(doc["period"]), q.format)
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if q.format == "csv":
        return scorecard_files.to_csv(doc, q.lang), "text/csv", disposition
    return scorecard_files.to_xlsx(doc, q.lang), scorecard_files.XLSX_TYPE, disposition
