"""kefu-pulse Grafana dashboards as code (grafana-foundation-sdk).

    python grafana/generate.py            # (re)write grafana/dashboards/*.json
    python grafana/generate.py --check    # exit 1 if the committed JSON is not what this builds

Four dashboards, all on the provisioned Prometheus datasource (uid `kefu-prometheus`):

  kefu-wallboard  support-room TV (open with `?kiosk`): header tiles + agents worst first
  kefu-drilldown  shop → team → agent tables; each row links one level down, keeping the selection;
                  status time, agents by status, concurrent buyers and occupancy by team
  kefu-agent      one agent: response distribution (histogram), quantiles over time, reply rate,
                  waiting, status and load, resolution and missed buyers, business KPIs,
                  scorecard
  kefu-pipeline   the monitor itself: events by outcome, lag, rejects, ownership, readiness

Aggregation rules (the worker exports per-agent series; docs/metrics.md):
  * a ratio above agent level is a ratio of sums — sum(replied) / sum(received), or for a rate
    the worker only exports as a ratio, sum(rate × its denominator) / sum(denominator);
    never avg(rate);
  * quantiles never average: above agent level they come from the histogram
    (histogram_quantile over summed buckets), per agent from the worker's exact sketch;
  * a mean above agent level is weighted by its rounds.

Every metric a panel reads is exported by the worker, business KPIs and scorecard included:
tests/integration/test_grafana_queries.py runs each panel's query against a worker fed a
simulated day and fails on one that returns nothing (its PENDING_METRICS is empty).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import heatmap as hb
from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    DashboardLink,
    QueryVariable,
    Row,
    ThresholdsConfig,
    TimePicker,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models_dashboard
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

DATASOURCE_UID = "kefu-prometheus"
DS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAGS = ["kefu-pulse"]
TIMEZONE = "browser"

HIST = "kefu_response_time_histogram_seconds_bucket"
WINDOWS = ("today", "1h", "5m")  # first = default of the $window variable
# Scrape jobs of kefu-pulse workers (deploy/prometheus, docker-compose, the ServiceMonitor).
JOB = 'job=~"kefu.*"'

GREEN, AMBER, RED, BLUE = "green", "#EAB839", "red", "blue"


# ----------------------------------------------------------------------------------------------
# PromQL helpers
# ----------------------------------------------------------------------------------------------


def sel(*parts: str) -> str:
    """A label selector body from non-empty parts: sel('a="1"', '', 'b=~"x"') -> a="1",b=~"x"."""
    return ",".join(p for p in parts if p)


def by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def ratio_of_sums(num: str, den: str, labels: Sequence[str] = ()) -> str:
    return f"sum{by(labels)} ({num}) / sum{by(labels)} ({den})"


def weighted(metric: str, weight: str, flt: str, labels: Sequence[str] = ()) -> str:
    """Exact aggregate of a per-agent ratio or mean: sum(value × weight) / sum(weight).

    Both sides carry the same labels (one worker exports an agent's whole series set), so the
    product matches one to one.
    """
    return ratio_of_sums(f"{metric}{{{flt}}} * {weight}{{{flt}}}", f"{weight}{{{flt}}}", labels)


def within_share(flt: str, level: str = "warning", labels: Sequence[str] = ()) -> str:
    """Share of rounds answered within a line, from the per-window gauges (ratio × rounds)."""
    num = (
        f'kefu_rounds_within_target_ratio{{{flt},level="{level}"}}'
        f" * ignoring(level) kefu_rounds{{{flt}}}"
    )
    return ratio_of_sums(num, f"kefu_rounds{{{flt}}}", labels)


def hist_quantile(q: float, flt: str, rng: str, labels: Sequence[str] = ()) -> str:
    """A quantile over any set of agents, from the summed histogram buckets."""
    keep = ", ".join([*labels, "le"])
    return f"histogram_quantile({q}, sum by ({keep}) (rate({HIST}{{{flt}}}[{rng}])))"


def line(level: str) -> str:
    """An agent's own response line (kefu_response_target_seconds), one series per shop+team."""
    return f'max by (shop, team) (kefu_response_target_seconds{{level="{level}"}})'


def per_agent(expr: str) -> str:
    """Normalise to one series per (shop, team, agent) so table queries merge into rows."""
    return f"max by (shop, team, agent) ({expr})"


# Codes of kefu_agent_status for one number per agent (0 = no status event yet); the value
# mapping AGENT_STATUS_MAPPING turns them back into words and colours.
STATUS_CODES = (("online", 1), ("busy", 2), ("away", 3), ("offline", 4))


def status_code(flt: str, labels: Sequence[str] = ()) -> str:
    """An agent's current status as one number: a table cell or stat cannot show the `status`
    label of the one series at 1 without breaking the merge into rows, but a code can be mapped.
    `max` per status, so an agent exported by two workers during a rebalance counts once."""
    parts = []
    for status, code in STATUS_CODES:
        one = sel(flt, f'status="{status}"')
        parts.append(f"{code} * max{by(labels)} (kefu_agent_status{{{one}}})")
    return " + ".join(parts)


def agents_present(flt: str, labels: Sequence[str] = ()) -> str:
    """Agents whose console says online or busy (who can take a buyer), counted the way
    KefuEmptyRoom counts them: de-duplicated per agent first."""
    present = sel(flt, 'status=~"online|busy"')
    return (f"sum{by(labels)} (max by (shop, team, agent, status) "
            f"(kefu_agent_status{{{present}}}))")


# ----------------------------------------------------------------------------------------------
# Panel helpers
# ----------------------------------------------------------------------------------------------


def q(expr: str, legend: str = "", *, instant: bool = False, fmt: str | None = None) -> Dataquery:
    t = Dataquery().expr(expr).datasource(DS)
    if legend:
        t = t.legend_format(legend)
    t = t.instant() if instant else t.range()
    if fmt == "table":
        t = t.format(PromQueryFormat.TABLE)
    elif fmt == "heatmap":
        t = t.format(PromQueryFormat.HEATMAP)
    return t


def steps(*pairs: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in pairs]
    )


# Colours shared by every panel that shows the same kind of number.
TH_RESPONSE = steps((None, GREEN), (30, AMBER), (40, RED))  # default warning/critical lines
TH_WAIT = steps((None, GREEN), (100, AMBER), (180, RED))  # 千牛 nags at 100 s; pages at 180 s
TH_SHARE_30S = steps((None, RED), (0.9, AMBER), (0.95, GREEN))  # SLO: 95 % within 30 s
TH_REPLY = steps((None, RED), (0.8, AMBER), (0.95, GREEN))
TH_WAITING = steps((None, GREEN), (5, AMBER), (15, RED))
TH_NEUTRAL = steps((None, BLUE))
TH_SCORE = steps((None, RED), (70, GREEN))  # scorecard pass line
TH_LAG = steps((None, GREEN), (30, AMBER), (120, RED))
TH_READY = steps((None, RED), (1, GREEN))

TH_OCCUPANCY = steps((None, GREEN), (0.8, AMBER), (1.0, RED))  # 饱和度: full at max_concurrent

AGENT_STATUS_MAPPING = ValueMap(
    options={
        "0": ValueMappingResult(text="– 无状态 no status", color="text", index=0),
        "1": ValueMappingResult(text="在线 online", color=GREEN, index=1),
        "2": ValueMappingResult(text="忙碌 busy", color=BLUE, index=2),
        "3": ValueMappingResult(text="离开 away", color=AMBER, index=3),
        "4": ValueMappingResult(text="离线 offline", color=RED, index=4),
    }
)

STATUS_MAPPING = ValueMap(
    options={
        "0": ValueMappingResult(text="达标 OK", color=GREEN, index=0),
        "1": ValueMappingResult(text="偏慢 Slow", color=AMBER, index=1),
        "2": ValueMappingResult(text="超时 Over", color=RED, index=2),
    }
)


def stat_panel(
    title: str,
    targets: Iterable[Dataquery],
    *,
    unit: str = "short",
    thresholds: ThresholdsConfig = TH_NEUTRAL,
    w: int = 4,
    h: int = 5,
    decimals: float | None = None,
    description: str = "",
    graph: bool = False,
    no_value: str = "–",
) -> stat.Panel:
    p = (
        stat.Panel()
        .title(title)
        .datasource(DS)
        .unit(unit)
        .thresholds(thresholds)
        .span(w)
        .height(h)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA if graph else common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value(no_value)
        .targets(list(targets))
    )
    if decimals is not None:
        p = p.decimals(decimals)
    if description:
        p = p.description(description)
    return p


def ts_panel(
    title: str,
    targets: Iterable[Dataquery],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    thresholds: ThresholdsConfig | None = None,
    stack: bool = False,
    min_val: float | None = 0,
    max_val: float | None = None,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(2)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            cb.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .targets(list(targets))
    )
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    if description:
        p = p.description(description)
    if thresholds is not None:
        p = p.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if stack:
        p = p.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    return p


def prop(prop_id: str, value: Any) -> DynamicConfigValue:
    return DynamicConfigValue(id_val=prop_id, value=value)


def to_json(obj: Any) -> Any:
    """A model (or builder) as plain JSON values, for places the SDK types as `object`."""
    if hasattr(obj, "build"):
        obj = obj.build()
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def link_json(title: str, url: str) -> dict[str, Any]:
    return {"title": title, "url": url, "targetBlank": False}


def transform(transform_id: str, options: dict[str, Any]) -> DataTransformerConfig:
    return DataTransformerConfig(id_val=transform_id, options=options)


def kpi_table(
    title: str,
    columns: Sequence[tuple[str, str, str, ThresholdsConfig | None]],
    *,
    keys: Sequence[str],
    w: int = 24,
    h: int = 9,
    links: dict[str, tuple[str, str]] | None = None,
    sort_by: str | None = None,
    hidden: Sequence[str] = (),
    extra: dict[str, list[DynamicConfigValue]] | None = None,
    description: str = "",
) -> table.Panel:
    """A table with one row per `keys` combination, one column per (name, expr, unit, colour).

    Each column is its own instant query aggregated `by (keys)`; Grafana's merge transformation
    joins them into rows on the key labels, then organize orders, hides and renames the
    "Value #<refId>" fields (it addresses fields by their original names; overrides by the
    renamed ones).
    """
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    field = {name: f"Value #{r}" for r, (name, _, _, _) in zip(refs, columns, strict=True)}
    order = {k: i for i, k in enumerate(keys)}
    order.update({field[name]: len(keys) + i for i, (name, _, _, _) in enumerate(columns)})
    sorting = []
    if sort_by is not None:
        sorting.append(transform("sortBy", {"sort": [{"field": field[sort_by], "desc": True}]}))
    p = (
        table.Panel()
        .title(title)
        .datasource(DS)
        .span(w)
        .height(h)
        .targets(
            [
                q(expr, instant=True, fmt="table").ref_id(r)
                for r, (_, expr, _, _) in zip(refs, columns, strict=True)
            ]
        )
        .transformations(
            [
                transform("merge", {}),
                *sorting,
                transform(
                    "organize",
                    {
                        "excludeByName": {"Time": True, **{field[n]: True for n in hidden}},
                        "indexByName": order,
                        "renameByName": {v: k for k, v in field.items()},
                    },
                ),
            ]
        )
        .cell_height(common.TableCellHeight.MD)
        .show_header(True)
    )
    if description:
        p = p.description(description)
    for name, _, unit, th in columns:
        if name in hidden:
            continue
        props = [prop("unit", unit)]
        if th is not None:
            props += [
                prop("thresholds", to_json(th)),
                prop("color", {"mode": "thresholds"}),
                prop("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
            ]
        props += (extra or {}).get(name, [])
        p = p.override_by_name(name, props)
    for key, (title_, url) in (links or {}).items():
        p = p.override_by_name(key, [prop("links", [link_json(title_, url)])])
    return p


# ----------------------------------------------------------------------------------------------
# Variables and links
# ----------------------------------------------------------------------------------------------


def query_var(
    name: str, label: str, query: str, *, multi: bool = True, hide: bool = False
) -> QueryVariable:
    v = (
        QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": f"var-{name}", "qryType": 1})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.NATURAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        v = v.current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    if hide:
        v = v.hide(VariableHide.HIDE_VARIABLE)
    return v


SHOP_QUERY = "label_values(kefu_rounds_total, shop)"
TEAM_QUERY = 'label_values(kefu_rounds_total{shop=~"$shop"}, team)'
AGENT_QUERY = 'label_values(kefu_rounds_total{shop=~"$shop",team=~"$team"}, agent)'


def window_var(default: str) -> CustomVariable:
    opts = [VariableOption(selected=w == default, text=w, value=w) for w in WINDOWS]
    return (
        CustomVariable("window")
        .label("窗口 Window")
        .values(",".join(WINDOWS))
        .options(opts)
        .current(VariableOption(selected=True, text=default, value=default))
    )


def nav_links() -> list[Builder[models_dashboard.DashboardLink]]:
    return [
        DashboardLink("kefu-pulse")
        .type(DashboardLinkType.DASHBOARDS)
        .tags(TAGS)
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]


def base(uid: str, title: str, description: str, *, refresh: str, time_from: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone(TIMEZONE)
        .refresh(refresh)
        .time(time_from, "now")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .timepicker(TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m"]))
        .links(nav_links())
    )


# Data links: a row click goes one level down with the selection and the time range.
TIME = "${__url_time_range}"
WIN = "${window:queryparam}"
LINK_SHOP = f"/d/kefu-drilldown?var-shop=${{__data.fields.shop:percentencode}}&var-team=$__all&{WIN}&{TIME}"  # noqa: E501
LINK_TEAM = (
    "/d/kefu-drilldown?var-shop=${__data.fields.shop:percentencode}"
    f"&var-team=${{__data.fields.team:percentencode}}&{WIN}&{TIME}"
)
LINK_AGENT = (
    "/d/kefu-agent?var-shop=${__data.fields.shop:percentencode}"
    "&var-team=${__data.fields.team:percentencode}"
    f"&var-agent=${{__data.fields.agent:percentencode}}&{WIN}&{TIME}"
)


# ----------------------------------------------------------------------------------------------
# Dashboards
# ----------------------------------------------------------------------------------------------


def wallboard() -> Dashboard:
    f = 'shop=~"$shop",team=~"$team"'
    today = sel(f, 'window="today"')
    p90_5m = per_agent(f'kefu_response_time_seconds{{{f},window="5m",quantile="0.9"}}')
    status = (
        f'clamp_max(({p90_5m} > bool on (shop, team) group_left () {line("warning")})'
        f' + ({p90_5m} > bool on (shop, team) group_left () {line("critical")}), 2)'
    )
    agents = [
        ("等待 Waiting", per_agent(f'kefu_waiting_buyers{{{f},agent!=""}}'), "short", TH_WAITING),
        ("最长等待 Oldest wait", per_agent(f'kefu_oldest_wait_seconds{{{f},agent!=""}}'), "s",
         TH_WAIT),
        ("5m P50", per_agent(f'kefu_response_time_seconds{{{f},window="5m",quantile="0.5"}}'), "s",
         None),
        ("5m P90", p90_5m, "s", None),
        ("状态 Status", status, "short", steps((None, GREEN), (1, AMBER), (2, RED))),
        ("今日均值 Mean today", per_agent(f"kefu_response_time_mean_seconds{{{today}}}"), "s",
         None),
        ("今日回复率 Reply today", per_agent(f"kefu_reply_rate{{{today}}}"), "percentunit",
         TH_REPLY),
        ("severity", f"({status}) * 1000 + {p90_5m}", "short", None),
    ]
    grid = kpi_table(
        "客服 Agents — 最差在前 worst first",
        agents,
        keys=("shop", "team", "agent"),
        h=15,
        sort_by="severity",
        hidden=("severity",),
        links={"agent": ("客服详情 Agent detail", LINK_AGENT.replace(f"&{WIN}", "&var-window=5m"))},
        extra={"状态 Status": [prop("mappings", [to_json(STATUS_MAPPING)])]},
        description=(
            "Status: the agent's 5m p90 against the agent's own lines (kefu_response_target_seconds"
            " per shop and team): OK ≤ warning, Slow ≤ critical, Over above critical."
        ),
    )

    return (
        base(
            "kefu-wallboard",
            "客服看板 Support wall-board",
            "Kiosk view for the support-room TV: /d/kefu-wallboard?kiosk&var-shop=…&var-team=…",
            refresh="10s",
            time_from="now-3h",
        )
        .with_variable(query_var("shop", "店铺 Shop", SHOP_QUERY))
        .with_variable(query_var("team", "组 Team", TEAM_QUERY))
        .with_panel(
            stat_panel(
                "等待买家 Buyers waiting",
                [q(f"sum(kefu_waiting_buyers{{{f}}})", instant=True)],
                thresholds=TH_WAITING,
                description="Buyers with an unanswered round now, incl. the unassigned queue.",
            )
        )
        .with_panel(
            stat_panel(
                "最长等待 Longest wait",
                [q(f"max(kefu_oldest_wait_seconds{{{f}}})", instant=True)],
                unit="s",
                thresholds=TH_WAIT,
            )
        )
        .with_panel(
            stat_panel(
                "5分钟P90响应 5m p90 response",
                [q(hist_quantile(0.9, f, "5m"), instant=True)],
                unit="s",
                thresholds=TH_RESPONSE,
                decimals=1,
                description="p90 over the selection's last 5 minutes, from the summed histogram.",
            )
        )
        .with_panel(
            stat_panel(
                "今日30秒内 Within 30 s today",
                [q(within_share(today), instant=True)],
                unit="percentunit",
                thresholds=TH_SHARE_30S,
                decimals=1,
                w=3,
            )
        )
        .with_panel(
            stat_panel(
                "今日回复率 Reply rate today",
                [q(ratio_of_sums(f"kefu_replied_buyers{{{today}}}",
                                 f"kefu_received_buyers{{{today}}}"), instant=True)],
                unit="percentunit",
                thresholds=TH_REPLY,
                decimals=1,
                w=3,
            )
        )
        .with_panel(
            stat_panel(
                "今日销售额 Sales today",
                [q(f"sum(kefu_sales_amount{{{today}}})", instant=True)],
                unit="currencyCNY",
                w=3,
            )
        )
        .with_panel(
            stat_panel(
                "今日询单转化 Conversion today",
                [q(weighted("kefu_conversion_rate", "kefu_inquiries", today), instant=True)],
                unit="percentunit",
                decimals=1,
                w=3,
            )
        )
        .with_panel(grid)
        .with_panel(
            ts_panel(
                "各组P90响应 p90 response by team (5m, histogram)",
                [q(hist_quantile(0.9, f, "5m", ("shop", "team")), "{{shop}} / {{team}}")],
                unit="s",
                thresholds=TH_RESPONSE,
            )
        )
        .with_panel(
            ts_panel(
                "等待买家 Buyers waiting by team",
                [q(f"sum by (shop, team) (kefu_waiting_buyers{{{f}}})", "{{shop}} / {{team}}")],
                stack=True,
            )
        )
    )


def drilldown() -> Dashboard:
    shop_f = 'shop=~"$shop"'
    team_f = 'shop=~"$shop",team=~"$team"'

    def columns(flt: str, keys: Sequence[str]) -> list[tuple[str, str, str, Any]]:
        w = sel(flt, 'window="$window"')
        return [
            ("轮次 Rounds", f"sum{by(keys)} (kefu_rounds{{{w}}})", "short", None),
            ("均值 Mean", weighted("kefu_response_time_mean_seconds", "kefu_rounds", w, keys),
             "s", TH_RESPONSE),
            ("P90 (histogram, time range)", hist_quantile(0.9, flt, "$__range", keys), "s",
             TH_RESPONSE),
            ("30秒内 Within 30 s", within_share(w, "warning", keys), "percentunit", TH_SHARE_30S),
            ("回复率 Reply rate", ratio_of_sums(f"kefu_replied_buyers{{{w}}}",
                                             f"kefu_received_buyers{{{w}}}", keys),
             "percentunit", TH_REPLY),
            ("未回复 Missed buyers", f"sum{by(keys)} (kefu_missed_buyers{{{w}}})", "short", None),
            ("解决率 Resolution", ratio_of_sums(f"kefu_resolved_sessions{{{w}}}",
                                              f"kefu_marked_sessions{{{w}}}", keys),
             "percentunit", None),
            ("问答比 Q/A", ratio_of_sums(f"kefu_agent_messages{{{w}}}",
                                       f"kefu_buyer_messages{{{w}}}", keys), "none", None),
            ("等待 Waiting", f"sum{by(keys)} (kefu_waiting_buyers{{{flt}}})", "short", TH_WAITING),
            ("最长等待 Oldest wait", f"max{by(keys)} (kefu_oldest_wait_seconds{{{flt}}})", "s",
             TH_WAIT),
            ("在线 Online", agents_present(flt, keys), "short", None),
            ("接待 Concurrent", f"sum{by(keys)} (kefu_concurrent_buyers{{{flt}}})", "short",
             None),
            ("饱和度 Occupancy", ratio_of_sums(f"kefu_concurrent_buyers{{{flt}}}",
                                             f"kefu_max_concurrent{{{flt}}}", keys),
             "percentunit", TH_OCCUPANCY),
            ("销售额 Sales", f"sum{by(keys)} (kefu_sales_amount{{{w}}})", "currencyCNY", None),
            ("转化率 Conversion", weighted("kefu_conversion_rate", "kefu_inquiries", w, keys),
             "percentunit", None),
            ("付款率 Payment success", ratio_of_sums(f"kefu_paid_buyers{{{w}}}",
                                                   f"kefu_ordered_buyers{{{w}}}", keys),
             "percentunit", None),
            ("客单价 AOV", ratio_of_sums(f"kefu_sales_amount{{{w}}}", f"kefu_paid_buyers{{{w}}}",
                                       keys), "currencyCNY", None),
        ]

    agent_f = sel(team_f, 'agent!=""')
    agent_cols = columns(agent_f, ("shop", "team", "agent"))
    # Per agent the exact sketch quantile replaces the histogram estimate.
    agent_cols[2] = (
        "P90",
        per_agent(f'kefu_response_time_seconds{{{agent_f},window="$window",quantile="0.9"}}'),
        "s",
        TH_RESPONSE,
    )
    # Per agent: the current status (mapped code) instead of a count of agents online, and
    # the agent's own limit beside its concurrent buyers.
    names = [c[0] for c in agent_cols]
    agent_cols[names.index("在线 Online")] = (
        "状态 Status", status_code(agent_f, ("shop", "team", "agent")), "none", None)
    agent_cols.insert(names.index("接待 Concurrent") + 1, (
        "上限 Max", per_agent(f"kefu_max_concurrent{{{agent_f}}}"), "short", None))
    status_cell = [prop("mappings", [to_json(AGENT_STATUS_MAPPING)]),
                   prop("custom.cellOptions", {"type": "color-text"})]
    team_trend = ("shop", "team")
    return (
        base(
            "kefu-drilldown",
            "客服下钻 Drill-down: shop → team → agent",
            "Click a shop, then a team, then an agent; the selection and time range travel along.",
            refresh="30s",
            time_from="now-6h",
        )
        .with_variable(window_var("today"))
        .with_variable(query_var("shop", "店铺 Shop", SHOP_QUERY))
        .with_variable(query_var("team", "组 Team", TEAM_QUERY))
        .with_row(Row("店铺 Shops"))
        .with_panel(
            kpi_table("店铺 Shops ($window) — click a shop", columns(shop_f, ("shop",)),
                      keys=("shop",), h=7, links={"shop": ("Drill into shop", LINK_SHOP)})
        )
        .with_row(Row("组 Teams in $shop"))
        .with_panel(
            kpi_table("组 Teams ($window) — click a team", columns(team_f, ("shop", "team")),
                      keys=("shop", "team"), h=8,
                      links={"team": ("Drill into team", LINK_TEAM),
                             "shop": ("Drill into shop", LINK_SHOP)})
        )
        .with_row(Row("客服 Agents in $shop / $team"))
        .with_panel(
            kpi_table("客服 Agents ($window) — click an agent", agent_cols,
                      keys=("shop", "team", "agent"), h=12,
                      links={"agent": ("Agent detail", LINK_AGENT),
                             "team": ("Drill into team", LINK_TEAM)},
                      extra={"状态 Status": status_cell},
                      description="在线 Online: agents whose console says online or busy. "
                      "饱和度 Occupancy: concurrent buyers / max_concurrent, summed over the "
                      "agents of the row (agents away or offline keep their open sessions).")
        )
        .with_row(Row("趋势 Trends by team"))
        .with_panel(
            ts_panel(
                "P90 response by team (histogram)",
                [q(hist_quantile(0.9, team_f, "$__rate_interval", team_trend),
                   "{{shop}} / {{team}}")],
                unit="s",
                thresholds=TH_RESPONSE,
            )
        )
        .with_panel(
            ts_panel(
                "Within 30 s by team (rounds answered in the interval)",
                [q(ratio_of_sums(
                    f'rate(kefu_rounds_within_target_total{{{team_f},level="warning"}}'
                    "[$__rate_interval])",
                    f"rate(kefu_rounds_total{{{team_f}}}[$__rate_interval])", team_trend),
                   "{{shop}} / {{team}}")],
                unit="percentunit",
                thresholds=TH_SHARE_30S,
                max_val=1,
            )
        )
        .with_panel(
            ts_panel(
                "Reply rate by team ($window)",
                [q(ratio_of_sums(f'kefu_replied_buyers{{{team_f},window="$window"}}',
                                 f'kefu_received_buyers{{{team_f},window="$window"}}', team_trend),
                   "{{shop}} / {{team}}")],
                unit="percentunit",
                thresholds=TH_REPLY,
                max_val=1,
            )
        )
        .with_panel(
            ts_panel(
                "Buyers waiting by team",
                [q(f"sum by (shop, team) (kefu_waiting_buyers{{{team_f}}})",
                   "{{shop}} / {{team}}")],
                stack=True,
            )
        )
        .with_row(Row("状态与负载 Status and load in $shop / $team"))
        .with_panel(
            ts_panel(
                "在线时长 Status time ($window), stacked by status",
                [q(f'sum by (status) (kefu_status_seconds{{{team_f},window="$window"}})',
                   "{{status}}")],
                unit="s",
                stack=True,
                description="Seconds the selected agents spent in each status within the "
                "window (kefu_status_seconds); an agent without status events adds nothing.",
            )
        )
        .with_panel(
            ts_panel(
                "当前状态 Agents by current status",
                [q(f"sum by (status) (max by (shop, team, agent, status) "
                   f"(kefu_agent_status{{{team_f}}}))", "{{status}}")],
                stack=True,
            )
        )
        .with_panel(
            ts_panel(
                "接待量 Concurrent buyers by team",
                [q(f"sum by (shop, team) (kefu_concurrent_buyers{{{team_f}}})",
                   "{{shop}} / {{team}}"),
                 q(f"sum by (shop, team) (kefu_max_concurrent{{{team_f}}})",
                   "{{shop}} / {{team}} max")],
                stack=False,
            )
        )
        .with_panel(
            ts_panel(
                "饱和度 Occupancy by team",
                [q(ratio_of_sums(f"kefu_concurrent_buyers{{{team_f}}}",
                                 f"kefu_max_concurrent{{{team_f}}}", team_trend),
                   "{{shop}} / {{team}}")],
                unit="percentunit",
                thresholds=TH_OCCUPANCY,
            )
        )
    )


def agent_detail() -> Dashboard:
    a = 'shop="$shop",agent="$agent"'
    aw = sel(a, 'window="$window"')
    quantiles = ("0.5", "0.9", "0.95", "0.99")
    business = [
        ("销售额 Sales", "kefu_sales_amount", "currencyCNY"),
        ("询单人数 Inquiries", "kefu_inquiries", "short"),
        ("询单转化率 Conversion", "kefu_conversion_rate", "percentunit"),
        ("下单人数 Ordered buyers", "kefu_ordered_buyers", "short"),
        ("付款人数 Paid buyers", "kefu_paid_buyers", "short"),
        ("付款成功率 Payment success", "kefu_payment_success_rate", "percentunit"),
        ("客单价 AOV", "kefu_average_order_value", "currencyCNY"),
        ("退款率 Refund rate", "kefu_refund_rate", "percentunit"),
        ("协助 Assists", "kefu_assists", "short"),
        ("满意度 CSAT", "kefu_csat_mean", "none"),
        ("问答比 Q/A ratio", "kefu_qa_ratio", "none"),
    ]
    d = (
        base(
            "kefu-agent",
            "客服详情 Agent detail",
            "One agent: response distribution, quantiles, reply rate, waiting, business KPIs, "
            "scorecard.",
            refresh="30s",
            time_from="now-6h",
        )
        .with_variable(window_var("1h"))
        .with_variable(query_var("shop", "店铺 Shop", SHOP_QUERY, multi=False))
        .with_variable(query_var("team", "组 Team", TEAM_QUERY, multi=False))
        .with_variable(query_var("agent", "客服 Agent", AGENT_QUERY, multi=False))
        .with_row(Row("现在 Now — $agent ($window)"))
        .with_panel(stat_panel("等待 Waiting now", [q(f"sum(kefu_waiting_buyers{{{a}}})",
                                                      instant=True)], thresholds=TH_WAITING, w=3))
        .with_panel(stat_panel("最长等待 Oldest wait", [q(f"max(kefu_oldest_wait_seconds{{{a}}})",
                                                        instant=True)],
                               unit="s", thresholds=TH_WAIT, w=3))
    )
    for qn in ("0.5", "0.9", "0.99"):
        d = d.with_panel(
            stat_panel(f"P{round(float(qn) * 100)}",
                       [q(f'max(kefu_response_time_seconds{{{aw},quantile="{qn}"}})',
                          instant=True)], unit="s", thresholds=TH_RESPONSE, decimals=1, w=2)
        )
    d = (
        d.with_panel(stat_panel("均值 Mean", [q(f"max(kefu_response_time_mean_seconds{{{aw}}})",
                                                instant=True)],
                                unit="s", thresholds=TH_RESPONSE, decimals=1, w=2))
        .with_panel(stat_panel("首响均值 First response",
                               [q(f"max(kefu_first_response_time_mean_seconds{{{aw}}})",
                                  instant=True)], unit="s", thresholds=TH_RESPONSE, decimals=1,
                               w=3))
        .with_panel(stat_panel("轮次 Rounds", [q(f"sum(kefu_rounds{{{aw}}})", instant=True)],
                               w=2))
        .with_panel(stat_panel("30秒内 Within 30 s", [q(within_share(aw), instant=True)],
                               unit="percentunit", thresholds=TH_SHARE_30S, decimals=1, w=2))
        .with_panel(stat_panel("回复率 Reply rate", [q(f"max(kefu_reply_rate{{{aw}}})",
                                                      instant=True)],
                               unit="percentunit", thresholds=TH_REPLY, decimals=1, w=2))
        .with_row(Row("响应分布 Response distribution"))
        .with_panel(
            heatmap.Panel()
            .title("响应时间热图 Response-time heatmap (rounds per bucket)")
            .datasource(DS)
            .span(12)
            .height(9)
            .calculate(False)
            .rows_frame(hb.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
            .y_axis(hb.YAxisConfig().unit("s"))
            .color(hb.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME)
                   .scheme("Oranges").fill("dark-orange").steps(64))
            .targets([q(f"sum by (le) (increase({HIST}{{{a}}}[$__rate_interval]))", "{{le}}",
                        fmt="heatmap")])
        )
        .with_panel(
            bargauge.Panel()
            .title("响应分布 Distribution over the time range")
            .datasource(DS)
            .span(12)
            .height(9)
            .unit("short")
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .orientation(common.VizOrientation.HORIZONTAL)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(TH_NEUTRAL)
            .targets([q(f"sum by (le) (increase({HIST}{{{a}}}[$__range]))", "≤ {{le}} s",
                        instant=True, fmt="heatmap")])
        )
        .with_panel(
            ts_panel(
                "分位数 Quantiles over time",
                [
                    *[q(hist_quantile(float(qn), a, "$__rate_interval"),
                        f"p{round(float(qn) * 100)} (histogram)") for qn in ("0.5", "0.9", "0.99")],
                    *[q(f'max(kefu_response_time_seconds{{{a},window="5m",quantile="{qn}"}})',
                        f"p{round(float(qn) * 100)} 5m (exact)") for qn in quantiles],
                    q('max by (level) (kefu_response_target_seconds{shop="$shop",team="$team",'
                      'level=~"warning|critical"})', "line: {{level}}"),
                ],
                unit="s",
                w=24,
                h=9,
                description="Histogram quantiles are interpolated within buckets; the worker's "
                "5m quantiles are nearest-rank from its sketch (≤ 1 % error).",
            )
        )
        .with_row(Row("回复与等待 Replies and waiting"))
        .with_panel(
            ts_panel("回复率 Reply rate by window",
                     [q(f"max by (window) (kefu_reply_rate{{{a}}})", "{{window}}")],
                     unit="percentunit", thresholds=TH_REPLY, max_val=1, w=8)
        )
        .with_panel(
            ts_panel("等待买家 Waiting buyers",
                     [q(f"sum(kefu_waiting_buyers{{{a}}})", "waiting")], w=8)
        )
        .with_panel(
            ts_panel("最长等待 Oldest wait", [q(f"max(kefu_oldest_wait_seconds{{{a}}})",
                                                "oldest wait")],
                     unit="s", thresholds=TH_WAIT, w=8)
        )
        .with_panel(
            ts_panel("30秒内占比 Within the lines ($window)",
                     [q(f"max by (level) (kefu_rounds_within_target_ratio{{{aw}}})", "{{level}}")],
                     unit="percentunit", max_val=1, w=12)
        )
        .with_panel(
            ts_panel("消息 Messages ($window)",
                     [q(f"max(kefu_agent_messages{{{aw}}})", "agent messages"),
                      q(f"max(kefu_buyer_messages{{{aw}}})", "buyer messages")], w=12)
        )
        .with_row(Row("状态、负载与解决 Status, load and resolution"))
        .with_panel(stat_panel("状态 Status now", [q(status_code(a), instant=True)], w=4)
                    .mappings([AGENT_STATUS_MAPPING]))
        .with_panel(stat_panel("接待 Concurrent buyers",
                               [q(f"max(kefu_concurrent_buyers{{{a}}})", instant=True)], w=4))
        .with_panel(stat_panel("上限 Max concurrent",
                               [q(f"max(kefu_max_concurrent{{{a}}})", instant=True)], w=4))
        .with_panel(stat_panel("饱和度 Occupancy",
                               [q(f"max(kefu_occupancy_ratio{{{a}}})", instant=True)],
                               unit="percentunit", thresholds=TH_OCCUPANCY, decimals=0, w=4))
        .with_panel(stat_panel("解决率 Resolution rate ($window)",
                               [q(f"max(kefu_resolution_rate{{{aw}}})", instant=True)],
                               unit="percentunit", decimals=1, w=4,
                               description="Sessions marked resolved / sessions with a mark "
                               "(the buyer's rating overrides the close's mark); sessions "
                               "without a mark are left out."))
        .with_panel(stat_panel("未回复 Missed buyers ($window)",
                               [q(f"max(kefu_missed_buyers{{{aw}}})", instant=True)],
                               thresholds=TH_WAITING, w=4))
        .with_panel(
            ts_panel("在线时长 Status time ($window), stacked by status",
                     [q(f"max by (status) (kefu_status_seconds{{{aw}}})", "{{status}}")],
                     unit="s", stack=True, w=12)
        )
        .with_panel(
            ts_panel("接待量 Concurrent buyers",
                     [q(f"max(kefu_concurrent_buyers{{{a}}})", "concurrent"),
                      q(f"max(kefu_max_concurrent{{{a}}})", "max concurrent")], w=6)
        )
        .with_panel(
            ts_panel("饱和度 Occupancy", [q(f"max(kefu_occupancy_ratio{{{a}}})", "occupancy")],
                     unit="percentunit", thresholds=TH_OCCUPANCY, w=6)
        )
        .with_panel(
            ts_panel("解决率 Resolution rate by window",
                     [q(f"max by (window) (kefu_resolution_rate{{{a}}})", "{{window}}")],
                     unit="percentunit", max_val=1, w=12)
        )
        .with_panel(
            ts_panel("解决与未回复 Sessions marked / resolved, missed buyers ($window)",
                     [q(f"max(kefu_marked_sessions{{{aw}}})", "marked sessions"),
                      q(f"max(kefu_resolved_sessions{{{aw}}})", "resolved sessions"),
                      q(f"max(kefu_missed_buyers{{{aw}}})", "missed buyers")], w=12)
        )
        .with_row(Row("业绩 Business KPIs ($window)"))
    )
    for title, metric, unit in business:
        d = d.with_panel(stat_panel(title, [q(f"max({metric}{{{aw}}})", instant=True)],
                                    unit=unit, w=4, h=4, decimals=2 if unit == "none" else None))
    # 指标完成率 is against a monthly target: it exists for `today` (a daily share) and `month`.
    d = d.with_panel(stat_panel(
        "指标完成率 Target completion (month)",
        [q(f'max(kefu_target_completion_ratio{{{a},window="month"}})', instant=True)],
        unit="percentunit", w=4, h=4,
    ))
    return (
        d.with_row(Row("绩效考核表 Scorecard"))
        .with_panel(stat_panel("今日得分 Score today",
                               [q(f'max(kefu_score_total{{{a},period="today"}})', instant=True)],
                               thresholds=TH_SCORE, w=4, h=6, decimals=0))
        .with_panel(stat_panel("本月得分 Score this month",
                               [q(f'max(kefu_score_total{{{a},period="month"}})', instant=True)],
                               thresholds=TH_SCORE, w=4, h=6, decimals=0))
        .with_panel(
            bargauge.Panel()
            .title("得分明细 Score items (month)")
            .datasource(DS)
            .span(16)
            .height(6)
            .unit("none")
            .display_mode(common.BarGaugeDisplayMode.BASIC)
            .orientation(common.VizOrientation.HORIZONTAL)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(TH_NEUTRAL)
            .targets([q(f'max by (item) (kefu_score_points{{{a},period="month"}})', "{{item}}",
                        instant=True)])
        )
    )


def pipeline() -> Dashboard:
    return (
        base(
            "kefu-pipeline",
            "kefu-pulse pipeline health",
            "The monitor itself: input events, rejects, lag, partition ownership, readiness.",
            refresh="30s",
            time_from="now-3h",
        )
        .with_panel(stat_panel("Workers up", [q(f"sum(up{{{JOB}}})", instant=True)],
                               thresholds=TH_READY, w=3))
        .with_panel(stat_panel("Workers ready", [q("sum(kefu_worker_ready)", instant=True)],
                               thresholds=TH_READY, w=3))
        .with_panel(stat_panel("Owned partitions", [q("sum(kefu_owned_partitions)", instant=True)],
                               w=3, description="Sum over workers: equals the partition count "
                               "when every partition has an owner."))
        .with_panel(stat_panel("Exported agents", [q("sum(kefu_exported_agents)", instant=True)],
                               w=3))
        .with_panel(stat_panel("Max event lag", [q("max(kefu_event_lag_seconds)", instant=True)],
                               unit="s", thresholds=TH_LAG, w=4))
        .with_panel(stat_panel("Snapshot age",
                               [q("time() - min(kefu_snapshot_timestamp_seconds)", instant=True)],
                               unit="s", thresholds=TH_LAG, w=4,
                               description="Wall clock minus the oldest worker's KPI snapshot "
                               "*now*; grows when a worker stops refreshing (or replays history)."))
        .with_panel(stat_panel("Rejected (1h)",
                               [q("sum(increase(kefu_deadletter_total[1h]))", instant=True)],
                               thresholds=steps((None, GREEN), (1, AMBER)), w=4, decimals=0))
        .with_panel(
            ts_panel("Events/s by outcome",
                     [q("sum by (outcome) (rate(kefu_events_total[$__rate_interval]))",
                        "{{outcome}}")], unit="ops", stack=True)
        )
        .with_panel(
            ts_panel("Events/s by topic (rekeyed hops excluded)",
                     [q('sum by (topic) (rate(kefu_events_total{outcome!="rekeyed"}'
                        "[$__rate_interval]))", "{{topic}}")], unit="ops")
        )
        .with_panel(
            ts_panel("Rejected/s by reason (dead-lettered)",
                     [q("sum by (topic, reason) (rate(kefu_deadletter_total[$__rate_interval]))",
                        "{{topic}}: {{reason}}")], unit="ops", stack=True)
        )
        .with_panel(
            ts_panel("Event lag by worker",
                     [q("max by (instance) (kefu_event_lag_seconds)", "{{instance}}"),
                      q("time() - max by (instance) (kefu_watermark_timestamp_seconds)",
                        "{{instance}} watermark age")],
                     unit="s", thresholds=TH_LAG,
                     description="Event lag: how far behind its input a worker is (0 = caught "
                     "up). Watermark age: wall clock minus the newest event ts processed — also "
                     "grows in a quiet room.")
        )
        .with_panel(
            ts_panel("Consumer lag (messages) by worker",
                     [q("sum by (instance) (kefu_consumer_lag_messages)", "{{instance}}")],
                     description="Unread messages on the worker's owned input partitions.")
        )
        .with_panel(
            ts_panel("Owned partitions and ready by worker",
                     [q("max by (instance) (kefu_owned_partitions)", "{{instance}} partitions"),
                      q("max by (instance) (kefu_worker_ready)", "{{instance}} ready")])
        )
        .with_panel(
            ts_panel("Exported agents by worker",
                     [q("max by (instance) (kefu_exported_agents)", "{{instance}}")], stack=True)
        )
        .with_panel(
            ts_panel("Scrape duration by worker",
                     [q(f"max by (instance) (scrape_duration_seconds{{{JOB}}})", "{{instance}}"),
                      q(f"max by (instance) (up{{{JOB}}})", "{{instance}} up")], unit="s")
        )
        .with_panel(
            ts_panel("CPU by worker",
                     [q(f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])",
                        "{{instance}}")], unit="percentunit")
        )
        .with_panel(
            ts_panel("Memory (RSS) by worker",
                     [q(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")],
                     unit="bytes")
        )
    )


DASHBOARDS = {
    "kefu-wallboard.json": wallboard,
    "kefu-drilldown.json": drilldown,
    "kefu-agent.json": agent_detail,
    "kefu-pipeline.json": pipeline,
}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def finalize(model: dict[str, Any]) -> dict[str, Any]:
    """Stable panel ids and refIds, so the JSON is identical on every run."""
    next_id = 1
    for panel in model.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for i, target in enumerate(panel.get("targets", [])):
            if not target.get("refId"):
                target["refId"] = chr(ord("A") + i)
    model["version"] = 1
    return model


def build_all() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, make in DASHBOARDS.items():
        model = json.loads(json.dumps(make().build(), cls=JSONEncoder))
        out[name] = finalize(model)
    return out


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    stale: list[str] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name, model in build_all().items():
        path = args.out / name
        text = render(model)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} — run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
