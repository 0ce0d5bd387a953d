"""`kefu-pulse report`: one 绩效考核表 file from several workers' `GET /api/v1/scorecard`.

Each worker holds the agents of the partitions it owns, so a shop's table is the union of every
worker's rows. The workers' JSON documents are merged and written with the same code as the
endpoint's files (`streams.export.scorecard_files`).

An agent (shop, agent id) that two workers both report is an error, not a silent choice: it
means a rebalance was moving it at that moment, or one worker was listed twice, and either copy
may be the stale one. People are paid by this table, so the command fails, names both URLs and
asks for a re-run (rebalances settle in seconds). A worker that does not hold the period, is
still recovering, or refuses the token fails the whole report the same way: a table with one
worker's agents missing would look complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from streams.domain.scorecard import ITEMS
from streams.export import scorecard_files
from streams.export.auth import READ_TOKEN_ENV

PATH = "/api/v1/scorecard"


class ReportError(Exception):
    """Why the report could not be made; one line for the user."""


def scorecard_url(base: str, period: str) -> str:
    """A worker's base URL (`http://host:6066`, or the endpoint itself) → the JSON query."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    path = parts.path.rstrip("/")
    if not path.endswith(PATH):
        path += PATH
    return urlunsplit((parts.scheme, parts.netloc, path,
                       urlencode({"period": period, "format": "json"}), ""))


def fetch(base: str, period: str, token: str | None, timeout: float = 30) -> dict[str, Any]:
    """One worker's scorecard document; any failure is a ReportError naming the worker."""
    url = scorecard_url(base, period)
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = orjson.loads(exc.read()).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            detail = ""
        raise ReportError(f"{base}: HTTP {exc.code} {detail or exc.reason}".rstrip()) from None
    except (OSError, ValueError) as exc:  # refused, timed out, bad URL
        raise ReportError(f"{base}: {exc}") from None
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("agents"), list):
            raise ValueError
    except ValueError:
        raise ReportError(f"{base}: not a scorecard document") from None
    return doc


def merge(docs: Sequence[tuple[str, Mapping[str, Any]]], period: str) -> dict[str, Any]:
    """The workers' (URL, document) rows in one document, sorted by shop, team, agent; an
    agent in two documents is an error."""
    seen: dict[tuple[str, str], str] = {}
    rows: list[dict[str, Any]] = []
    not_held: set[str] = set()
    for base, doc in docs:
        items = doc.get("items")
        if items is not None and list(items) != list(ITEMS):
            raise ReportError(f"{base}: scorecard items {items} differ from this version's")
        not_held.update(doc.get("not_held_shops") or ())
        for row in doc["agents"]:
            key = (row["shop"], row["agent"])
            if key in seen:
                raise ReportError(
                    f"agent {row['agent']} of shop {row['shop']} is reported by both "
                    f"{seen[key]} and {base} (a rebalance in progress, or a worker listed "
                    "twice); run the report again")
            seen[key] = base
            rows.append(row)
    rows.sort(key=lambda r: (r["shop"], r["team"], r["agent"]))
    return {"period": period, "items": list(ITEMS), "not_held_shops": sorted(not_held),
            "agents": rows}


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failed run never leaves half a table."""
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_report(urls: Sequence[str], period: str, fmt: str, out: Path, *, lang: str = "zh",
                token: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """Fetch, merge and write; returns the merged document."""
    if fmt not in ("csv", "xlsx"):
        raise ReportError(f"--format must be csv or xlsx, got {fmt!r}")
    docs = [(base, fetch(base, period, token, timeout)) for base in urls]
    doc = merge(docs, period)
    data = scorecard_files.to_csv(doc, lang) if fmt == "csv" else scorecard_files.to_xlsx(doc,
                                                                                        lang)
    write_atomic(out, data)
    return doc


def run(urls: Sequence[str], period: str, fmt: str | None, out: str, lang: str,
        token: str | None, timeout: float) -> int:
    """The command: exit 0 with a one-line summary, 1 with a one-line error."""
    path = Path(out)
    fmt = fmt or (path.suffix.lstrip(".").lower() if path.suffix else "xlsx")
    token = token or os.environ.get(READ_TOKEN_ENV, "").strip() or None
    try:
        doc = make_report(urls, period, fmt, path, lang=lang, token=token, timeout=timeout)
    except (ReportError, OSError) as exc:
        print(f"kefu-pulse report: {exc}", file=sys.stderr)
        return 1
    if doc["not_held_shops"]:
        print(f"kefu-pulse report: warning: shops in another local period, left out: "
              f"{', '.join(doc['not_held_shops'])}", file=sys.stderr)
    passed = sum(1 for r in doc["agents"] if r["passed"])
    print(f"kefu-pulse report: {len(doc['agents'])} agents ({passed} passed) from "
          f"{len(urls)} workers -> {path}", file=sys.stderr)
    return 0
