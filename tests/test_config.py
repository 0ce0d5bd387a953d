"""Business config (TOML) and deployment settings (env): defaults, precedence, and errors.

Every error must name the full dotted key: a support manager editing the file has only the
message to find the typo.
"""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streams.config import (
    PROFILES,
    Config,
    ConfigError,
    Settings,
    default_config,
    load_config,
    parse_config,
    parse_duration,
    parse_service_hours,
)
from streams.domain.rules import Lines, ShopRules

REPO = Path(__file__).resolve().parents[1]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "kefu.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


def shanghai_ms(hour: int, minute: int = 0) -> int:
    return int(datetime(2025, 11, 11, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


# --- defaults and profiles ---------------------------------------------------------------


def test_defaults_match_spec() -> None:
    rules = default_config().defaults
    assert rules.profile == "taobao"
    assert rules.timezone == "Asia/Shanghai"
    assert rules.lines == Lines(warning=30, critical=40, slow=180, page_wait=180)
    assert rules.session_idle_ms == 10 * 60_000
    assert rules.unanswered_after_ms == 10 * 60_000
    assert rules.attribution_window_ms == 24 * 3_600_000
    assert rules.reorder_window_ms == 2_000
    assert rules.service_hours == ()
    assert rules.in_service(shanghai_ms(3))


def test_default_config_lookups() -> None:
    config = default_config()
    assert config.rules("any-shop") == config.defaults
    assert config.lines("any-shop", "any-team") == config.defaults.lines
    assert config.team_of("a1") == "unassigned"
    assert config.agent("a1") is None
    assert not config.filters.is_ad("b1", "hello")


def test_no_path_and_no_env_gives_defaults() -> None:
    assert load_config(None, env={}) == default_config()
    assert load_config(None, env={"KEFU_CONFIG": ""}) == default_config()


def test_path_from_kefu_config(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[defaults]\nprofile = "pdd"\n', encoding="utf-8")
    assert load_config(env={"KEFU_CONFIG": str(path)}).defaults.profile == "pdd"


@pytest.mark.parametrize(
    ("profile", "lines", "hours"),
    [
        ("taobao", (30, 40, 180, 180), ()),
        ("jd", (30, 40, 180, 180), ((9 * 60, 23 * 60),)),
        ("pdd", (50, 60, 180, 180), ((8 * 60, 23 * 60),)),
    ],
)
def test_profiles(
    tmp_path: Path,
    profile: str,
    lines: tuple[float, float, float, float],
    hours: tuple[tuple[int, int], ...],
) -> None:
    config = load(tmp_path, f'[shops.s1]\nprofile = "{profile}"\n')
    rules = config.rules("s1")
    assert rules.profile == profile
    assert (rules.lines.warning, rules.lines.critical, rules.lines.slow) == lines[:3]
    assert rules.lines.page_wait == lines[3]
    assert rules.service_hours == hours
    assert rules.session_idle_ms == rules.unanswered_after_ms == 600_000
    assert PROFILES[profile] == rules
    assert config.defaults.profile == "taobao"  # a shop's profile does not leak to others


def test_jd_leaves_out_night_sessions() -> None:
    jd = PROFILES["jd"]
    assert jd.in_service(shanghai_ms(9))
    assert jd.in_service(shanghai_ms(22, 59))
    assert not jd.in_service(shanghai_ms(23))
    assert not jd.in_service(shanghai_ms(8, 59))


def test_pdd_grades_0800_to_2300() -> None:
    pdd = PROFILES["pdd"]
    assert not pdd.in_service(shanghai_ms(7, 59))
    assert pdd.in_service(shanghai_ms(8))
    assert not pdd.in_service(shanghai_ms(23, 30))


# --- precedence ----------------------------------------------------------------------------


def test_precedence_profile_then_defaults_then_shop(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [defaults]
        profile = "pdd"
        slow_seconds = 200
        session_idle = "15m"

        [shops.a]                 # inherits pdd from [defaults]

        [shops.b]
        profile = "jd"            # profile, then explicit [defaults] keys still apply

        [shops.c]
        warning_seconds = 55
        session_idle = "5m"
        timezone = "Europe/Berlin"
        """,
    )
    assert config.defaults.lines == Lines(50, 60, 200, 180)
    a, b, c = config.rules("a"), config.rules("b"), config.rules("c")
    assert a.profile == "pdd" and a.lines == Lines(50, 60, 200, 180)
    assert a.session_idle_ms == 15 * 60_000
    assert b.profile == "jd" and b.lines == Lines(30, 40, 200, 180)
    assert b.service_hours == ((540, 1380),)
    assert b.session_idle_ms == 15 * 60_000
    assert c.lines == Lines(55, 60, 200, 180)
    assert c.session_idle_ms == 5 * 60_000
    assert c.timezone == "Europe/Berlin"
    assert config.rules("unlisted") == config.defaults


def test_team_lines_override_shop_and_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [shops.p]
        profile = "pdd"

        [teams.after-sales]
        warning_seconds = 35

        [teams.vip]
        warning_seconds = 20
        critical_seconds = 25
        slow_seconds = 60
        page_wait_seconds = 90
        """,
    )
    # Only the keys a team sets are overridden; the rest come from the shop, then defaults.
    assert config.lines("p", "after-sales") == Lines(35, 60, 180, 180)
    assert config.lines("other", "after-sales") == Lines(35, 40, 180, 180)
    assert config.lines("p", "vip") == Lines(20, 25, 60, 90)
    assert config.lines("p", "pre-sales") == Lines(50, 60, 180, 180)
    assert config.lines("other", "pre-sales") == Lines(30, 40, 180, 180)
    assert config.team_lines["vip"] == Lines(20, 25, 60, 90)
    assert config.lines("p", "vip") is config.lines("p", "vip")  # cached: called per event


def test_team_override_checked_against_every_shop(tmp_path: Path) -> None:
    # Fine on top of the defaults (45 <= 55 <= 180), broken in shop q (slow 50).
    with pytest.raises(
        ConfigError,
        match=r"^teams\.t\.critical_seconds: must be at most slow_seconds \(50\) \(with shops\.q\)",
    ):
        load(
            tmp_path,
            """
            [shops.q]
            slow_seconds = 50

            [teams.t]
            warning_seconds = 45
            critical_seconds = 55
            """,
        )


def test_roster_and_filters(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [filters]
        ad_patterns = ["加微信", "(?i)https?://"]
        block_list = ["spammer"]

        [[agents]]
        id = "a7"
        name = "小美"
        team = "pre-sales"
        sales_target = 50000

        [[agents]]
        id = "a8"
        """,
    )
    assert config.team_of("a7") == "pre-sales"
    assert config.team_of("a8") == "unassigned"
    assert config.team_of("nobody") == "unassigned"
    a7 = config.agent("a7")
    assert a7 is not None and a7.name == "小美" and a7.sales_target == 50000
    agent8 = config.agent("a8")
    assert agent8 is not None and agent8.sales_target is None
    assert config.filters.is_ad("b1", "亲，加微信领红包")
    assert config.filters.is_ad("b1", "see HTTP://x.example")
    assert config.filters.is_ad("spammer", None)
    assert not config.filters.is_ad("b1", "这件有红色吗？")


# --- validation ----------------------------------------------------------------------------

INVALID = [
    (
        "[defaults]\nwarnig_seconds = 30",
        r"defaults\.warnig_seconds: unknown key; did you mean warning_seconds\?",
    ),
    (
        "[shops.s1]\nwarnig_seconds = 30",
        r"shops\.s1\.warnig_seconds: unknown key; did you mean warning_seconds\?",
    ),
    ("[teams.t]\nsession_idle = '5m'", r"teams\.t\.session_idle: unknown key"),
    ("[filters]\nad_pattern = []", r"filters\.ad_pattern: unknown key; did you mean ad_patterns\?"),
    ("[[agents]]\nid = 'a'\nteem = 'x'", r"agents\[0\]\.teem: unknown key; did you mean team\?"),
    ("[default]\nprofile = 'jd'", r"default: unknown key; did you mean defaults\?"),
    (
        "[shops.s1]\nwarning_seconds = -3",
        r"shops\.s1\.warning_seconds: must be a positive number, got -3",
    ),
    ("[shops.s1]\nwarning_seconds = 0", r"shops\.s1\.warning_seconds: must be a positive number"),
    (
        "[shops.s1]\nwarning_seconds = true",
        r"shops\.s1\.warning_seconds: must be a positive number",
    ),
    ("[shops.s1]\nprofile = 'tmall'", r"shops\.s1\.profile: unknown profile 'tmall'"),
    ("[defaults]\nprofile = 'jdd'", r"defaults\.profile: unknown profile 'jdd'; did you mean jd\?"),
    ("[shops.s1]\ntimezone = 'Asia/Shangai'", r"shops\.s1\.timezone: unknown time zone"),
    ("[defaults]\ntimezone = 8", r"defaults\.timezone: must be an IANA time zone"),
    (
        "[shops.s1]\nwarning_seconds = 45",
        r"shops\.s1\.warning_seconds: must be at most critical_seconds \(40\), got 45",
    ),
    (
        "[defaults]\ncritical_seconds = 200",
        r"defaults\.critical_seconds: must be at most slow_seconds \(180\)",
    ),
    (
        "[shops.s1]\ncritical_seconds = 20",
        r"shops\.s1\.critical_seconds: must be at least warning_seconds \(30\), got 20",
    ),
    (
        "[shops.s1]\nprofile = 'pdd'\ncritical_seconds = 45",
        r"shops\.s1\.critical_seconds: must be at least warning_seconds \(50\)",
    ),
    (
        "[teams.t]\nslow_seconds = 35",
        r"teams\.t\.slow_seconds: must be at least critical_seconds \(40\)",
    ),
    ("[shops.s1]\nsession_idle = '0s'", r"shops\.s1\.session_idle: must be a positive duration"),
    (
        "[shops.s1]\nunanswered_after = -5",
        r"shops\.s1\.unanswered_after: must be a positive duration",
    ),
    (
        "[defaults]\nattribution_window = '1 day'",
        r"defaults\.attribution_window: cannot parse duration",
    ),
    ("[shops.s1]\nreorder_window = '2m'", r"shops\.s1\.reorder_window: must be at most 60s"),
    ("[defaults]\nreorder_window = 61", r"defaults\.reorder_window: must be at most 60s"),
    ("[shops.s1]\nservice_hours = '08:00-23:00'", r"shops\.s1\.service_hours: must be a list"),
    (
        "[shops.s1]\nservice_hours = ['8-23']",
        r"shops\.s1\.service_hours\[0\]: must look like 'HH:MM-HH:MM'",
    ),
    (
        "[shops.s1]\nservice_hours = ['08:00-23:00', '25:00-26:00']",
        r"shops\.s1\.service_hours\[1\]: not a valid time",
    ),
    (
        "[shops.s1]\nservice_hours = ['24:00-02:00']",
        r"shops\.s1\.service_hours\[0\]: not a valid time",
    ),
    ("[shops.s1]\nservice_hours = ['09:00-09:00']", r"shops\.s1\.service_hours\[0\]: empty range"),
    (
        "[filters]\nad_patterns = ['ok', '(unclosed']",
        r"filters\.ad_patterns\[1\]: invalid regular expression",
    ),
    ("[filters]\nblock_list = [1]", r"filters\.block_list\[0\]: must be a non-empty string"),
    ("[[agents]]\nname = 'x'", r"agents\[0\]\.id: required"),
    ("[[agents]]\nid = 'a'\n[[agents]]\nid = 'a'", r"agents\[1\]\.id: duplicate agent id 'a'"),
    (
        "[[agents]]\nid = 'a'\nsales_target = -1",
        r"agents\[0\]\.sales_target: must be a number >= 0",
    ),
    ("[[agents]]\nid = 'a'\nteam = ''", r"agents\[0\]\.team: must be a non-empty string"),
    ("shops = 3", r"shops: must be a table"),
    ("[shops]\ns1 = 3", r"shops\.s1: must be a table"),
    ("agents = {id = 'a'}", r"agents: must be an array of tables"),
]


@pytest.mark.parametrize(("toml", "message"), INVALID)
def test_errors_name_the_dotted_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        load(tmp_path, toml + "\n")


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[defaults]\nprofile = "jd"\nwarning_seconds = \n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config"):
        load_config(tmp_path / "nope.toml")


# --- durations and service hours -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("10m", 600_000),
        ("24h", 86_400_000),
        ("2s", 2_000),
        ("500ms", 500),
        ("1h30m", 5_400_000),
        ("1m30s", 90_000),
        ("1.5s", 1_500),
        ("1d", 86_400_000),
        (" 2S ", 2_000),
        (90, 90_000),
        (0.25, 250),
    ],
)
def test_parse_duration(value: object, ms: int) -> None:
    assert parse_duration(value, "k") == ms


@pytest.mark.parametrize("value", ["", "10", "m", "10x", "1h-5m", "ten minutes", 0, -1, True, None])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_duration(value, "k")


def test_service_hours_across_midnight_in_shanghai() -> None:
    hours = parse_service_hours(["22:00-02:00", "09:00-12:00"], "k")
    assert hours == ((22 * 60, 2 * 60), (9 * 60, 12 * 60))
    rules = ShopRules(service_hours=hours)
    assert rules.in_service(shanghai_ms(22))
    assert rules.in_service(shanghai_ms(23, 59))
    assert rules.in_service(shanghai_ms(0))
    assert rules.in_service(shanghai_ms(1, 59))
    assert not rules.in_service(shanghai_ms(2))
    assert not rules.in_service(shanghai_ms(8, 59))
    assert rules.in_service(shanghai_ms(11, 30))
    assert not rules.in_service(shanghai_ms(12))
    assert not rules.in_service(shanghai_ms(21, 59))
    # 14:00 UTC is 22:00 in Shanghai: the shop's zone decides, not UTC.
    utc_14 = int(datetime(2025, 11, 11, 14, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert rules.in_service(utc_14)


def test_service_hours_until_2400(tmp_path: Path) -> None:
    config = load(tmp_path, "[shops.s]\nservice_hours = ['08:00-24:00']\n")
    rules = config.rules("s")
    assert rules.service_hours == ((480, 1440),)
    assert rules.in_service(shanghai_ms(23, 59))
    assert not rules.in_service(shanghai_ms(0, 30))


# --- the example file ----------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(REPO / "deploy" / "kefu.example.toml")
    shops = dict(config.shops)
    assert {r.profile for r in shops.values()} == {"jd", "pdd"}
    pdd = next(r for r in shops.values() if r.profile == "pdd")
    assert pdd.lines.warning == 55 and pdd.lines.critical == 60
    jd = next(r for r in shops.values() if r.profile == "jd")
    assert jd.service_hours == ((540, 1380),)
    assert len(config.agents) == 6
    assert {a.team for a in config.agents.values()} == {"pre-sales", "after-sales"}
    assert all(a.sales_target is not None for a in config.agents.values())
    assert config.filters.is_ad("b", "加微信") and config.filters.is_ad("b", "QQ号123")
    assert config.filters.is_ad("b", "https://t.cn/x")


# --- Settings (environment) ----------------------------------------------------------------


def test_settings_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.brokers == ("kafka://127.0.0.1:9092",)
    assert s.bootstrap == ["127.0.0.1:9092"]
    assert (s.web_host, s.web_port, s.partitions, s.clock) == ("0.0.0.0", 6066, 8, "wall")
    assert s.data_dir == Path("./.kefu-data")
    assert (s.topic_chat, s.topic_orders, s.topic_ratings, s.topic_deadletter) == (
        "kefu.chat",
        "kefu.orders",
        "kefu.ratings",
        "kefu.deadletter",
    )
    assert s.session_timeout_s == 6.0 and s.heartbeat_s == 1.5
    assert s.security_protocol == "PLAINTEXT" and s.sasl_mechanism is None


def test_settings_from_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    s = Settings.from_env(
        {
            "KEFU_BROKER": "kafka://k1:9092, k2:9093 ,k3",
            "KEFU_WEB_HOST": "127.0.0.1",
            "KEFU_WEB_PORT": "7000",
            "KEFU_DATA_DIR": str(tmp_path / "data"),
            "KEFU_PARTITIONS": "16",
            "KEFU_CLOCK": "event",
            "KEFU_APP_ID": "kefu-test",
            "KEFU_TOPIC_CHAT": "c",
            "KEFU_TOPIC_ORDERS": "o",
            "KEFU_TOPIC_RATINGS": "r",
            "KEFU_TOPIC_DEADLETTER": "d",
            "KEFU_SESSION_TIMEOUT": "30",
            "KEFU_HEARTBEAT": "3",
            "KEFU_STANDBY_REPLICAS": "1",
            "KEFU_BATCH_MAX": "500",
            "KEFU_SNAPSHOT_BUDGET": "0.2",
            "KEFU_GC_THRESHOLD": "0",
            "KEFU_HEAP_TRIM": "0",
            "KEFU_QUIET_AFTER": "0",
            "KEFU_MAX_EVENT_BYTES": "131072",
            "KEFU_SECURITY_PROTOCOL": "sasl_ssl",
            "KEFU_SSL_CAFILE": str(ca),
            "KEFU_SASL_MECHANISM": "scram-sha-512",
            "KEFU_SASL_USERNAME": "kefu",
            "KEFU_SASL_PASSWORD_FILE": str(secret),
            "KEFU_LOG_LEVEL": "DEBUG",
        }
    )
    assert s.brokers == ("kafka://k1:9092", "kafka://k2:9093", "kafka://k3:9092")
    assert s.bootstrap == ["k1:9092", "k2:9093", "k3:9092"]
    assert (s.web_host, s.web_port, s.partitions, s.clock) == ("127.0.0.1", 7000, 16, "event")
    assert s.data_dir == tmp_path / "data"
    assert (s.app_id, s.topic_chat, s.topic_orders, s.topic_ratings, s.topic_deadletter) == (
        "kefu-test",
        "c",
        "o",
        "r",
        "d",
    )
    assert (s.session_timeout_s, s.heartbeat_s, s.standby_replicas) == (30.0, 3.0, 1)
    assert (s.batch_max, s.snapshot_budget_s, s.max_event_bytes) == (500, 0.2, 131072)
    assert s.gc_threshold == 0 and s.heap_trim_s == 0.0 and s.quiet_after_s == 0.0
    assert s.security_protocol == "SASL_SSL" and s.ssl_cafile == str(ca)
    assert (s.sasl_mechanism, s.sasl_username, s.sasl_password) == (
        "SCRAM-SHA-512",
        "kefu",
        "s3cret",
    )
    assert s.log_level == "debug"
    assert "s3cret" not in repr(s)


def test_settings_sasl_defaults_to_plain() -> None:
    s = Settings.from_env(
        {
            "KEFU_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KEFU_SASL_USERNAME": "u",
            "KEFU_SASL_PASSWORD": "p",
        }
    )
    assert s.sasl_mechanism == "PLAIN" and s.sasl_password == "p"


def test_settings_empty_values_are_unset() -> None:
    assert Settings.from_env({"KEFU_WEB_PORT": "", "KEFU_BROKER": " "}) == Settings()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KEFU_BROKER": "http://k:9092"}, "KEFU_BROKER"),
        ({"KEFU_BROKER": "k:notaport"}, "KEFU_BROKER"),
        ({"KEFU_BROKER": "k:70000"}, "KEFU_BROKER"),
        ({"KEFU_BROKER": ",,"}, "KEFU_BROKER"),
        ({"KEFU_WEB_PORT": "abc"}, "KEFU_WEB_PORT"),
        ({"KEFU_WEB_PORT": "0"}, "KEFU_WEB_PORT"),
        ({"KEFU_PARTITIONS": "0"}, "KEFU_PARTITIONS"),
        ({"KEFU_CLOCK": "replay"}, "KEFU_CLOCK"),
        ({"KEFU_TOPIC_CHAT": "bad topic"}, "KEFU_TOPIC_CHAT"),
        ({"KEFU_APP_ID": "a/b"}, "KEFU_APP_ID"),
        ({"KEFU_SESSION_TIMEOUT": "-1"}, "KEFU_SESSION_TIMEOUT"),
        ({"KEFU_HEARTBEAT": "10"}, "KEFU_HEARTBEAT"),
        ({"KEFU_STANDBY_REPLICAS": "-1"}, "KEFU_STANDBY_REPLICAS"),
        ({"KEFU_GC_THRESHOLD": "-1"}, "KEFU_GC_THRESHOLD"),
        ({"KEFU_HEAP_TRIM": "-1"}, "KEFU_HEAP_TRIM"),
        ({"KEFU_HEAP_TRIM": "inf"}, "KEFU_HEAP_TRIM"),
        ({"KEFU_QUIET_AFTER": "-5"}, "KEFU_QUIET_AFTER"),
        ({"KEFU_SNAPSHOT_BUDGET": "0"}, "KEFU_SNAPSHOT_BUDGET"),
        ({"KEFU_BATCH_MAX": "x"}, "KEFU_BATCH_MAX"),
        ({"KEFU_SNAPSHOT_BUDGET": "nan"}, "KEFU_SNAPSHOT_BUDGET"),
        ({"KEFU_MAX_EVENT_BYTES": "1"}, "KEFU_MAX_EVENT_BYTES"),
        ({"KEFU_SECURITY_PROTOCOL": "TLS"}, "KEFU_SECURITY_PROTOCOL"),
        ({"KEFU_SSL_CAFILE": "/nonexistent/ca.pem"}, "KEFU_SSL_CAFILE"),
        ({"KEFU_SASL_MECHANISM": "GSSAPI"}, "KEFU_SASL_MECHANISM"),
        ({"KEFU_SECURITY_PROTOCOL": "SASL_SSL", "KEFU_SASL_PASSWORD": "p"}, "KEFU_SASL_USERNAME"),
        ({"KEFU_SECURITY_PROTOCOL": "SASL_SSL", "KEFU_SASL_USERNAME": "u"}, "KEFU_SASL_PASSWORD"),
        ({"KEFU_SASL_PASSWORD": "p", "KEFU_SASL_PASSWORD_FILE": "/x"}, "KEFU_SASL_PASSWORD_FILE"),
        ({"KEFU_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "KEFU_SASL_PASSWORD_FILE"),
        ({"KEFU_LOG_LEVEL": "loud"}, "KEFU_LOG_LEVEL"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env(env)


def test_max_future_skew_defaults_to_five_minutes_and_is_configurable() -> None:
    assert default_config().rules("any").max_future_skew_ms == 300_000
    cfg = parse_config({"defaults": {"max_future_skew": "1m"},
                        "shops": {"s": {"max_future_skew": "30s"}}})
    assert cfg.rules("other").max_future_skew_ms == 60_000
    assert cfg.rules("s").max_future_skew_ms == 30_000
