"""deploy/k8s: valid Kubernetes objects that fit together, and a current PrometheusRule.

Built-in kinds are validated against the Kubernetes OpenAPI schemas shipped offline by
`kubernetes-validate` (strict: unknown fields are errors). The Prometheus Operator kinds have no
offline schema here, so ServiceMonitor and PrometheusRule get structural checks, and the
PrometheusRule's groups go through `promtool check rules`. `kubectl kustomize` (when kubectl is
installed) builds the kustomization and the output is validated too.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from streams.config import Settings, parse_config
from tests.deploy import require_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RULES = ROOT / "deploy" / "prometheus" / "rules"
# Oldest and newest Kubernetes minor versions the manifests are checked against.
K8S_VERSIONS = ("1.29", "1.37")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def need_module(module: str, package: str) -> ModuleType:
    """A test dependency; skipped without it, but under CI (CI=true) its absence fails."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{package} is not installed (it belongs in the [test] extra)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    return doc


def resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        out.extend(d for d in yaml.safe_load_all((K8S / name).read_text("utf-8")) if d)
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in resources() if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    [doc] = by_kind(kind)
    return doc


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kefu_prometheusrule",
                                                  K8S / "generate_prometheusrule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deploy["spec"]["template"]["spec"]["containers"]
    [c] = containers
    return c


def env(deploy: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deploy)["env"]}


def test_kustomization_lists_existing_files() -> None:
    k = kustomization()
    assert k["kind"] == "Kustomization"
    for name in k["resources"]:
        assert (K8S / name).is_file(), name
    for gen in k.get("configMapGenerator", []):
        for f in gen["files"]:
            assert (K8S / f.split("=")[-1]).is_file(), f
    kinds = {d["kind"] for d in resources()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor",
            "PrometheusRule"} <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_match_the_kubernetes_schemas(version: str) -> None:
    kv = need_module("kubernetes_validate", "kubernetes-validate")
    checked = 0
    for doc in resources():
        if doc["kind"] in CRD_KINDS:
            continue
        kv.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 4


def test_kustomize_build_validates() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # part of the machine image, not of the project's dependencies
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    kv = need_module("kubernetes_validate", "kubernetes-validate")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
            "ServiceMonitor", "PrometheusRule"} <= kinds
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kefu-pulse", doc["metadata"]["name"]
        if doc["kind"] not in CRD_KINDS:
            kv.validate(doc, K8S_VERSIONS[-1], strict=True)
    # The generated ConfigMap name (with its content hash) is what the Deployment mounts.
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    [deploy] = [d for d in docs if d["kind"] == "Deployment"]
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert re.fullmatch(r"kefu-pulse-config-[a-z0-9]{10}", cm["metadata"]["name"])
    assert container(deploy)["image"] == "kefu-pulse:0.1.0"
    parse_config(tomllib.loads(cm["data"]["kefu.toml"]))


def test_worker_deployment() -> None:
    deploy = one("Deployment")
    e = env(deploy)
    settings = Settings.from_env(e)  # raises ConfigError on a bad value
    # Scaled out to the partition count: one owner per partition, no idle workers.
    assert deploy["spec"]["replicas"] == settings.partitions
    c = container(deploy)
    assert c["args"] == ["worker"]
    [port] = c["ports"]
    assert port == {"name": "http-metrics", "containerPort": settings.web_port, "protocol": "TCP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert Path(e["KEFU_CONFIG"]).parent == Path(mounts["config"])
    assert e["KEFU_DATA_DIR"] == mounts["data"]
    assert e["KEFU_BROKER"].startswith("kafka://")


def test_every_env_var_is_one_the_worker_reads() -> None:
    known = {name for path in (ROOT / "streams").rglob("*.py")
             for name in re.findall(r'"(KEFU_[A-Z_]+)"', path.read_text("utf-8"))}
    unknown = set(env(one("Deployment"))) - known
    assert not unknown, f"variables the worker does not read: {unknown}"


def test_business_rules_parse() -> None:
    config = parse_config(tomllib.loads((K8S / "kefu.toml").read_text("utf-8")))
    assert config.defaults.profile in ("taobao", "jd", "pdd")


def test_service_selects_the_workers() -> None:
    svc, deploy, pdb = one("Service"), one("Deployment"), one("PodDisruptionBudget")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [port] = svc["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["port"] == 6066
    assert port["targetPort"] == "http-metrics"
    assert svc["spec"]["clusterIP"] == "None", "headless: one DNS record per worker"


def test_servicemonitor_scrapes_the_service_as_job_kefu_pulse() -> None:
    sm, svc = one("ServiceMonitor"), one("Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) <= {"jobLabel", "selector", "endpoints", "namespaceSelector",
                               "targetLabels", "podTargetLabels", "sampleLimit"}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    assert int(endpoint["scrapeTimeout"][:-1]) <= int(endpoint["interval"][:-1])
    # The alert rules and dashboards select job="kefu-pulse".
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    assert job == "kefu-pulse"
    rules_text = "".join(p.read_text("utf-8") for p in sorted(RULES.glob("*.yml")))
    jobs = set(re.findall(r'job="([^"]+)"', rules_text))
    assert jobs <= {job}, f"rules expect jobs {jobs}"


def test_prometheusrule_is_generated_from_the_rule_files() -> None:
    gen = load_generator()
    assert gen.render(gen.build()) == (K8S / "prometheusrule.yaml").read_text("utf-8"), (
        "deploy/k8s/prometheusrule.yaml is stale: run python deploy/k8s/generate_prometheusrule.py"
    )
    rule = one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    source_groups = []
    for path in sorted(RULES.glob("*.yml")):
        source_groups += yaml.safe_load(path.read_text("utf-8"))["groups"]
    assert rule["spec"]["groups"] == source_groups
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"]


def test_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(one("PrometheusRule")["spec"], allow_unicode=True), "utf-8")
    proc = subprocess.run([promtool, "check", "rules", str(spec)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
