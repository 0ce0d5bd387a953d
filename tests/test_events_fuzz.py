"""Every decoder, fuzzed: any bytes, any JSON, each field mutated — accepted or `Rejected`.

no input may crash the worker, so a decoder may only return an event or raise
`Rejected` with a reason; anything else escaping would be a bug some producer will find.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import Rejected, decode_chat, decode_order, decode_rating

Decoder = Callable[[bytes], object]
DECODERS: dict[str, Decoder] = {
    "chat": decode_chat, "orders": decode_order, "ratings": decode_rating,
}
VALID: dict[str, dict[str, Any]] = {
    "chat": {"message_id": "m1", "shop_id": "s", "buyer_id": "b", "sender": "agent",
             "agent_id": "a", "ts": 1_731_290_000_000, "event": "message", "text": "hi"},
    "orders": {"order_id": "o1", "shop_id": "s", "buyer_id": "b", "status": "paid",
               "amount": "19.90", "ts": "2024-11-11T10:00:00+08:00"},
    "ratings": {"shop_id": "s", "buyer_id": "b", "agent_id": "a", "score": 5,
                "ts": 1_731_290_000_000},
}
FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
odd_values = st.one_of(
    json_values,
    st.sampled_from([
        "", " ", "x" * 129, "a:b", "a\x1fb", "a\x00", "\x7f", "😀", "NaN", "Infinity", "1e999",
        "-0", "0x10", "2099-01-01T00:00:00Z", "9999-12-31T23:59:60+23:59", "1e-999", 2**64,
        -(2**63), 1e308, -1e308, 0.1, True, [], {}, "\ud800",
    ]),
)


def _check(decoder: Decoder, raw: bytes) -> None:
    try:
        decoder(raw)
    except Rejected as exc:
        assert exc.reason and isinstance(exc.reason, str)


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(kind: str, raw: bytes) -> None:
    _check(DECODERS[kind], raw)


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ
@given(doc=json_values)
def test_arbitrary_json(kind: str, doc: Any) -> None:
    try:
        raw = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return
    _check(DECODERS[kind], raw)


@pytest.mark.parametrize("kind", sorted(DECODERS))
@FUZZ
@given(data=st.data())
def test_each_field_mutated(kind: str, data: st.DataObject) -> None:
    doc = dict(VALID[kind])
    for field in data.draw(st.lists(st.sampled_from(sorted(doc)), min_size=1, max_size=3)):
        if data.draw(st.booleans()):
            doc[field] = data.draw(odd_values)
        else:
            doc.pop(field, None)
    try:
        raw = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        raw = repr(doc).encode("utf-8", "surrogatepass")
    _check(DECODERS[kind], raw)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_nan_and_huge_numbers_as_raw_json(kind: str) -> None:
    base = orjson.dumps(VALID[kind])
    for token in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 400, b"-0.0"):
        for field in VALID[kind]:
            raw = base.replace(b'"' + field.encode() + b'":', b'"' + field.encode() + b'":'
                               + token + b',"_":', 1)
            _check(DECODERS[kind], raw)
    _check(DECODERS[kind], b"[" * 100_000)
    _check(DECODERS[kind], b'{"a":' * 5_000)


@pytest.mark.parametrize("field", ["message_id", "shop_id", "buyer_id", "agent_id"])
@pytest.mark.parametrize("char", ["\x00", "\x1f", "\n", "\x7f"])
def test_ids_with_control_characters_are_rejected(field: str, char: str) -> None:
    doc = dict(VALID["chat"])
    doc[field] = f"a{char}b"
    with pytest.raises(Rejected) as exc:
        decode_chat(orjson.dumps(doc))
    assert exc.value.reason == f"control:{field}"


def test_printable_ids_with_separators_and_emoji_are_accepted() -> None:
    doc = dict(VALID["chat"])
    doc.update(shop_id='s3:x/"y"', buyer_id="买家 😀:1", agent_id="a/1", message_id="m:1")
    ev = decode_chat(orjson.dumps(doc))
    assert (ev.shop_id, ev.buyer_id) == ('s3:x/"y"', "买家 😀:1")
