"""Input validation (docs/interfaces.md): every rule accepted and rejected, plus fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.model import WORDS, ChatEvent, OrderEvent, RatingEvent
from streams.events import (
    MAX_TS_MS,
    MIN_TS_MS,
    Rejected,
    dead_letter_headers,
    decode_chat,
    decode_order,
    decode_rating,
    parse_ts,
)

TS = 1_731_286_800_000  # 2024-11-11T01:00:00Z


def chat(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "message_id": "m1",
        "shop_id": "tmall-flagship",
        "buyer_id": "tb123",
        "sender": "buyer",
        "agent_id": "tm-a01",
        "ts": TS,
        "text": "在吗？",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def order(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": "1693785818880992661",
        "shop_id": "tmall-flagship",
        "buyer_id": "tb123",
        "status": "paid",
        "amount": "19.90",
        "ts": TS,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def rating(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "shop_id": "tmall-flagship",
        "buyer_id": "tb123",
        "agent_id": "tm-a01",
        "score": 5,
        "ts": TS,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def reason_of(decoder: Any, obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    with pytest.raises(Rejected) as info:
        decoder(raw)
    assert str(info.value) == info.value.reason
    return info.value.reason


# --------------------------------------------------------------------------------------------
# Timestamps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TS, TS),
        (float(TS), TS),
        (TS + 0.9, TS),  # floats are floored to whole ms
        ("2024-11-11T09:00:00+08:00", TS),
        ("2024-11-11T01:00:00Z", TS),
        ("2024-11-11T01:00:00z", TS),
        ("2024-11-11t01:00:00Z", TS),
        ("2024-11-11 01:00:00Z", TS),
        ("2024-11-10T20:00:00-05:00", TS),
        ("2024-11-11T01:00:00-00:00", TS),
        ("2024-11-11T06:30:00+05:30", TS),
        ("2024-11-11T01:00:00.123Z", TS + 123),
        ("2024-11-11T01:00:00.1Z", TS + 100),
        ("2024-11-11T01:00:00.123999999Z", TS + 123),  # truncated, never rounded up
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # leap second folds onto the next
        ("2000-01-01T00:00:00Z", MIN_TS_MS),
        ("2100-01-01T00:00:00Z", MAX_TS_MS),
        (MIN_TS_MS, MIN_TS_MS),
        (MAX_TS_MS, MAX_TS_MS),
    ],
)
def test_parse_ts_accepts(value: object, expected: int) -> None:
    assert parse_ts(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing:ts"),
        (True, "type:ts"),
        (False, "type:ts"),
        ([TS], "type:ts"),
        ({"ms": TS}, "type:ts"),
        ("2024-11-11T09:00:00", "format:ts"),  # naive: ambiguous across shop time zones
        ("2024-11-11 09:00:00", "format:ts"),
        ("2024-11-11", "format:ts"),
        ("1731286800000", "format:ts"),
        ("", "format:ts"),
        ("2024-11-11T09:00:00+0800", "format:ts"),
        ("2024-11-11T09:00:00+08", "format:ts"),
        ("20241111T010000Z", "format:ts"),
        ("2024-13-01T00:00:00Z", "format:ts"),
        ("2023-02-29T00:00:00Z", "format:ts"),
        ("2024-04-31T00:00:00Z", "format:ts"),
        ("2024-11-11T24:00:00Z", "format:ts"),
        ("2024-11-11T23:60:00Z", "format:ts"),
        ("2024-11-11T01:00:00+24:00", "format:ts"),
        ("２０２４-11-11T01:00:00Z", "format:ts"),  # full-width digits
        (" 2024-11-11T01:00:00Z", "format:ts"),
        (1_731_286_800, "range:ts"),  # epoch seconds by mistake
        (1_731_286_800_000_000, "range:ts"),  # microseconds by mistake
        (MIN_TS_MS - 1, "range:ts"),
        (MAX_TS_MS + 1, "range:ts"),
        (-1, "range:ts"),
        (float("inf"), "range:ts"),
        (float("nan"), "range:ts"),
        ("1999-12-31T23:59:59.999Z", "range:ts"),
        ("2100-01-01T00:00:00.001Z", "range:ts"),
    ],
)
def test_parse_ts_rejects(value: object, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_ts(value)
    assert info.value.reason == reason


@settings(max_examples=300)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_parse_ts_matches_datetime(moment: datetime, offset_min: int) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    expected = _ms(local)
    assert parse_ts(local.isoformat(timespec="milliseconds")) == expected
    assert parse_ts(local.isoformat(timespec="microseconds")) == expected


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------
# Chat


def test_chat_good_event() -> None:
    event = decode_chat(orjson.dumps(chat()))
    assert event == ChatEvent("m1", "tmall-flagship", "tb123", "buyer", "tm-a01", TS, "message",
                              "在吗？")  # fmt: skip
    assert event.conversation_key == "tmall-flagship:tb123"


@pytest.mark.parametrize(
    "fields",
    [
        {"agent_id": None},  # a queued buyer
        {"agent_id": ...},
        {"text": ...},
        {"text": None},
        {"text": ""},
        {"event": None},
        {"event": "message"},
        {"event": "close"},
        {"event": "close", "sender": "agent"},
        {"event": "close", "sender": "system", "agent_id": None},
        {"event": "transfer", "sender": "system", "agent_id": "tm-a02"},
        {"sender": "agent"},
        {"sender": "bot", "agent_id": None},
        {"sender": "system", "agent_id": None},
        {"ts": "2024-11-11T09:00:00+08:00"},
        {"channel": "dongdong", "extra": {"nested": [1, 2]}},  # unknown fields are ignored
        {"message_id": "x" * 128, "shop_id": "s" * 128, "buyer_id": "买" * 128},
        {"agent_id": "a" * 128},
        {"text": "好" * 2730},  # 8190 bytes
        {"text": "a" * 8192},
        {"text": "😀" * 2048},  # exactly 8 KiB of 4-byte chars
    ],
)
def test_chat_accepts(fields: dict[str, Any]) -> None:
    event = decode_chat(orjson.dumps(chat(**fields)))
    assert event.shop_id == chat(**fields)["shop_id"]
    assert event.event == (fields.get("event") or "message")


def test_chat_words_are_shared_strings_whatever_the_input_held() -> None:
    """A decoded event's sender and kind are `model.WORDS`' strings, not the JSON's copies: a
    conversation keeps its recent events, and these two cost ~110 bytes each otherwise."""
    for sender, kind, agent in (("agent", "close", "tm-a01"), ("buyer", "message", None),
                                ("system", "transfer", "tm-a02")):
        raw = orjson.dumps(chat(sender=sender, event=kind, agent_id=agent))
        one, two = decode_chat(raw), decode_chat(raw)
        assert (one.sender, one.event) == (sender, kind)
        assert one.sender is two.sender is WORDS[sender]
        assert one.event is two.event is WORDS[kind]


def test_chat_defaults() -> None:
    event = decode_chat(orjson.dumps(chat(agent_id=..., text=...)))
    assert (event.agent_id, event.text, event.event) == (None, None, "message")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"message_id": ...}, "missing:message_id"),
        ({"shop_id": ...}, "missing:shop_id"),
        ({"buyer_id": ...}, "missing:buyer_id"),
        ({"sender": ...}, "missing:sender"),
        ({"ts": ...}, "missing:ts"),
        ({"shop_id": None}, "missing:shop_id"),
        ({"message_id": 17}, "type:message_id"),
        ({"buyer_id": ["tb123"]}, "type:buyer_id"),
        ({"shop_id": True}, "type:shop_id"),
        ({"message_id": ""}, "length:message_id"),
        ({"shop_id": "s" * 129}, "length:shop_id"),
        ({"buyer_id": "买" * 129}, "length:buyer_id"),
        ({"agent_id": ""}, "length:agent_id"),
        ({"agent_id": "a" * 129}, "length:agent_id"),
        ({"agent_id": 7}, "type:agent_id"),
        ({"sender": "robot"}, "enum:sender"),
        ({"sender": "Buyer"}, "enum:sender"),
        ({"sender": 1}, "type:sender"),
        ({"event": "msg"}, "enum:event"),
        ({"event": 0}, "type:event"),
        ({"ts": "2024-11-11T09:00:00"}, "format:ts"),
        ({"ts": 1_731_286_800}, "range:ts"),
        ({"ts": True}, "type:ts"),
        ({"sender": "agent", "agent_id": None}, "agent_id_required"),
        ({"sender": "agent", "agent_id": ...}, "agent_id_required"),
        ({"event": "transfer", "sender": "system", "agent_id": None}, "agent_id_required"),
        ({"event": "transfer", "sender": "agent"}, "contradiction:transfer_sender"),
        ({"event": "transfer", "sender": "buyer"}, "contradiction:transfer_sender"),
        ({"event": "transfer", "sender": "bot"}, "contradiction:transfer_sender"),
        ({"text": 42}, "type:text"),
        ({"text": {"t": "x"}}, "type:text"),
        ({"text": "a" * 8193}, "text_too_large"),
        ({"text": "好" * 2731}, "text_too_large"),  # 8193 bytes in only 2731 chars
        ({"text": "😀" * 2049}, "text_too_large"),
    ],
)
def test_chat_rejects(fields: dict[str, Any], reason: str) -> None:
    assert reason_of(decode_chat, chat(**fields)) == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{", "invalid_json"),
        (b'{"shop_id": "s",}', "invalid_json"),
        (b"{'shop_id': 's'}", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'{"text": "\\ud800"}', "invalid_json"),  # lone surrogate
        (b'{"a": NaN}', "invalid_json"),
        (b"[" * 5000, "invalid_json"),
        (b"[]", "not_an_object"),
        (b'"hello"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        (b"{}", "missing:message_id"),
    ],
)
def test_chat_rejects_bytes(raw: bytes, reason: str) -> None:
    assert reason_of(decode_chat, raw) == reason


def test_none_value_is_rejected() -> None:
    with pytest.raises(Rejected, match="empty"):
        decode_chat(None)  # type: ignore[arg-type]  # a Kafka tombstone


def test_too_large_is_checked_before_parsing() -> None:
    raw = orjson.dumps(chat(text="x" * 100))
    assert decode_chat(raw, max_bytes=len(raw)).text == "x" * 100
    assert reason_of(lambda b: decode_chat(b, max_bytes=len(raw) - 1), raw) == "too_large"
    # Not even valid JSON: the size check wins, so a huge garbage payload costs no parse.
    assert reason_of(decode_chat, b"{" * 70_000) == "too_large"
    assert reason_of(decode_order, b" " * 65_537) == "too_large"
    assert reason_of(decode_rating, b" " * 65_537) == "too_large"


def test_duplicate_keys_take_the_last_value() -> None:
    raw = b'{"message_id":"m","shop_id":"a","shop_id":"b","buyer_id":"u","sender":"buyer","ts":%d}'
    assert decode_chat(raw % TS).shop_id == "b"


# --------------------------------------------------------------------------------------------
# Orders


def test_order_good_event() -> None:
    event = decode_order(orjson.dumps(order()))
    assert event == OrderEvent(
        "1693785818880992661", "tmall-flagship", "tb123", "paid", Decimal("19.90"), TS
    )
    assert str(event.amount) == "19.90"
    assert event.conversation_key == "tmall-flagship:tb123"


@pytest.mark.parametrize("status", ["created", "paid", "refunded", "cancelled"])
def test_order_statuses(status: str) -> None:
    assert decode_order(orjson.dumps(order(status=status))).status == status


@pytest.mark.parametrize(
    ("raw_amount", "expected"),
    [
        (b'"19.90"', "19.90"),
        (b'"0"', "0"),
        (b'"0.00"', "0.00"),
        (b'"-0"', "0"),
        (b"0", "0"),
        (b"-0.0", "0.0"),
        (b"19.90", "19.90"),  # the JSON token, not the float's repr "19.9"
        (b"0.1", "0.1"),
        (b"199", "199"),
        (b"1e2", "1E+2"),
        (b"2.5E1", "25"),
        (b'"1e2"', "1E+2"),
        (b"12345678901234.56", "12345678901234.56"),  # 16 digits: a float would drift
        (b'"12345678901234.56"', "12345678901234.56"),
        (b"0.30000000000000004", "0.30000000000000004"),
        (b"99999999999999.99", "99999999999999.99"),
    ],
)
def test_order_amount_is_exact(raw_amount: bytes, expected: str) -> None:
    raw = orjson.dumps(order(amount=0)).replace(b'"amount":0', b'"amount":' + raw_amount)
    amount = decode_order(raw).amount
    assert amount == Decimal(expected)
    assert str(amount) == str(Decimal(expected))


def test_order_amounts_add_up_to_the_cent() -> None:
    a = decode_order(orjson.dumps(order(amount="19.90"))).amount
    b = decode_order(orjson.dumps(order(amount="0.10"))).amount
    c = decode_order(orjson.dumps(order(amount=0.1))).amount
    assert a + b == Decimal("20.00")
    assert str(a + b) == "20.00"
    assert a + c == Decimal("20.00")
    assert sum([c] * 3, Decimal(0)) == Decimal("0.3")  # not 0.30000000000000004


def test_order_amount_token_ambiguity_falls_back_to_the_parsed_number() -> None:
    # An escaped key spelling "amount" and a nested "amount": the raw token is not trusted.
    raw = b'{"order_id":"o","shop_id":"s","buyer_id":"b","status":"paid","ts":%d,' % TS
    nested = raw + b'"meta":{"amount":5.5},"amount":19.9}'
    assert decode_order(nested).amount == Decimal("19.9")
    escaped = raw + b'"\\u0061mount":19.90}'
    assert decode_order(escaped).amount == Decimal("19.9")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"order_id": ...}, "missing:order_id"),
        ({"shop_id": ...}, "missing:shop_id"),
        ({"buyer_id": ...}, "missing:buyer_id"),
        ({"status": ...}, "missing:status"),
        ({"amount": ...}, "missing:amount"),
        ({"amount": None}, "missing:amount"),
        ({"ts": ...}, "missing:ts"),
        ({"order_id": 123}, "type:order_id"),
        ({"order_id": ""}, "length:order_id"),
        ({"buyer_id": "b" * 129}, "length:buyer_id"),
        ({"status": "shipped"}, "enum:status"),
        ({"status": "PAID"}, "enum:status"),
        ({"status": 1}, "type:status"),
        ({"amount": "-1.00"}, "range:amount"),
        ({"amount": -0.01}, "range:amount"),
        ({"amount": -5}, "range:amount"),
        ({"amount": "1e15"}, "range:amount"),
        ({"amount": 10**15}, "range:amount"),
        ({"amount": 1e300}, "range:amount"),
        ({"amount": "NaN"}, "format:amount"),
        ({"amount": "Infinity"}, "format:amount"),
        ({"amount": "-inf"}, "format:amount"),
        ({"amount": "1_000"}, "format:amount"),
        ({"amount": " 19.90"}, "format:amount"),
        ({"amount": "19.90元"}, "format:amount"),
        ({"amount": "¥19.90"}, "format:amount"),
        ({"amount": "19,90"}, "format:amount"),
        ({"amount": ""}, "format:amount"),
        ({"amount": ".5"}, "format:amount"),
        ({"amount": "١٩"}, "format:amount"),  # Arabic-Indic digits: Decimal would take them
        ({"amount": "1" * 65}, "format:amount"),
        ({"amount": True}, "type:amount"),
        ({"amount": [1]}, "type:amount"),
        ({"amount": {"value": "1"}}, "type:amount"),
        ({"ts": "2024-11-11 09:00:00"}, "format:ts"),
    ],
)
def test_order_rejects(fields: dict[str, Any], reason: str) -> None:
    assert reason_of(decode_order, order(**fields)) == reason


def test_order_huge_integer_token_is_out_of_range() -> None:
    raw = orjson.dumps(order(amount=0)).replace(b'"amount":0', b'"amount":1' + b"0" * 40)
    assert reason_of(decode_order, raw) == "range:amount"
    raw = orjson.dumps(order(amount=0)).replace(b'"amount":0', b'"amount":1e400')
    assert reason_of(decode_order, raw) == "invalid_json"  # orjson refuses an infinite number


# --------------------------------------------------------------------------------------------
# Ratings


def test_rating_good_event() -> None:
    event = decode_rating(orjson.dumps(rating(ts="2024-11-11T01:00:00.000Z")))
    assert event == RatingEvent("tmall-flagship", "tb123", "tm-a01", 5, TS)
    assert event.conversation_key == "tmall-flagship:tb123"


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_rating_scores(score: int) -> None:
    assert decode_rating(orjson.dumps(rating(score=score))).score == score


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"shop_id": ...}, "missing:shop_id"),
        ({"buyer_id": ...}, "missing:buyer_id"),
        ({"agent_id": ...}, "missing:agent_id"),
        ({"agent_id": None}, "missing:agent_id"),
        ({"score": ...}, "missing:score"),
        ({"ts": ...}, "missing:ts"),
        ({"agent_id": ""}, "length:agent_id"),
        ({"score": 0}, "range:score"),
        ({"score": 6}, "range:score"),
        ({"score": -1}, "range:score"),
        ({"score": 4.0}, "type:score"),
        ({"score": 4.5}, "type:score"),
        ({"score": "5"}, "type:score"),
        ({"score": True}, "type:score"),  # bool is not an int here
        ({"ts": 0}, "range:ts"),
    ],
)
def test_rating_rejects(fields: dict[str, Any], reason: str) -> None:
    assert reason_of(decode_rating, rating(**fields)) == reason


# --------------------------------------------------------------------------------------------
# Dead letters


def test_dead_letter_headers() -> None:
    assert dead_letter_headers("missing:shop_id", "kefu.chat", 3, 1042) == [
        ("kefu-reason", b"missing:shop_id"),
        ("kefu-source-topic", b"kefu.chat"),
        ("kefu-source-partition", b"3"),
        ("kefu-source-offset", b"1042"),
    ]
    assert dead_letter_headers("too_large", "kefu.orders", None, None) == [
        ("kefu-reason", b"too_large"),
        ("kefu-source-topic", b"kefu.orders"),
    ]
    assert dead_letter_headers("invalid_json", "kefu.chat", 0, 0)[2:] == [
        ("kefu-source-partition", b"0"),
        ("kefu-source-offset", b"0"),
    ]


# --------------------------------------------------------------------------------------------
# Fuzzing: whatever the bytes, only Rejected may come out

DECODERS = (decode_chat, decode_order, decode_rating)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                       children, max_size=5),
    max_leaves=20,
)  # fmt: skip

FIELD_NAMES = ("message_id", "shop_id", "buyer_id", "sender", "agent_id", "ts", "event", "text",
               "order_id", "status", "amount", "score")  # fmt: skip
plausible_values = (
    json_values
    | st.sampled_from(["buyer", "agent", "bot", "system", "transfer", "close", "message",
                       "created", "paid", "refunded", "cancelled", "19.90", "-1", "1e999"])
    | st.integers(min_value=MIN_TS_MS - 10, max_value=MAX_TS_MS + 10)
    | st.integers(min_value=-2, max_value=7)
    | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])).map(
        lambda d: d.isoformat()
    )
)  # fmt: skip
plausible_events = st.dictionaries(st.sampled_from(FIELD_NAMES), plausible_values, max_size=12)


def _only_rejected(raw: bytes) -> None:
    for decoder in DECODERS:
        try:
            decoder(raw)
        except Rejected as exc:
            assert isinstance(exc.reason, str)
            assert exc.reason


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    _only_rejected(raw)


@settings(max_examples=500)
@given(json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    _only_rejected(orjson.dumps(value))


@settings(max_examples=600)
@given(plausible_events)
def test_fuzz_plausible_events(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    _only_rejected(raw)
    try:
        event = decode_chat(raw)
    except Rejected:
        return
    assert MIN_TS_MS <= event.ts <= MAX_TS_MS
    assert event.sender != "agent" or event.agent_id is not None
    assert event.event != "transfer" or (event.sender == "system" and event.agent_id)


@settings(max_examples=300)
@given(plausible_events, st.binary(max_size=20), st.integers(min_value=0, max_value=400))
def test_fuzz_corrupted_events(obj: dict[str, Any], junk: bytes, at: int) -> None:
    raw = orjson.dumps(obj)
    at = min(at, len(raw))
    _only_rejected(raw[:at] + junk + raw[at:])
    _only_rejected(raw[:at])


@settings(max_examples=300)
@given(st.decimals(min_value=0, max_value=10**14, places=2, allow_nan=False))
def test_fuzz_amount_string_and_number_agree(amount: Decimal) -> None:
    as_string = decode_order(orjson.dumps(order(amount=str(amount)))).amount
    as_number = decode_order(
        orjson.dumps(order(amount=0)).replace(b'"amount":0', b'"amount":' + str(amount).encode())
    ).amount
    assert as_string == amount == as_number
