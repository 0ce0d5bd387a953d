"""JSONL files of simulator records: written so a replay reproduces the exact bytes.

`kefu-pulse replay` reads these (or bare event lines) to backfill topics.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import orjson

from streams.tooling.simulate.model import TOPIC_KINDS, SimMessage, TopicKind


def write_jsonl(messages: Iterable[SimMessage], path: str | Path | IO[bytes]) -> int:
    """Write `{"topic","key","value"}` lines; `value` is the event object, or the bad bytes.

    Bad values are written as a string (or `value_base64` when not UTF-8) so that `run_replay`
    reproduces the exact bytes; objects are inlined only when re-encoding gives the same bytes.
    """
    if isinstance(path, str | Path):
        with open(path, "wb") as fh:
            return write_jsonl(messages, fh)
    count = 0
    for msg in messages:
        line: dict[str, Any] = {"topic": msg.topic}
        try:
            line["key"] = msg.key.decode("utf-8")
        except UnicodeDecodeError:
            line["key_base64"] = base64.b64encode(msg.key).decode("ascii")
        line.update(_value_field(msg.value))
        path.write(orjson.dumps(line))
        path.write(b"\n")
        count += 1
    return count


def _value_field(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is dict and orjson.dumps(obj) == value:
        return {"value": obj}
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _infer_topic(obj: dict[str, Any]) -> TopicKind:
    if "order_id" in obj:
        return "orders"
    if "score" in obj:
        return "ratings"
    if "status" in obj and "buyer_id" not in obj:  # an agent's console status
        return "agents"
    return "chat"


def _derived_key(obj: Any) -> bytes | None:
    if type(obj) is dict:
        shop, buyer = obj.get("shop_id"), obj.get("buyer_id")
        if type(shop) is str and type(buyer) is str:
            return f"{shop}:{buyer}".encode()
        agent = obj.get("agent_id")
        if type(shop) is str and type(agent) is str and "status" in obj:  # kefu.agents' key
            return f"{shop}:{agent}".encode()
    return None


def _parse_line(line: bytes) -> tuple[TopicKind, bytes | None, bytes]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "chat", None, line  # garbage still goes in: the worker dead-letters it
    if type(obj) is not dict:
        return "chat", None, line
    topic = obj.get("topic")
    if topic in TOPIC_KINDS and ("value" in obj or "value_base64" in obj):
        if "value_base64" in obj:
            value = base64.b64decode(obj["value_base64"])
        elif type(obj["value"]) is str:
            value = obj["value"].encode("utf-8")
        else:
            value = orjson.dumps(obj["value"])
        key: bytes | None
        if type(obj.get("key")) is str:
            key = obj["key"].encode("utf-8")
        elif type(obj.get("key_base64")) is str:
            key = base64.b64decode(obj["key_base64"])
        else:
            key = _derived_key(obj["value"])
        return cast(TopicKind, topic), key, value
    return _infer_topic(obj), _derived_key(obj), line


def read_jsonl(path: str | Path | IO[bytes]) -> Iterator[tuple[TopicKind, bytes | None, bytes]]:
    """(topic kind, key, value) per non-blank line: envelopes as written, bare events inferred."""
    if isinstance(path, str | Path):
        if str(path) == "-":
            yield from read_jsonl(sys.stdin.buffer)
            return
        with open(path, "rb") as fh:
            yield from read_jsonl(fh)
        return
    for raw in path:
        line = raw.strip()
        if line:
            yield _parse_line(line)

