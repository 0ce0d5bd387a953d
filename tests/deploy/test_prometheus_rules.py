"""deploy/prometheus: promtool check config / check rules / test rules, plus contract checks.

The promtool unit tests (deploy/prometheus/tests/*.yml) prove each alert's behaviour; the
checks here prove the rules keep the project's conventions: every alert labelled and documented,
every alert covered by a unit test, only metrics the worker really exports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streams.export.prometheus import HELP
from tests.deploy import (
    PROM_CONFIG,
    PROM_DIR,
    PROMTOOL_TESTS,
    ROOT,
    RULE_FILES,
    load_yaml,
    require_tool,
    run,
)

SEVERITIES = {"page", "warning", "ticket"}
COMPONENTS = {"kpi", "pipeline", "monitor"}
RUNBOOK = "https://github.com/kefu-pulse/kefu-pulse/blob/main/README.md#"
DOCS = ROOT / "README.md"  # the Alerts section is the runbook the alerts link to
CJK = re.compile(r"[\u4e00-\u9fff]")


def _rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            out.extend(group["rules"])
    return out


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


# ---- promtool ---------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    """prometheus.yml is valid and its rule_files glob finds every rule file."""
    code, out = run([require_tool("promtool"), "check", "config", str(PROM_CONFIG)])
    assert code == 0, out
    for path in RULE_FILES:
        assert path.name in out, f"{path.name} not loaded by prometheus.yml:\n{out}"


def test_promtool_check_rules() -> None:
    code, out = run([require_tool("promtool"), "check", "rules", *map(str, RULE_FILES)])
    assert code == 0, out
    assert "WARNING" not in out.upper().replace("WARNING LINE", ""), out


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    assert PROMTOOL_TESTS, "no promtool tests in deploy/prometheus/tests"
    code, out = run([require_tool("promtool"), "test", "rules", test_file.name],
                    cwd=test_file.parent)
    assert code == 0, out
    assert "SUCCESS" in out, out


# ---- conventions ------------------------------------------------------------------------------


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = [r["record"] for r in _rules() if "record" in r]
    assert names
    for name in names:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*:kefu_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_every_alert_is_labelled_and_annotated() -> None:
    alerts = _alerts()
    assert len({a["alert"] for a in alerts}) >= 9
    for a in alerts:
        name, labels, notes = a["alert"], a.get("labels", {}), a.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, name
        assert labels.get("component") in COMPONENTS, name
        assert {"summary", "summary_zh", "description", "runbook_url"} <= notes.keys(), name
        assert CJK.search(notes["summary_zh"]), f"{name}: summary_zh is not Chinese"
        assert not CJK.search(notes["summary"]), f"{name}: summary should be English"
        assert notes["runbook_url"] == RUNBOOK + "alert-" + name.lower(), name
        # Monitor alerts are about every shop and team; KPI alerts get shop/team from series.
        if labels["component"] != "kpi":
            assert labels.get("shop") == "*" and labels.get("team") == "*", name


def test_runbook_anchors_are_documented() -> None:
    """Each runbook_url anchor is a heading `### Alert: Name` in the README."""
    text = DOCS.read_text(encoding="utf-8")
    headings = {
        "alert-" + m.group(1).lower() for m in re.finditer(r"^#{2,4} Alert: (\w+)\s*$", text, re.M)
    }
    for a in _alerts():
        anchor = a["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in headings, f"{a['alert']}: no '### Alert: {a['alert']}' in {DOCS}"
        assert anchor in text, f"{anchor} not listed in {DOCS}"


def test_every_alert_fires_in_a_unit_test_with_shop_and_team() -> None:
    """Each (alertname, severity) fires somewhere in the promtool tests, fully labelled."""
    wanted = {(a["alert"], a["labels"]["severity"]) for a in _alerts()}
    fired: set[tuple[str, str]] = set()
    for path in PROMTOOL_TESTS:
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                for exp in case.get("exp_alerts") or []:
                    labels = exp["exp_labels"]
                    assert {"shop", "team", "severity"} <= labels.keys(), (path.name, labels)
                    fired.add((case["alertname"], labels["severity"]))
    missing = wanted - fired
    assert not missing, f"alerts never shown firing in a promtool test: {missing}"


def test_response_alerts_compare_with_exported_lines() -> None:
    """No hard-coded response lines: slow-response and waiting alerts use the exported targets."""
    for a in _alerts():
        if a["alert"] in ("KefuAgentSlowResponse", "KefuBuyerWaiting"):
            expr = a["expr"]
            assert "shop_team_level:kefu_response_target_seconds:max" in expr, a["alert"]
            assert "group_left" in expr and "on (shop, team)" in expr, a["alert"]
            comparisons = re.findall(r"(?<![=!<>])[<>]=?\s*([0-9.]+)", expr)
            assert comparisons in ([], ["5"]), f"{a['alert']}: hard-coded line {comparisons}"
            if a["alert"] == "KefuAgentSlowResponse":
                assert "kefu_rounds_5m:max >= 5" in expr and a.get("for"), "minimum rounds + for"
            else:
                assert not a.get("for"), "KefuBuyerWaiting must fire while the buyer still waits"


def test_rules_read_only_metrics_the_worker_exports() -> None:
    """Every raw kefu_* metric a rule reads is one streams/export/prometheus.py writes."""
    exported = set(HELP)
    for name, kind in list(HELP.items()):
        if kind[0] == "histogram":
            exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    used: set[str] = set()
    for rule in _rules():
        expr = re.sub(r"[a-z_]+:kefu_[a-z0-9_]+:[a-z0-9_]+", "", rule["expr"])  # recorded names
        used |= set(re.findall(r"\bkefu_[a-z0-9_]+", expr))
    assert used, "no kefu metric used?"
    assert used <= exported, f"not exported by the worker: {sorted(used - exported)}"


def test_prometheus_config_scrapes_the_workers_and_alertmanager() -> None:
    config = load_yaml(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "kefu-pulse" in jobs, "the alert rules select job=\"kefu-pulse\""
    assert jobs["kefu-pulse"].get("metrics_path", "/metrics") == "/metrics"
    assert config["alerting"]["alertmanagers"], "no Alertmanager configured"
    assert config["rule_files"] == ["rules/*.yml"]
    assert (PROM_DIR / "rules").is_dir()
