"""Grafana dashboards as code: the committed JSON is what grafana/generate.py builds, and is sane.

No Grafana runs here; tests/integration/test_grafana_queries.py evaluates every query against a
real Prometheus. These checks are static: structure, layout, variables, links, PromQL syntax
(promtool, when installed) and the aggregation rules (ratios of sums, no averaged quantiles).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy import require_tool


def need_module(module: str, package: str) -> None:
    """Skip without a test dependency; under CI (CI=true) its absence is a failure."""
    try:
        importlib.import_module(module)
    except ImportError:
        reason = f"{package} is not installed (it belongs in the [test] extra)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason, allow_module_level=True)


need_module("grafana_foundation_sdk", "grafana-foundation-sdk")

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"

BUILTIN_VARS = {"__rate_interval", "__range", "__interval", "__all", "__url_time_range"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kefu_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = load_generator()


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text("utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


ALL = committed()


def test_regenerating_gives_identical_json() -> None:
    built = GEN.build_all()
    assert sorted(built) == sorted(ALL), "grafana/dashboards has stale or missing files"
    for name, model in built.items():
        text = (DASHBOARDS / name).read_text("utf-8")
        assert GEN.render(model) == text, f"{name} differs: run python grafana/generate.py"


def test_generator_check_mode(tmp_path: Path) -> None:
    assert GEN.main(["--out", str(tmp_path)]) == 0
    assert GEN.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "kefu-wallboard.json").write_text("{}\n", "utf-8")
    assert GEN.main(["--check", "--out", str(tmp_path)]) == 1


def test_the_four_dashboards_exist() -> None:
    uids = {d["uid"] for d in ALL.values()}
    assert uids == {"kefu-wallboard", "kefu-drilldown", "kefu-agent", "kefu-pipeline"}


@pytest.mark.parametrize("name", sorted(ALL))
def test_dashboard_identity(name: str) -> None:
    d = ALL[name]
    assert d["uid"] and len(d["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", d["uid"])
    assert d["title"].strip()
    assert name == f"{d['uid']}.json"
    assert "kefu-pulse" in d["tags"]
    assert d["schemaVersion"] >= 39
    assert d["refresh"]


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_panel_has_a_promql_target(name: str) -> None:
    d = ALL[name]
    seen_ids: set[int] = set()
    for panel in panels(d):
        assert panel["id"] not in seen_ids, f"duplicate panel id {panel['id']}"
        seen_ids.add(panel["id"])
        assert panel.get("title"), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"{panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": GEN.DATASOURCE_UID}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), f"{panel['title']!r}: refIds {refs}"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']!r}/{target['refId']}: empty expr"
            assert target["datasource"]["uid"] == GEN.DATASOURCE_UID


@pytest.mark.parametrize("name", sorted(ALL))
def test_layout_fits_the_grid_without_overlaps(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in ALL[name]["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{panel['title']!r} overflows: {g}"
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{panel['title']!r} overlaps another panel at {g}"
        taken |= cells


VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_.]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))")


def used_vars(text: str) -> set[str]:
    return {a or b for a, b in VAR_RE.findall(text)}


@pytest.mark.parametrize("name", sorted(ALL))
def test_queries_use_only_defined_variables(name: str) -> None:
    d = ALL[name]
    defined = set(variables(d)) | BUILTIN_VARS
    for panel, target in targets(d):
        missing = used_vars(target["expr"]) - defined
        assert not missing, f"{panel['title']!r}: undefined variables {missing}"
    for var in variables(d).values():
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            assert used_vars(query) <= defined
            assert var["datasource"]["uid"] == GEN.DATASOURCE_UID


def test_drilldown_variables_chain_shop_team_agent() -> None:
    drill = variables(ALL["kefu-drilldown.json"])
    assert list(drill) == ["window", "shop", "team"]
    assert "label_values(" in drill["shop"]["query"]["query"]
    assert '$shop' in drill["team"]["query"]["query"]
    agent = variables(ALL["kefu-agent.json"])
    agent_query = agent["agent"]["query"]["query"]
    assert "$shop" in agent_query and "$team" in agent_query
    assert not agent["agent"]["multi"]


def links(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        cfg = panel.get("fieldConfig", {})
        for link in cfg.get("defaults", {}).get("links", []):
            yield panel["title"], link["url"]
        for override in cfg.get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    for link in prop["value"]:
                        yield panel["title"], link["url"]


def test_data_links_carry_the_selection_to_existing_dashboards() -> None:
    uids = {d["uid"]: d for d in ALL.values()}
    found = 0
    for d in ALL.values():
        for title, url in links(d):
            found += 1
            m = re.match(r"/d/([a-z0-9-]+)\?(.*)$", url)
            assert m, f"{title}: bad link {url}"
            target = uids.get(m.group(1))
            assert target is not None, f"{title}: link to unknown dashboard {m.group(1)}"
            assert "${__url_time_range}" in url, f"{title}: link drops the time range"
            names: set[str] = set()
            for param in m.group(2).split("&"):
                if param.startswith("var-"):
                    names.add(param[4:].split("=")[0])
                elif q := re.fullmatch(r"\$\{(\w+):queryparam\}", param):
                    names.add(q.group(1))
            assert names <= set(variables(target)), f"{title}: {names} not all on {target['uid']}"
            for var in ("shop", "team", "agent"):
                if var in variables(target) and f"var-{var}=" not in url:
                    # Every level the target filters on must be carried along.
                    pytest.fail(f"{title}: link to {target['uid']} does not set ${var}")
    assert found >= 5, "the drill-down needs data links on its tables"


def test_wallboard_is_kiosk_ready() -> None:
    wb = ALL["kefu-wallboard.json"]
    assert wb["refresh"] in ("5s", "10s", "15s")
    stats = [p for p in wb["panels"] if p["type"] == "stat"]
    assert len(stats) >= 6
    [grid] = [p for p in wb["panels"] if p["type"] == "table"]
    assert "sortBy" in [t["id"] for t in grid["transformations"]], "agents must be worst first"
    assert {"shop", "team"} <= set(variables(wb)), "filters by shop and team in the URL"


# Per-agent values that only aggregate weighted by their denominator (ratios, means,
# quantiles; docs/metrics.md). A team-level number must be sum(value × weight) / sum(weight)
# or come from counts.
RATIO_METRICS = {
    "kefu_reply_rate", "kefu_conversion_rate", "kefu_payment_success_rate", "kefu_refund_rate",
    "kefu_qa_ratio", "kefu_rounds_within_target_ratio", "kefu_target_completion_ratio",
    "kefu_response_time_mean_seconds", "kefu_first_response_time_mean_seconds",
    "kefu_csat_mean", "kefu_average_order_value", "kefu_response_time_seconds",
    "kefu_first_response_time_seconds",
}


def test_team_level_ratios_are_ratios_of_sums() -> None:
    checked = 0
    for d in ALL.values():
        for panel, target in targets(d):
            expr = target["expr"]
            assert not re.search(r"\bavg(_over_time)?\b", expr), (
                f"{panel['title']!r}: averages are not used ({expr})"
            )
            for metric in RATIO_METRICS & set(re.findall(r"kefu_[a-z0-9_]+", expr)):
                for m in re.finditer(rf"{metric}\{{([^}}]*)\}}", expr):
                    before = expr[: m.start()]
                    after = expr[m.end():].lstrip()
                    single_agent = 'agent="$agent"' in m.group(1)
                    per_agent = re.search(r"max by \(shop, team, agent\) \($", before)
                    weighted = after.startswith("*")
                    assert single_agent or per_agent or weighted, (
                        f"{panel['title']!r}: {metric} aggregated across agents without its "
                        f"weight: {expr}"
                    )
                    checked += 1
    assert checked > 20


def test_promql_parses(tmp_path: Path) -> None:
    """Every query, variables substituted, is valid PromQL to promtool."""
    promtool = require_tool("promtool")
    rules: list[dict[str, Any]] = []
    for d in ALL.values():
        for panel, target in targets(d):
            expr = substitute(target["expr"])
            rules.append({"record": f"kefu:check:{len(rules)}", "expr": expr,
                          "labels": {"panel": panel["title"][:60]}})
    path = tmp_path / "grafana-promql-check.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]},
                                   allow_unicode=True), "utf-8")
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def substitute(expr: str) -> str:
    values = {"shop": "s1", "team": "pre-sales", "agent": "a1", "window": "1h",
              "__rate_interval": "1m", "__range": "1h", "__interval": "15s"}
    return VAR_RE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def test_sdk_round_trip() -> None:
    """The JSON loads back into the SDK's dashboard model (catches wrongly shaped fields)."""
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, d in ALL.items():
        model = Dashboard.from_json(d)
        assert model.uid == d["uid"], name
        assert len(model.panels or []) == len(d["panels"])


def test_provisioning_points_at_the_generated_dashboards() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text("utf-8"))
    [source] = ds["datasources"]
    assert source["uid"] == GEN.DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"]
    dash = yaml.safe_load((PROVISIONING / "dashboards" / "kefu.yml").read_text("utf-8"))
    [provider] = dash["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
