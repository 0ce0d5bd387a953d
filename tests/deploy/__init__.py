"""Shared helpers for the deploy/ tests: find promtool/amtool/prometheus/alertmanager, run them.

The binaries come from Debian's `prometheus` and `prometheus-alertmanager` packages, which
`make test` installs (`make test-deps-prometheus`). A test that needs one and does not find it
tries that make target once; it is skipped only when the tool still cannot be had, and under CI
(CI=true) a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from streams.tooling.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
AM_DIR = DEPLOY / "alertmanager"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
PROMTOOL_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))

# Debian names: /usr/bin/prometheus, promtool, prometheus-alertmanager, amtool. Upstream tarballs
# call the server `alertmanager`.
TOOLS: dict[str, tuple[str, ...]] = {
    "promtool": ("promtool",),
    "prometheus": ("prometheus",),
    "amtool": ("amtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
}


def _which(name: str) -> str | None:
    for candidate in TOOLS[name]:
        path = shutil.which(candidate)
        if path:
            return path
    return None


@functools.cache
def _install_attempt() -> str:
    """Run `make test-deps-prometheus` once per session; return its output for skip reasons."""
    if shutil.which("make") is None:
        return "make is not installed"
    try:
        proc = subprocess.run(
            ["make", "-s", "test-deps-prometheus"], cwd=ROOT, capture_output=True, text=True,
            timeout=600, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"make test-deps-prometheus failed: {exc}"
    return (proc.stdout + proc.stderr).strip()[-500:] or f"exit {proc.returncode}"


def require_tool(name: str) -> str:
    """Absolute path of a Prometheus tool; install it when missing, else skip (fail under CI)."""
    path = _which(name)
    if path is None:
        note = _install_attempt()
        path = _which(name)
        if path is None:
            reason = (f"{'/'.join(TOOLS[name])} not found and `make test-deps-prometheus` could "
                      f"not install it (Debian packages prometheus, prometheus-alertmanager): "
                      f"{note}")
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    return path


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # PyYAML belongs in the [test] extra; say so instead of erroring
        reason = "PyYAML is not installed (pip install pyyaml; it belongs in the [test] extra)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return yaml


def load_yaml(path: Path) -> Any:
    return _yaml().safe_load(path.read_text(encoding="utf-8"))


def dump_yaml(data: Any, path: Path) -> Path:
    path.write_text(_yaml().safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run a command; return (exit code, stdout + stderr)."""
    proc = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def http_json(url: str, data: Any = None, timeout: float = 5) -> Any:
    """GET (or POST `data` as JSON) on a loopback URL; the decoded JSON answer."""
    body = None if data is None else orjson.dumps(data)
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return orjson.loads(raw) if raw else None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.25) -> Any:
    """Poll until `predicate()` is truthy (bounded); return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, KeyError, AssertionError) as exc:
            last_error = exc
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class Server:
    """A Prometheus or Alertmanager subprocess on a loopback port, logging to a file."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> Server:
        def ready() -> bool:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"{self.name} exited ({code}):\n{self.log_tail()}")
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return int(resp.status) == 200

        try:
            wait_for(ready, timeout, f"{self.name} ready")
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def alertmanager_test_config(
    tmp: Path, sink_url: str = "http://127.0.0.1:9", timing: dict[str, str] | None = None
) -> Path:
    """A test copy of the real alertmanager.yml: every receiver posts to `sink_url`/<receiver>.

    Only the destinations change (secrets become files in `tmp` holding test values, so the
    `*_file` mechanism itself is exercised) and, when `timing` is given, the group_wait /
    group_interval / repeat_interval of the root and every route. Routes, matchers, grouping,
    inhibit rules and templates are the real ones.
    """
    config = load_yaml(AM_CONFIG)
    secrets = tmp / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    base = sink_url.rstrip("/")
    for receiver in config["receivers"]:
        name = receiver["name"]
        for entry in receiver.get("pagerduty_configs", []):
            key_file = secrets / f"{name}.key"
            key_file.write_text(f"test-routing-key-{name}\n")
            entry["routing_key_file"] = str(key_file)
            entry["url"] = f"{base}/{name}"
        for entry in receiver.get("slack_configs", []):
            url = secrets / f"{name}.url"
            url.write_text(f"{base}/{name}\n")
            entry["api_url_file"] = str(url)
    config["templates"] = [str(AM_DIR / "templates" / "*.tmpl")]
    if timing:
        stack = [config["route"]]
        while stack:
            route = stack.pop()
            for setting, value in timing.items():
                if setting in route or route is config["route"]:
                    route[setting] = value
            stack.extend(route.get("routes", []))
    return dump_yaml(config, tmp / "alertmanager.yml")


def start_alertmanager(config: Path, workdir: Path) -> Server:
    """Alertmanager on loopback only, clustering off (no gossip port), state in `workdir`."""
    binary = require_tool("alertmanager")
    port = free_port()
    data = workdir / "alertmanager-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    return Server("alertmanager", argv, port, workdir / "alertmanager.log").wait_ready()


def start_prometheus(config: Path, workdir: Path) -> Server:
    """Prometheus on loopback only, TSDB in `workdir`."""
    binary = require_tool("prometheus")
    port = free_port()
    data = workdir / "prometheus-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}",
        "--log.level=debug",
    ]
    return Server("prometheus", argv, port, workdir / "prometheus.log").wait_ready()
