"""Decode and validate the raw Kafka values of the input topics (docs/interfaces.md).

This is the worker's hot path, so it uses orjson and plain dict look-ups only. Every failure is a
`Rejected` carrying a short, stable reason code (`missing:shop_id`, `range:ts`, ...) that goes
into the dead-letter headers and logs; no other exception may escape, whatever the bytes, because
one poison message must never stop the worker.

Decisions where the contract is silent:

- `ts` may also be a JSON float (some producers emit `Date.now()` through a float type); it is
  floored to whole milliseconds. Bools, numeric strings and naive date strings are rejected.
- Timestamps must lie in [2000-01-01, 2100-01-01] UTC: outside that they are almost always
  epoch seconds or microseconds sent by mistake, which would otherwise poison the windows.
- A JSON `null` counts as absent: `missing:<field>` for required fields, the default otherwise.
- `amount` is a `Decimal` taken from the exact JSON token, so `19.90` stays `19.90`; it must be
  finite, >= 0 and < 10^15 (a sanity bound well above any single order).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import orjson

from streams.domain.model import (
    CHAT_KINDS,
    MAX_CONCURRENT_RANGE,
    ORDER_STATUSES,
    SENDERS,
    STATUSES,
    WORDS,
    AgentStatus,
    AgentStatusEvent,
    ChatEvent,
    ChatKind,
    OrderEvent,
    OrderStatus,
    RatingEvent,
    Sender,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_ID_CHARS",
    "MAX_TEXT_BYTES",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "Rejected",
    "dead_letter",
    "dead_letter_headers",
    "decode_agent_status",
    "decode_chat",
    "decode_order",
    "decode_rating",
    "parse_ts",
    "valid_id",
]

MAX_EVENT_BYTES = 65_536
MAX_ID_CHARS = 128
MAX_TEXT_BYTES = 8 * 1024
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_AMOUNT = Decimal(10) ** 15

HEADER_REASON = "kefu-reason"
HEADER_TOPIC = "kefu-source-topic"
HEADER_PARTITION = "kefu-source-partition"
HEADER_OFFSET = "kefu-source-offset"
HEADER_LENGTH = "kefu-original-length"  # set when the dead letter holds only the value's head
HEADER_KEY_LENGTH = "kefu-original-key-length"
MAX_DEAD_LETTER_BYTES = 65_536
MAX_DEAD_LETTER_KEY_BYTES = 1_024


class Rejected(Exception):
    """An input event that breaks the input rules (docs/interfaces.md); `reason` is a stable
    machine-readable code."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Timestamps

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DAYS_BEFORE_MONTH = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (no datetime objects on the hot path)."""
    y = year - 1
    days = y * 365 + y // 4 - y // 100 + y // 400 - 719_162  # 719_162 = days to 1970-01-01
    days += _DAYS_BEFORE_MONTH[month] + (1 if month > 2 and _is_leap(year) else 0)
    return days + day - 1


def _parse_rfc3339(value: str) -> int:
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise Rejected("format:ts")
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute, second = int(m[4]), int(m[5]), int(m[6])
    if not 1 <= month <= 12:
        raise Rejected("format:ts")
    month_days = 29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1]
    # second 60 is an RFC 3339 leap second; POSIX time folds it onto the next second.
    if not (1 <= day <= month_days and hour <= 23 and minute <= 59 and second <= 60):
        raise Rejected("format:ts")
    ms = int((m[7] or "0")[:3].ljust(3, "0"))
    offset_s = 0
    if m[8] is not None:
        off_h, off_m = int(m[9]), int(m[10])
        if off_h > 23 or off_m > 59:
            raise Rejected("format:ts")
        offset_s = (off_h * 3600 + off_m * 60) * (1 if m[8] == "+" else -1)
    seconds = _days_from_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return (seconds - offset_s) * 1000 + ms


def parse_ts(value: object) -> int:
    """Event time as epoch ms from an int (ms), a float (ms, floored) or an RFC 3339 string.

    RFC 3339 strings must carry an offset (`Z` or `±hh:mm`): a naive local time is ambiguous
    across the shops' time zones, so it is rejected rather than guessed.
    """
    if type(value) is int:
        ms = value
    elif type(value) is str:
        ms = _parse_rfc3339(value)
    elif type(value) is float:
        if not math.isfinite(value):
            raise Rejected("range:ts")
        ms = math.floor(value)
    elif value is None:
        raise Rejected("missing:ts")
    else:  # bool, list, dict, int/str subclasses
        raise Rejected("type:ts")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise Rejected("range:ts")
    return ms


# --------------------------------------------------------------------------------------------
# Field helpers


def _load(raw: bytes | bytearray | memoryview | None, max_bytes: int) -> dict[str, Any]:
    if not raw:  # None is a Kafka tombstone
        raise Rejected("empty")
    try:
        if len(raw) > max_bytes:  # before parsing: never spend CPU on a huge payload
            raise Rejected("too_large")
        obj = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):  # TypeError: not bytes at all
        raise Rejected("invalid_json") from None
    if type(obj) is not dict:
        raise Rejected("not_an_object")
    return obj


# Ids may hold any printable Unicode; control characters (C0 and DEL) are rejected: they break
# logs, label values and any key that a separator character would otherwise make ambiguous.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _req_id(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise Rejected(f"missing:{name}" if value is None else f"type:{name}")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise Rejected(f"length:{name}")
    if _CONTROL.search(value) is not None:
        raise Rejected(f"control:{name}")
    return value


def _opt_id(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise Rejected(f"type:{name}")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise Rejected(f"length:{name}")
    if _CONTROL.search(value) is not None:
        raise Rejected(f"control:{name}")
    return value


def valid_id(value: object) -> bool:
    """Whether `value` is an acceptable id (1–128 chars, no control characters)."""
    return (
        type(value) is str and 1 <= len(value) <= MAX_ID_CHARS and _CONTROL.search(value) is None
    )


def _req_enum(obj: dict[str, Any], name: str, allowed: frozenset[str]) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise Rejected(f"missing:{name}" if value is None else f"type:{name}")
    if value not in allowed:
        raise Rejected(f"enum:{name}")
    return value


def _ts(obj: dict[str, Any]) -> int:
    return parse_ts(obj.get("ts"))


# --------------------------------------------------------------------------------------------
# Decoders


def decode_chat(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> ChatEvent:
    """Validate one `kefu.chat` value; unknown extra fields are ignored (forward compatible)."""
    obj = _load(raw, max_bytes)
    message_id = _req_id(obj, "message_id")
    shop_id = _req_id(obj, "shop_id")
    buyer_id = _req_id(obj, "buyer_id")
    sender = WORDS[_req_enum(obj, "sender", SENDERS)]  # one shared string (model.WORDS)
    agent_id = _opt_id(obj, "agent_id")
    ts = _ts(obj)
    kind = obj.get("event")
    if kind is None:
        kind = "message"
    elif type(kind) is not str:
        raise Rejected("type:event")
    elif kind not in CHAT_KINDS:
        raise Rejected("enum:event")
    else:
        kind = WORDS[kind]
    if kind == "transfer":
        if sender != "system":
            raise Rejected("contradiction:transfer_sender")
        if agent_id is None:
            raise Rejected("agent_id_required")
    elif sender == "agent" and agent_id is None:
        raise Rejected("agent_id_required")
    text = obj.get("text")
    if text is not None:
        if type(text) is not str:
            raise Rejected("type:text")
        # A char is at most 4 UTF-8 bytes, so short texts skip the encode.
        if len(text) * 4 > MAX_TEXT_BYTES and len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise Rejected("text_too_large")
    return ChatEvent(
        message_id,
        shop_id,
        buyer_id,
        cast(Sender, sender),
        agent_id,
        ts,
        cast(ChatKind, kind),
        text,
        _opt_bool(obj, "resolved"),
    )


def _opt_bool(obj: dict[str, Any], name: str) -> bool | None:
    """An optional JSON boolean: `true`/`false`/absent/null; 1, "yes" and the like are refused."""
    value = obj.get(name)
    if value is None or type(value) is bool:
        return value
    raise Rejected(f"type:{name}")


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_AMOUNT_TOKEN = re.compile(rb'"amount"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')


def _amount_from_float(value: float, raw: bytes | bytearray | memoryview) -> Decimal:
    """The exact JSON token when it is unambiguous, else the float's shortest repr.

    orjson has already turned the number into a binary float; reading the token back from the
    raw bytes keeps every digit (amounts beyond 15 significant digits, trailing zeros). The
    token is used only if it is the sole `"amount"` token and parses to the same float, so odd
    input (escaped keys, duplicates, nested objects) can never pick a different number.
    """
    tokens = _AMOUNT_TOKEN.findall(bytes(raw))
    if len(tokens) == 1 and float(tokens[0]) == value:
        return Decimal(tokens[0].decode("ascii"))
    return Decimal(repr(value))


def _amount(obj: dict[str, Any], raw: bytes | bytearray | memoryview) -> Decimal:
    value = obj.get("amount")
    try:
        if type(value) is str:
            if len(value) > 64 or _DECIMAL_TEXT.fullmatch(value) is None:
                raise Rejected("format:amount")
            amount = Decimal(value)
        elif type(value) is int:
            amount = Decimal(value)
        elif type(value) is float:
            if not math.isfinite(value):
                raise Rejected("range:amount")
            amount = _amount_from_float(value, raw)
        elif value is None:
            raise Rejected("missing:amount")
        else:
            raise Rejected("type:amount")
        if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
            raise Rejected("range:amount")
    except (InvalidOperation, ValueError, OverflowError):
        raise Rejected("format:amount") from None
    return amount.copy_abs() if amount.is_zero() else amount  # no "-0" in the sums


def decode_order(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> OrderEvent:
    """Validate one `kefu.orders` lifecycle event."""
    obj = _load(raw, max_bytes)
    order_id = _req_id(obj, "order_id")
    shop_id = _req_id(obj, "shop_id")
    buyer_id = _req_id(obj, "buyer_id")
    status = cast(OrderStatus, _req_enum(obj, "status", ORDER_STATUSES))
    amount = _amount(obj, raw)
    return OrderEvent(order_id, shop_id, buyer_id, status, amount, _ts(obj))


def decode_rating(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> RatingEvent:
    """Validate one `kefu.ratings` event; `score` must be a JSON integer 1–5 (not 4.0, not true)."""
    obj = _load(raw, max_bytes)
    shop_id = _req_id(obj, "shop_id")
    buyer_id = _req_id(obj, "buyer_id")
    agent_id = _req_id(obj, "agent_id")
    score = obj.get("score")
    if type(score) is not int:
        raise Rejected("missing:score" if score is None else "type:score")
    if not 1 <= score <= 5:
        raise Rejected("range:score")
    return RatingEvent(shop_id, buyer_id, agent_id, score, _ts(obj), _opt_bool(obj, "resolved"))


_STATUSES = frozenset(STATUSES)


def decode_agent_status(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> AgentStatusEvent:
    """Validate one `kefu.agents` event; `max_concurrent`, when present, must be a JSON integer
    1–200 (a console that sends 0 or 1e6 would make occupancy meaningless)."""
    obj = _load(raw, max_bytes)
    shop_id = _req_id(obj, "shop_id")
    agent_id = _req_id(obj, "agent_id")
    status = cast(AgentStatus, _req_enum(obj, "status", _STATUSES))
    limit = obj.get("max_concurrent")
    if limit is not None:
        if type(limit) is not int:
            raise Rejected("type:max_concurrent")
        low, high = MAX_CONCURRENT_RANGE
        if not low <= limit <= high:
            raise Rejected("range:max_concurrent")
    return AgentStatusEvent(shop_id, agent_id, status, _ts(obj), limit)


def dead_letter(
    raw: bytes, key: bytes | None, reason: str, topic: str, partition: int, offset: int
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter for one input record.

    A value larger than `MAX_DEAD_LETTER_BYTES` is cut to its first 64 KiB, with its full
    length in `kefu-original-length`: the producer refuses requests over ~1 MB, and a worker
    that cannot write a dead letter would crash on the same record at every restart. The
    source topic, partition and offset say where the whole record still is.
    """
    headers = dead_letter_headers(reason, topic, partition, offset)
    if len(raw) > MAX_DEAD_LETTER_BYTES:
        headers.append((HEADER_LENGTH, str(len(raw)).encode("ascii")))
        raw = bytes(raw[:MAX_DEAD_LETTER_BYTES])
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
        headers.append((HEADER_KEY_LENGTH, str(len(key)).encode("ascii")))
        key = bytes(key[:MAX_DEAD_LETTER_KEY_BYTES])
    return key, raw, headers


def dead_letter_headers(
    reason: str, topic: str, partition: int | None, offset: int | None
) -> list[tuple[str, bytes]]:
    """Kafka headers for a dead letter; the value stays the original bytes, untouched.

    Partition and offset are left out when unknown (e.g. a value that never came from Kafka).
    """
    headers = [(HEADER_REASON, reason.encode("utf-8")), (HEADER_TOPIC, topic.encode("utf-8"))]
    if partition is not None:
        headers.append((HEADER_PARTITION, str(partition).encode("ascii")))
    if offset is not None:
        headers.append((HEADER_OFFSET, str(offset).encode("ascii")))
    return headers
