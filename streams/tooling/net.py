"""Loopback helpers shared by the broker, the worker wrapper, the benchmark and the tests."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

__all__ = ["free_port", "http_get"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now.

    Another process may take it before the caller binds it; callers that spawn a server on it
    (the embedded broker) retry with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error is a status, not an exception, and a connection
    that fails is (0, b"") so pollers can simply retry."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""
