"""Topic administration for the worker and the producers: create what is missing, never resize.

A fresh cluster lacks the input topics; the worker creates them with `KEFU_PARTITIONS`
partitions but never touches existing ones, so production partition counts stay the
operator's choice (docs/interfaces.md `KEFU_PARTITIONS`). Runtime code: the worker calls
`ensure_topics` at start, so it lives outside `streams.tooling`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import kafka.errors
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from streams.config import Settings

__all__ = ["check_cluster", "ensure_topics", "kafka_client_kwargs", "topic_partitions"]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


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


def check_cluster(bootstrap: str, timeout: float) -> None:
    """Raise unless the cluster answers a metadata request within `timeout` seconds."""
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
