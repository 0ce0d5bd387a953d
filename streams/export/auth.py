"""Who may read and who may write on the worker's HTTP port.

The worker's port is often reachable beyond the support room (a TV on the office network, a
Prometheus in another namespace), and execution points feed the scorecard agents are paid by.
So:

- `KEFU_API_TOKEN` guards every write, as `Authorization: Bearer …` only (never a cookie or a
  query string, which a page on another site could make a browser send). With no API token
  configured, writes are refused (403): an unguarded write endpoint must be a decision, not a
  default.
- `KEFU_READ_TOKEN`, when set, guards every read but `/healthz`, `/readyz` and `/metrics`:
  Bearer, or `?token=` for links and the wall-board TV. The API token reads too.
- `KEFU_METRICS_TOKEN`, when set, guards `/metrics` (Bearer, for Prometheus' `authorization`).
- `KEFU_WALLBOARD_TOKEN` (older) keeps opening the wall-board page and its feed.
- `GET /api/v1/waiting` lists buyer ids, so it always needs the read or the API token, even
  where reads are open (no read token set); with neither configured it is refused (403). The
  wall-board token never opens it: a TV link is shared more widely than a read token.

Tokens are compared in constant time (`hmac.compare_digest`), so response timing does not leak
how much of a guess was right.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "API_TOKEN_ENV",
    "METRICS_TOKEN_ENV",
    "READ_TOKEN_ENV",
    "WALLBOARD_TOKEN_ENV",
    "Tokens",
    "bearer",
    "matches",
]

API_TOKEN_ENV = "KEFU_API_TOKEN"
READ_TOKEN_ENV = "KEFU_READ_TOKEN"
METRICS_TOKEN_ENV = "KEFU_METRICS_TOKEN"
WALLBOARD_TOKEN_ENV = "KEFU_WALLBOARD_TOKEN"


@dataclass(frozen=True, slots=True)
class Tokens:
    """The configured tokens; None = not set (empty or blank counts as not set)."""

    api: str | None = None
    read: str | None = None
    metrics: str | None = None
    wallboard: str | None = None

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> Tokens:
        e = os.environ if env is None else env

        def get(name: str) -> str | None:
            return e.get(name, "").strip() or None

        return Tokens(get(API_TOKEN_ENV), get(READ_TOKEN_ENV), get(METRICS_TOKEN_ENV),
                      get(WALLBOARD_TOKEN_ENV))

    def readers(self) -> list[str]:
        """Tokens that open reads; empty = reads are open (no read token configured)."""
        if self.read is None:
            return []
        return [t for t in (self.read, self.api) if t]

    def buyer_readers(self) -> list[str]:
        """Tokens that open buyer ids (the waiting list): read and API token, whichever are
        set; empty = nobody may (never "open", unlike `readers`)."""
        return [t for t in (self.read, self.api) if t]

    def board_readers(self) -> list[str]:
        """Tokens that open the wall-board: the read tokens, and the wall-board's own."""
        out = self.readers()
        if self.wallboard:
            if not out and self.api:
                out = [self.api]  # a board locked by its own token opens for the API token too
            out = [*out, self.wallboard]
        return out


def matches(given: str | None, expected: Iterable[str | None]) -> bool:
    """Whether `given` equals one of the configured tokens, compared in constant time."""
    if not given:
        return False
    raw = given.encode()
    ok = False
    for token in expected:
        if token:
            ok |= hmac.compare_digest(raw, token.encode())
    return ok


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer …` header, else None."""
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
