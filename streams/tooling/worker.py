"""A `kefu-pulse worker` subprocess: its own app id, topics, port, data directory and log.

The benchmark and the integration tests both run real workers (as in production) so that one
can be SIGKILLed mid-stream and restarted on the same state; this is the one wrapper they share.
The tests' harness subclasses it for assertion-style waits and parsed `/metrics`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from streams.tooling.net import free_port, http_get

__all__ = ["TOPIC_KINDS", "WorkerProcess", "topics_for"]

TOPIC_KINDS = ("chat", "orders", "ratings", "agents", "deadletter")


def topics_for(app_id: str) -> dict[str, str]:
    """Topic names of one app id, so runs of different app ids never share data."""
    return {kind: f"{app_id}.{kind}" for kind in TOPIC_KINDS}


class WorkerProcess:
    """One `kefu-pulse worker` subprocess; `start()` spawns it, `stop()`/`kill()` end it."""

    def __init__(
        self,
        bootstrap_url: str,
        workdir: Path,
        *,
        app_id: str,
        topics: Mapping[str, str] | None = None,
        clock: str = "event",
        config: Path | None = None,
        partitions: int = 4,
        name: str = "worker",
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = True,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.topics = dict(topics) if topics is not None else topics_for(app_id)
        self.cwd = cwd
        # Own session (the benchmark): a Ctrl-C meant for the parent does not reach the worker
        # before the parent stops it in order. The tests keep theirs in pytest's group.
        self.new_session = new_session
        self.env = {
            **os.environ,
            "KEFU_BROKER": bootstrap_url,
            "KEFU_WEB_PORT": str(self.port),
            "KEFU_WEB_HOST": "127.0.0.1",
            "KEFU_DATA_DIR": str(workdir / f"{name}-data"),
            "KEFU_PARTITIONS": str(partitions),
            "KEFU_CLOCK": clock,
            "KEFU_APP_ID": app_id,
            "KEFU_TOPIC_CHAT": self.topics["chat"],
            "KEFU_TOPIC_ORDERS": self.topics["orders"],
            "KEFU_TOPIC_RATINGS": self.topics["ratings"],
            **({"KEFU_TOPIC_AGENTS": self.topics["agents"]} if "agents" in self.topics else {}),
            "KEFU_TOPIC_DEADLETTER": self.topics["deadletter"],
            **({"KEFU_CONFIG": str(config)} if config is not None else {}),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def start(self) -> WorkerProcess:
        """Spawn the worker, its output appended to `log_path` (a restart keeps the history)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.spawned_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                cwd=self.cwd, start_new_session=self.new_session,
            )
        finally:
            logf.close()
        return self

    def restart_as(self, name: str) -> WorkerProcess:
        """A fresh, unstarted process with the same app id, topics and state (new port and log).

        The data directory stays the first one's, as a restarted pod keeps its volume.
        """
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.name = name
        clone.port = free_port()
        clone.url = f"http://127.0.0.1:{clone.port}"
        clone.log_path = self.log_path.with_name(f"{name}.log")
        clone.env = {**self.env, "KEFU_WEB_PORT": str(clone.port)}
        clone.proc = None
        clone.spawned_at = 0.0
        return clone

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise, with the log's tail, if the worker has exited."""
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise RuntimeError(f"{self.name} exited ({code}); log tail:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        return http_get(self.url + path, timeout)

    def wait_ready(self, timeout: float = 90) -> float:
        """Seconds from spawn to /readyz 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if self.get("/readyz", 2)[0] == 200:
                return time.monotonic() - self.spawned_at
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in {timeout:g}s; log tail:\n{self.log_tail()}")

    def metrics_body(self) -> bytes:
        """The raw `/metrics` text; raises when the worker is gone or answers an error."""
        status, body = self.get("/metrics", 30)
        if status != 200:
            self.check()
            raise RuntimeError(f"{self.name}: /metrics answered {status}")
        return body

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a clean shutdown that commits), SIGKILL after `timeout` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
