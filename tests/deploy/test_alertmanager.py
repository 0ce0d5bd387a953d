"""deploy/alertmanager: amtool check-config, routing cases, inhibition on a real Alertmanager.

Routing cases live in deploy/alertmanager/tests/routes.yml and run through
`amtool config routes test`; inhibition cases (deploy/alertmanager/tests/inhibit.yml) need a
running Alertmanager, because amtool cannot evaluate inhibit_rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import (
    AM_CONFIG,
    AM_DIR,
    alertmanager_test_config,
    http_json,
    load_yaml,
    require_tool,
    run,
    start_alertmanager,
    wait_for,
)

SECRETS_DIR = "/etc/alertmanager/secrets/"


def _cases(name: str) -> list[dict[str, Any]]:
    path = AM_DIR / "tests" / name
    try:
        import yaml
    except ImportError:  # reported by the tests themselves (load_yaml)
        return [{"name": f"{name} (PyYAML missing)"}]
    cases: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]
    return cases


def test_amtool_check_config() -> None:
    code, out = run([require_tool("amtool"), "check-config", str(AM_CONFIG)])
    assert code == 0, out
    assert "SUCCESS" in out and "1 templates" in out, out


@pytest.mark.parametrize("case", _cases("routes.yml"), ids=lambda c: c["name"])
def test_route(case: dict[str, Any]) -> None:
    load_yaml(AM_CONFIG)  # skips/fails clearly without PyYAML
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    code, out = run([
        require_tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}",
        f"--verify.receivers={','.join(case['receivers'])}", *labels,
    ])
    assert code == 0, f"{case['labels']} → {out.strip()} (expected {case['receivers']})"


def test_route_cases_cover_every_receiver() -> None:
    config = load_yaml(AM_CONFIG)
    receivers = {r["name"] for r in config["receivers"]}
    covered = {r for case in _cases("routes.yml") for r in case["receivers"]}
    assert receivers == covered


def test_grouping_and_timing() -> None:
    route = load_yaml(AM_CONFIG)["route"]
    assert route["group_by"] == ["alertname", "shop", "team"]
    pages = [r for r in route["routes"] if 'severity="page"' in r.get("matchers", [])]
    assert pages and all(r["group_wait"] == "10s" for r in pages), "pages must go out fast"
    assert all(r.get("repeat_interval") for r in pages)


def test_secrets_are_read_from_files() -> None:
    """No key or webhook URL is written in the config: only `*_file` paths to mounted secrets."""
    config = load_yaml(AM_CONFIG)
    text = AM_CONFIG.read_text(encoding="utf-8")
    assert not re.search(r"hooks\.slack\.com|events\.pagerduty\.com|oapi\.dingtalk", text)
    for receiver in config["receivers"]:
        for kind, entries in receiver.items():
            if kind == "name":
                continue
            for entry in entries:
                for key in ("routing_key", "service_key", "api_url", "url", "api_secret"):
                    assert key not in entry, f"{receiver['name']}: {key} in the repo"
                files = [v for k, v in entry.items() if k.endswith("_file")]
                assert files, f"{receiver['name']}: no *_file secret"
                assert all(f.startswith(SECRETS_DIR) for f in files), files


# ---- inhibition on a real Alertmanager ----------------------------------------------------------


@pytest.mark.parametrize("case", _cases("inhibit.yml"), ids=lambda c: c["name"])
def test_inhibition(case: dict[str, Any], tmp_path: Path) -> None:
    config = alertmanager_test_config(tmp_path)
    am = start_alertmanager(config, tmp_path)
    try:
        now = datetime.now(UTC)
        posted = [
            {
                "labels": alert["labels"],
                "annotations": {"summary": "test"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }
            for alert in case["alerts"]
        ]
        http_json(am.url + "/api/v2/alerts", posted)

        def state() -> dict[frozenset[tuple[str, str]], bool] | None:
            got = {
                frozenset(a["labels"].items()): bool(a["status"]["inhibitedBy"])
                for a in http_json(am.url + "/api/v2/alerts")
            }
            return got if len(got) == len(posted) else None

        def expected_now() -> bool:
            got = state()
            return got is not None and all(
                got[frozenset(a["labels"].items())] == a["inhibited"]
                for a in case["alerts"]
            )

        try:
            wait_for(expected_now, 10, "inhibition to settle")
        except AssertionError:
            got = state() or {}
            wrong = [
                (a["labels"], "inhibited" if got.get(frozenset(a["labels"].items())) else "sent")
                for a in case["alerts"]
                if got.get(frozenset(a["labels"].items())) != a["inhibited"]
            ]
            pytest.fail(f"inhibition differs from the case: {wrong}\n{am.log_tail()}")
    finally:
        am.stop()
