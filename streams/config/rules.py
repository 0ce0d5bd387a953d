"""Business rules from one TOML file: response lines, service hours, filters, roster, scorecard.

docs/interfaces.md splits them from the deployment settings (`settings`) so a support manager
can edit response lines and the roster without touching deployment. Everything is validated up
front: a typo must fail at start-up with the full dotted key named, not silently grade agents
against a default.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.config.errors import ConfigError
from streams.config.values import (
    as_non_negative,
    as_seconds,
    as_str,
    as_str_list,
    as_table,
    as_timezone,
    check_keys,
    hint,
    parse_duration,
    parse_service_hours,
)
from streams.domain.model import MAX_CONCURRENT_RANGE
from streams.domain.rules import AgentInfo, Filters, Lines, ShopRules
from streams.domain.scorecard import ITEMS as SCORE_ITEMS
from streams.domain.scorecard import ScorecardRules

UNASSIGNED_TEAM = "unassigned"
RESERVED_TEAM = "over_limit"  # streams.domain.limits.OVER_LIMIT_TEAM: series past the cap
MAX_REORDER_WINDOW_MS = 60_000


# Each platform grades differently (docs/contract.md); a profile is where a shop starts.
PROFILES: dict[str, ShopRules] = {
    # Taobao/Tmall: 30 s "skilled" / 40 s "normal", 3-minute line, graded around the clock.
    "taobao": ShopRules(profile="taobao"),
    # JD leaves out sessions started 23:00–09:00; monthly average held under 40 s.
    "jd": ShopRules(profile="jd", service_hours=((9 * 60, 23 * 60),)),
    # PDD grades 08:00–23:00 on looser 50/60 s lines plus a 3-minute human reply rate.
    "pdd": ShopRules(
        profile="pdd",
        lines=Lines(warning=50.0, critical=60.0, slow=180.0, page_wait=180.0),
        service_hours=((8 * 60, 23 * 60),),
    ),
}
DEFAULT_PROFILE = "taobao"

# TOML key -> Lines field, for [defaults], [shops.X] and [teams.X].
LINE_KEYS: dict[str, str] = {
    "warning_seconds": "warning",
    "critical_seconds": "critical",
    "slow_seconds": "slow",
    "page_wait_seconds": "page_wait",
}
# TOML key -> ShopRules field (milliseconds).
DURATION_KEYS: dict[str, str] = {
    "session_idle": "session_idle_ms",
    "unanswered_after": "unanswered_after_ms",
    "attribution_window": "attribution_window_ms",
    "reorder_window": "reorder_window_ms",
    "max_future_skew": "max_future_skew_ms",
}
RULE_KEYS: tuple[str, ...] = (
    "profile",
    "timezone",
    *LINE_KEYS,
    *DURATION_KEYS,
    "service_hours",
)
TOP_KEYS: tuple[str, ...] = ("defaults", "shops", "teams", "filters", "agents", "scorecard")
FILTER_KEYS: tuple[str, ...] = ("ad_patterns", "block_list")
AGENT_KEYS: tuple[str, ...] = ("id", "name", "team", "sales_target", "max_concurrent")

# (table, dotted prefix) pairs applied in order, least specific first.
Layers = list[tuple[Mapping[str, Any], str]]


@dataclass(frozen=True)
class Config:
    """Fully resolved business rules; lookups never fail (unknown shops get the defaults)."""

    defaults: ShopRules
    shops: Mapping[str, ShopRules]
    team_lines: Mapping[str, Lines]  # each team's overrides applied to the default lines
    filters: Filters
    agents: Mapping[str, AgentInfo]
    # Only the keys each [teams.X] sets, so a team override on a pdd shop keeps pdd's other lines.
    team_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    scorecard_defaults: ScorecardRules = field(default_factory=ScorecardRules)
    scorecard_teams: Mapping[str, ScorecardRules] = field(default_factory=dict)
    _lines_cache: dict[tuple[str, str], Lines] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rules(self, shop: str) -> ShopRules:
        """The shop's rules, else the defaults (shops need not be listed to be graded)."""
        return self.shops.get(shop, self.defaults)

    def lines(self, shop: str, team: str) -> Lines:
        """Response lines for a team in a shop: team override > shop > defaults."""
        key = (shop, team)
        cached = self._lines_cache.get(key)
        if cached is not None:
            return cached
        base = self.rules(shop).lines
        overrides = self.team_overrides.get(team)
        if overrides is not None:
            result = replace(base, **overrides)
        else:
            result = self.team_lines.get(team, base)
        self._lines_cache[key] = result
        return result

    def team_of(self, agent_id: str) -> str:
        """The agent's roster team; agents missing from the roster are "unassigned"."""
        info = self.agents.get(agent_id)
        return info.team if info is not None else UNASSIGNED_TEAM

    def agent(self, agent_id: str) -> AgentInfo | None:
        return self.agents.get(agent_id)

    def scorecard(self, team: str) -> ScorecardRules:
        """Scorecard weights and targets for a team (`[scorecard.teams.<team>]` > `[scorecard]`)."""
        return self.scorecard_teams.get(team, self.scorecard_defaults)


def default_config() -> Config:
    """The built-in configuration: taobao rules, no filters, empty roster."""
    return parse_config({})


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load the TOML file at `path` (else `$KEFU_CONFIG`, else the built-in defaults)."""
    if path is None:
        environ = os.environ if env is None else env
        path = environ.get("KEFU_CONFIG") or None
        if path is None:
            return default_config()
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line N, column M)".
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config: {exc.strerror or exc}") from None
    return parse_config(data)


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate and resolve an already parsed TOML document (see module docstring)."""
    check_keys(data, TOP_KEYS, "")
    defaults_raw = as_table(data.get("defaults", {}), "defaults")
    shops_raw = as_table(data.get("shops", {}), "shops")
    teams_raw = as_table(data.get("teams", {}), "teams")

    check_keys(defaults_raw, RULE_KEYS, "defaults")
    default_profile = _profile(defaults_raw, "defaults", DEFAULT_PROFILE)
    defaults = _resolve(default_profile, [(defaults_raw, "defaults")])

    shops: dict[str, ShopRules] = {}
    shop_layers: dict[str, Layers] = {}
    for shop_id, raw in shops_raw.items():
        prefix = f"shops.{shop_id}"
        table = as_table(raw, prefix)
        check_keys(table, RULE_KEYS, prefix)
        # Profile first, then explicit [defaults] keys, then explicit [shops.X] keys.
        layers = [(defaults_raw, "defaults"), (table, prefix)]
        shops[shop_id] = _resolve(_profile(table, prefix, default_profile), layers)
        shop_layers[shop_id] = layers

    team_overrides: dict[str, dict[str, float]] = {}
    team_lines: dict[str, Lines] = {}
    for team, raw in teams_raw.items():
        prefix = f"teams.{team}"
        table = as_table(raw, prefix)
        check_keys(table, tuple(LINE_KEYS), prefix)
        overrides = {LINE_KEYS[k]: as_seconds(v, f"{prefix}.{k}") for k, v in table.items()}
        team_overrides[team] = overrides
        # A team may work for any shop: its lines must stay ordered on top of each of them.
        _check_order(
            replace(defaults.lines, **overrides), [(defaults_raw, "defaults"), (table, prefix)]
        )
        for shop_id, rules in shops.items():
            _check_order(
                replace(rules.lines, **overrides),
                [*shop_layers[shop_id], (table, prefix)],
                where=f"shops.{shop_id}",
            )
        team_lines[team] = replace(defaults.lines, **overrides)

    score_default, score_teams = _scorecards(as_table(data.get("scorecard", {}), "scorecard"))
    return Config(
        defaults=defaults,
        shops=shops,
        team_lines=team_lines,
        filters=_filters(as_table(data.get("filters", {}), "filters")),
        agents=_agents(data.get("agents", [])),
        team_overrides=team_overrides,
        scorecard_defaults=score_default,
        scorecard_teams=score_teams,
    )


SCORECARD_KEYS = (
    "weights", "conversion_target", "payment_success_target", "aov_target", "reply_rate_target",
    "pass_score", "execution_default",
)


def _scorecard(table: Mapping[str, Any], prefix: str, base: ScorecardRules) -> ScorecardRules:
    check_keys(table, SCORECARD_KEYS, prefix)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "weights":
            weights = as_table(value, f"{prefix}.weights")
            check_keys(weights, SCORE_ITEMS, f"{prefix}.weights")
            merged = dict(base.weights)
            for item, w in weights.items():
                merged[item] = as_non_negative(w, f"{prefix}.weights.{item}")
            total = sum(merged.values())
            if abs(total - 100) > 1e-9:
                raise ConfigError(f"{prefix}.weights: must add up to 100, got {total:g}")
            values["weights"] = merged
        else:
            values[key] = as_non_negative(value, f"{prefix}.{key}")
    return replace(base, **values)


def _scorecards(table: Mapping[str, Any]) -> tuple[ScorecardRules, dict[str, ScorecardRules]]:
    teams_raw = as_table(table.get("teams", {}), "scorecard.teams")
    check_keys(table, (*SCORECARD_KEYS, "teams"), "scorecard")
    base = _scorecard({k: v for k, v in table.items() if k != "teams"}, "scorecard",
                      ScorecardRules())
    teams = {
        team: _scorecard(as_table(raw, f"scorecard.teams.{team}"), f"scorecard.teams.{team}", base)
        for team, raw in teams_raw.items()
    }
    return base, teams

def _profile(table: Mapping[str, Any], prefix: str, fallback: str) -> str:
    if "profile" not in table:
        return fallback
    value = table["profile"]
    key = f"{prefix}.profile"
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if value not in PROFILES:
        raise ConfigError(
            f"{key}: unknown profile {value!r}{hint(value, PROFILES)}; "
            f"choose one of {', '.join(PROFILES)}"
        )
    return value


def _resolve(profile: str, layers: Layers) -> ShopRules:
    """Apply each table's explicit keys, in order, on top of the profile; check the result."""
    rules = PROFILES[profile]
    for table, prefix in layers:
        rules = _apply(rules, table, prefix)
    _check_order(rules.lines, layers)
    return rules


def _apply(base: ShopRules, table: Mapping[str, Any], prefix: str) -> ShopRules:
    changes: dict[str, Any] = {}
    if "timezone" in table:
        changes["timezone"] = as_timezone(table["timezone"], f"{prefix}.timezone")
    line_changes = {
        LINE_KEYS[k]: as_seconds(table[k], f"{prefix}.{k}") for k in LINE_KEYS if k in table
    }
    if line_changes:
        changes["lines"] = replace(base.lines, **line_changes)
    for key, attr in DURATION_KEYS.items():
        if key in table:
            changes[attr] = parse_duration(table[key], f"{prefix}.{key}")
    if changes.get("reorder_window_ms", 0) > MAX_REORDER_WINDOW_MS:
        raise ConfigError(
            f"{prefix}.reorder_window: must be at most 60s (late events are held that long), "
            f"got {table['reorder_window']!r}"
        )
    if "service_hours" in table:
        changes["service_hours"] = parse_service_hours(
            table["service_hours"], f"{prefix}.service_hours"
        )
    return replace(base, **changes)


def _check_order(lines: Lines, layers: Layers, where: str | None = None) -> None:
    """warning <= critical <= slow; blame the key set by the most specific table."""
    values = {k: float(getattr(lines, attr)) for k, attr in LINE_KEYS.items()}
    for low, high in (
        ("warning_seconds", "critical_seconds"),
        ("critical_seconds", "slow_seconds"),
    ):
        if values[low] <= values[high]:
            continue
        prefix, blame = layers[-1][1], high
        for table, table_prefix in reversed(layers):
            if low in table or high in table:
                prefix, blame = table_prefix, high if high in table else low
                break
        other = low if blame == high else high
        relation = "at least" if blame == high else "at most"
        ctx = f" (with {where})" if where else ""
        raise ConfigError(
            f"{prefix}.{blame}: must be {relation} {other} ({values[other]:g}){ctx}, "
            f"got {values[blame]:g}"
        )

def _filters(table: Mapping[str, Any]) -> Filters:
    check_keys(table, FILTER_KEYS, "filters")
    patterns = []
    for i, pattern in enumerate(as_str_list(table.get("ad_patterns", []), "filters.ad_patterns")):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(
                f"filters.ad_patterns[{i}]: invalid regular expression {pattern!r}: {exc}"
            ) from None
    block = as_str_list(table.get("block_list", []), "filters.block_list")
    return Filters(ad_patterns=tuple(patterns), block_list=frozenset(block))


def _agents(value: Any) -> dict[str, AgentInfo]:
    if not isinstance(value, list):
        raise ConfigError("agents: must be an array of tables ([[agents]])")
    agents: dict[str, AgentInfo] = {}
    for i, raw in enumerate(value):
        prefix = f"agents[{i}]"
        table = as_table(raw, prefix)
        check_keys(table, AGENT_KEYS, prefix)
        if "id" not in table:
            raise ConfigError(f"{prefix}.id: required")
        agent_id = as_str(table["id"], f"{prefix}.id")
        if agent_id in agents:
            raise ConfigError(f"{prefix}.id: duplicate agent id {agent_id!r}")
        name = as_str(table.get("name", ""), f"{prefix}.name", allow_empty=True)
        team = as_str(table.get("team", UNASSIGNED_TEAM), f"{prefix}.team")
        if team == RESERVED_TEAM:
            raise ConfigError(
                f"{prefix}.team: {team!r} is reserved for agents past KEFU_MAX_AGENTS"
            )
        target: float | None = None
        if "sales_target" in table:
            raw_target = table["sales_target"]
            if (
                isinstance(raw_target, bool)
                or not isinstance(raw_target, int | float)
                or not math.isfinite(raw_target)
                or raw_target < 0
            ):
                raise ConfigError(
                    f"{prefix}.sales_target: must be a number >= 0, got {raw_target!r}"
                )
            target = float(raw_target)
        limit: int | None = None
        if "max_concurrent" in table:
            raw_limit = table["max_concurrent"]
            low, high = MAX_CONCURRENT_RANGE
            if isinstance(raw_limit, bool) or not isinstance(raw_limit, int) or not (
                    low <= raw_limit <= high):
                raise ConfigError(
                    f"{prefix}.max_concurrent: must be an integer {low}-{high}, got {raw_limit!r}"
                )
            limit = raw_limit
        agents[agent_id] = AgentInfo(id=agent_id, name=name, team=team, sales_target=target,
                                     max_concurrent=limit)
    return agents
