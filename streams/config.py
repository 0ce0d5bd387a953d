"""Configuration: business rules from one TOML file, deployment settings from the environment.

docs/interfaces.md splits them so a support manager can edit response lines and the roster without
touching deployment, and an SRE can move brokers without touching grading. Everything is
validated up front: a typo must fail at start-up with the full dotted key named, not silently
grade agents against a default.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.domain.model import MAX_CONCURRENT_RANGE
from streams.domain.rules import AgentInfo, Filters, Lines, ShopRules
from streams.domain.scorecard import ITEMS as SCORE_ITEMS
from streams.domain.scorecard import ScorecardRules

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

UNASSIGNED_TEAM = "unassigned"
RESERVED_TEAM = "over_limit"  # streams.domain.limits.OVER_LIMIT_TEAM: series past the cap
MAX_REORDER_WINDOW_MS = 60_000


class ConfigError(Exception):
    """A bad configuration value; the message names the key (or variable) and the problem."""


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


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


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
    _check_keys(data, TOP_KEYS, "")
    defaults_raw = _table(data.get("defaults", {}), "defaults")
    shops_raw = _table(data.get("shops", {}), "shops")
    teams_raw = _table(data.get("teams", {}), "teams")

    _check_keys(defaults_raw, RULE_KEYS, "defaults")
    default_profile = _profile(defaults_raw, "defaults", DEFAULT_PROFILE)
    defaults = _resolve(default_profile, [(defaults_raw, "defaults")])

    shops: dict[str, ShopRules] = {}
    shop_layers: dict[str, Layers] = {}
    for shop_id, raw in shops_raw.items():
        prefix = f"shops.{shop_id}"
        table = _table(raw, prefix)
        _check_keys(table, RULE_KEYS, prefix)
        # Profile first, then explicit [defaults] keys, then explicit [shops.X] keys.
        layers = [(defaults_raw, "defaults"), (table, prefix)]
        shops[shop_id] = _resolve(_profile(table, prefix, default_profile), layers)
        shop_layers[shop_id] = layers

    team_overrides: dict[str, dict[str, float]] = {}
    team_lines: dict[str, Lines] = {}
    for team, raw in teams_raw.items():
        prefix = f"teams.{team}"
        table = _table(raw, prefix)
        _check_keys(table, tuple(LINE_KEYS), prefix)
        overrides = {LINE_KEYS[k]: _seconds(v, f"{prefix}.{k}") for k, v in table.items()}
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

    score_default, score_teams = _scorecards(_table(data.get("scorecard", {}), "scorecard"))
    return Config(
        defaults=defaults,
        shops=shops,
        team_lines=team_lines,
        filters=_filters(_table(data.get("filters", {}), "filters")),
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
    _check_keys(table, SCORECARD_KEYS, prefix)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "weights":
            weights = _table(value, f"{prefix}.weights")
            _check_keys(weights, SCORE_ITEMS, f"{prefix}.weights")
            merged = dict(base.weights)
            for item, w in weights.items():
                merged[item] = _non_negative(w, f"{prefix}.weights.{item}")
            total = sum(merged.values())
            if abs(total - 100) > 1e-9:
                raise ConfigError(f"{prefix}.weights: must add up to 100, got {total:g}")
            values["weights"] = merged
        else:
            values[key] = _non_negative(value, f"{prefix}.{key}")
    return replace(base, **values)


def _scorecards(table: Mapping[str, Any]) -> tuple[ScorecardRules, dict[str, ScorecardRules]]:
    teams_raw = _table(table.get("teams", {}), "scorecard.teams")
    _check_keys(table, (*SCORECARD_KEYS, "teams"), "scorecard")
    base = _scorecard({k: v for k, v in table.items() if k != "teams"}, "scorecard",
                      ScorecardRules())
    teams = {
        team: _scorecard(_table(raw, f"scorecard.teams.{team}"), f"scorecard.teams.{team}", base)
        for team, raw in teams_raw.items()
    }
    return base, teams


def _non_negative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: must be a number >= 0, got {value!r}")
    return float(value)


def _profile(table: Mapping[str, Any], prefix: str, fallback: str) -> str:
    if "profile" not in table:
        return fallback
    value = table["profile"]
    key = f"{prefix}.profile"
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    if value not in PROFILES:
        raise ConfigError(
            f"{key}: unknown profile {value!r}{_hint(value, PROFILES)}; "
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
        changes["timezone"] = _timezone(table["timezone"], f"{prefix}.timezone")
    line_changes = {
        LINE_KEYS[k]: _seconds(table[k], f"{prefix}.{k}") for k in LINE_KEYS if k in table
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


def _timezone(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be an IANA time zone name, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{key}: unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')"
        ) from None
    return value


def _seconds(value: Any, key: str) -> float:
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


def _filters(table: Mapping[str, Any]) -> Filters:
    _check_keys(table, FILTER_KEYS, "filters")
    patterns = []
    for i, pattern in enumerate(_str_list(table.get("ad_patterns", []), "filters.ad_patterns")):
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(
                f"filters.ad_patterns[{i}]: invalid regular expression {pattern!r}: {exc}"
            ) from None
    block = _str_list(table.get("block_list", []), "filters.block_list")
    return Filters(ad_patterns=tuple(patterns), block_list=frozenset(block))


def _agents(value: Any) -> dict[str, AgentInfo]:
    if not isinstance(value, list):
        raise ConfigError("agents: must be an array of tables ([[agents]])")
    agents: dict[str, AgentInfo] = {}
    for i, raw in enumerate(value):
        prefix = f"agents[{i}]"
        table = _table(raw, prefix)
        _check_keys(table, AGENT_KEYS, prefix)
        if "id" not in table:
            raise ConfigError(f"{prefix}.id: required")
        agent_id = _str(table["id"], f"{prefix}.id")
        if agent_id in agents:
            raise ConfigError(f"{prefix}.id: duplicate agent id {agent_id!r}")
        name = _str(table.get("name", ""), f"{prefix}.name", allow_empty=True)
        team = _str(table.get("team", UNASSIGNED_TEAM), f"{prefix}.team")
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


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a table, got {value!r}")
    return cast(Mapping[str, Any], value)


def _str(value: Any, key: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
    for i, item in enumerate(value):
        _str(item, f"{key}[{i}]")
    return cast(list[str], value)


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{dotted}: unknown key{_hint(key, allowed)}")


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]}?" if close else ""


# --------------------------------------------------------------------------------------------
# Settings (environment)
# --------------------------------------------------------------------------------------------

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class Settings:
    """Deployment settings from `KEFU_*` variables; defaults suit a laptop and the demo."""

    brokers: tuple[str, ...] = ("kafka://127.0.0.1:9092",)
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    data_dir: Path = Path("./.kefu-data")
    partitions: int = 8
    clock: Literal["wall", "event"] = "wall"
    app_id: str = "kefu-pulse"
    topic_chat: str = "kefu.chat"
    topic_orders: str = "kefu.orders"
    topic_ratings: str = "kefu.ratings"
    topic_agents: str = "kefu.agents"
    topic_deadletter: str = "kefu.deadletter"
    # The embedded broker holds every group join for half the session timeout, so Faust's
    # 60 s default would make a start take ~32 s.
    session_timeout_s: float = 6.0
    heartbeat_s: float = 1.5
    standby_replicas: int = 0
    batch_max: int = 1000
    # Seconds of snapshot refresh per 0.5 s tick (most-stale agents first): at most ~30% of a
    # core goes to re-snapshotting, the rest to processing events.
    snapshot_budget_s: float = 0.15
    # How long a fetch may wait for data (Faust hard-codes 1.5 s; each of the two hops pays it
    # on a broker that answers when the wait runs out).
    fetch_wait_s: float = 0.1
    max_event_bytes: int = 65536
    # Cardinality bound per worker (see streams.domain.limits and the README on sizing).
    max_agents: int = 5000
    max_shops: int = 500
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    log_level: str = "info"

    @property
    def bootstrap(self) -> list[str]:
        """["host:port", ...] as kafka-python wants them."""
        return [b.removeprefix("kafka://") for b in self.brokers]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `KEFU_*` variables (empty = unset); raise ConfigError naming the variable."""
        e = _Env(os.environ if env is None else env)
        protocol = e.choice("KEFU_SECURITY_PROTOCOL", SECURITY_PROTOCOLS, "PLAINTEXT", upper=True)
        mechanism = e.optional_choice("KEFU_SASL_MECHANISM", SASL_MECHANISMS)
        username = e.text("KEFU_SASL_USERNAME")
        password = e.password()
        if protocol.startswith("SASL_"):
            mechanism = mechanism or "PLAIN"
            if username is None:
                raise ConfigError(
                    f"KEFU_SASL_USERNAME: required with KEFU_SECURITY_PROTOCOL={protocol}"
                )
            if password is None:
                raise ConfigError(
                    f"KEFU_SASL_PASSWORD: required with KEFU_SECURITY_PROTOCOL={protocol} "
                    "(or KEFU_SASL_PASSWORD_FILE)"
                )
        session = e.number("KEFU_SESSION_TIMEOUT", cls.session_timeout_s)
        heartbeat = e.number("KEFU_HEARTBEAT", cls.heartbeat_s)
        if heartbeat >= session:
            raise ConfigError(
                f"KEFU_HEARTBEAT: must be less than KEFU_SESSION_TIMEOUT ({session:g}), "
                f"got {heartbeat:g}"
            )
        data_dir = e.text("KEFU_DATA_DIR")
        return cls(
            brokers=e.brokers(),
            web_host=e.text("KEFU_WEB_HOST") or cls.web_host,
            web_port=e.integer("KEFU_WEB_PORT", cls.web_port, 1, 65535),
            data_dir=Path(data_dir).expanduser() if data_dir else cls.data_dir,
            partitions=e.integer("KEFU_PARTITIONS", cls.partitions, 1, 10_000),
            clock=cast(Literal["wall", "event"], e.choice("KEFU_CLOCK", ("wall", "event"), "wall")),
            app_id=e.topic("KEFU_APP_ID", cls.app_id),
            topic_chat=e.topic("KEFU_TOPIC_CHAT", cls.topic_chat),
            topic_orders=e.topic("KEFU_TOPIC_ORDERS", cls.topic_orders),
            topic_ratings=e.topic("KEFU_TOPIC_RATINGS", cls.topic_ratings),
            topic_agents=e.topic("KEFU_TOPIC_AGENTS", cls.topic_agents),
            topic_deadletter=e.topic("KEFU_TOPIC_DEADLETTER", cls.topic_deadletter),
            session_timeout_s=session,
            heartbeat_s=heartbeat,
            standby_replicas=e.integer("KEFU_STANDBY_REPLICAS", cls.standby_replicas, 0, 100),
            batch_max=e.integer("KEFU_BATCH_MAX", cls.batch_max, 1, 1_000_000),
            snapshot_budget_s=e.number("KEFU_SNAPSHOT_BUDGET", cls.snapshot_budget_s),
            fetch_wait_s=e.number("KEFU_FETCH_WAIT", cls.fetch_wait_s),
            max_event_bytes=e.integer("KEFU_MAX_EVENT_BYTES", cls.max_event_bytes, 256, 1 << 30),
            max_agents=e.integer("KEFU_MAX_AGENTS", cls.max_agents, 1, 1_000_000),
            max_shops=e.integer("KEFU_MAX_SHOPS", cls.max_shops, 1, 1_000_000),
            security_protocol=protocol,
            ssl_cafile=e.file("KEFU_SSL_CAFILE"),
            ssl_certfile=e.file("KEFU_SSL_CERTFILE"),
            ssl_keyfile=e.file("KEFU_SSL_KEYFILE"),
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=password,
            log_level=e.choice("KEFU_LOG_LEVEL", LOG_LEVELS, cls.log_level),
        )


class _Env:
    """Typed reads of environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name}: must be a positive number of seconds, got {raw!r}")
        return value

    def choice(
        self, name: str, choices: tuple[str, ...], default: str, *, upper: bool = False
    ) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {raw!r}")
        return value

    def optional_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        return None if raw is None else self.choice(name, choices, "", upper=True)

    def topic(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if not _TOPIC_NAME.match(raw) or raw in (".", ".."):
            raise ConfigError(
                f"{name}: must be a Kafka topic name (letters, digits, '.', '_', '-'), got {raw!r}"
            )
        return raw

    def file(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not Path(raw).expanduser().is_file():
            raise ConfigError(f"{name}: file not found: {raw}")
        return None if raw is None else str(Path(raw).expanduser())

    def password(self) -> str | None:
        direct = self.env.get("KEFU_SASL_PASSWORD") or None
        path = self.text("KEFU_SASL_PASSWORD_FILE")
        if path is None:
            return direct
        if direct is not None:
            raise ConfigError(
                "KEFU_SASL_PASSWORD_FILE: set either KEFU_SASL_PASSWORD or "
                "KEFU_SASL_PASSWORD_FILE, not both"
            )
        try:
            # Secrets mounted from files usually end with a newline that is not part of them.
            return Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"KEFU_SASL_PASSWORD_FILE: cannot read {path}: {exc.strerror or exc}"
            ) from None

    def brokers(self) -> tuple[str, ...]:
        raw = self.text("KEFU_BROKER")
        if raw is None:
            return Settings.brokers
        urls = [
            _broker_url(part.strip()) for part in raw.replace(";", ",").split(",") if part.strip()
        ]
        if not urls:
            raise ConfigError(f"KEFU_BROKER: no broker address in {raw!r}")
        return tuple(urls)


_BROKER = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>\[[^\]]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?/?$"
)


def _broker_url(text: str) -> str:
    """Normalise "host:port" or "kafka://host:port" to "kafka://host:port" (port 9092 if absent)."""
    m = _BROKER.match(text)
    if m is None:
        raise ConfigError(
            f"KEFU_BROKER: cannot parse broker address {text!r}; use kafka://host:port"
        )
    scheme = (m.group("scheme") or "kafka").lower()
    if scheme != "kafka":
        raise ConfigError(
            f"KEFU_BROKER: unsupported scheme {scheme!r} in {text!r}; use kafka://host:port"
        )
    port = int(m.group("port") or 9092)
    if not 1 <= port <= 65535:
        raise ConfigError(f"KEFU_BROKER: port out of range in {text!r}")
    return f"kafka://{m.group('host')}:{port}"
