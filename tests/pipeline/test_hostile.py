"""Hostile records in a batch: each is dead-lettered with its reason, none stops the batch.

a ~1 MB value crashed the worker when its raw bytes were re-sent to the dead letter
(over the producer's request limit); a valid event dated 2099 moved the watermark and hid lag;
any exception other than a validation error escaped the handler and crashed the worker.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from streams.config import Settings, default_config
from streams.pipeline import runtime as runtime_mod
from streams.pipeline.runtime import Runtime
from tests.pipeline.test_runtime import RecordingSink, chat, rec

NOW = int(time.time() * 1000)


def runtime(clock: str = "wall") -> Runtime:
    return Runtime(Settings(clock=clock), default_config(), partitions=4)  # type: ignore[arg-type]


def dead(rt: Runtime, sink: RecordingSink) -> list[tuple[bytes | None, dict[str, bytes]]]:
    return [(v, dict(h)) for t, _k, v, _p, h in sink.sent if t == rt.names.deadletter]


async def test_a_value_too_large_to_resend_is_dead_lettered_as_its_head() -> None:
    rt, sink = runtime(), RecordingSink()
    huge = b'{"message_id": "' + b"x" * 1_000_001 + b'"}'
    await rt.on_input_batch([rec(huge, offset=5), rec(chat("m1", "buyer", NOW), offset=6)], sink)
    ((value, h),) = dead(rt, sink)
    assert value == huge[:65_536]
    assert h["kefu-reason"] == b"too_large"
    assert h["kefu-original-length"] == str(len(huge)).encode()
    assert h["kefu-source-partition"] == b"0" and h["kefu-source-offset"] == b"5"
    assert rt.events_total[("kefu.chat", "accepted")] == 1  # the honest event still counts


@pytest.mark.parametrize("clock", ["wall", "event"])
async def test_an_event_from_the_future_is_rejected_and_moves_nothing(clock: str) -> None:
    rt, sink = runtime(clock), RecordingSink()
    future = chat("m9", "buyer", 4_070_908_800_000)  # 2099-01-01
    await rt.on_input_batch([rec(chat("m1", "buyer", NOW)), rec(future, offset=1)], sink)
    ((value, h),) = dead(rt, sink)
    assert value == future and h["kefu-reason"] == b"future:ts"
    assert rt.clock.watermark_ms == NOW
    assert rt.rejected_reasons[("kefu.chat", "future")] == 1
    # a few seconds ahead (clock skew between producers) is still fine
    await rt.on_input_batch([rec(chat("m2", "agent", NOW + 60_000), offset=2)], sink)
    assert rt.events_total[("kefu.chat", "accepted")] == 2


async def test_an_unexpected_error_on_one_record_dead_letters_that_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, sink = runtime(), RecordingSink()
    from streams.domain import conversation

    original = conversation.Conversation.process

    def boom(self: Any, ev: Any, ctx: Any, facts: Any) -> str:
        if ev.message_id == "bad":
            raise ZeroDivisionError("a bug the input found")
        return original(self, ev, ctx, facts)  # type: ignore[no-any-return]

    monkeypatch.setattr(conversation.Conversation, "process", boom)
    batch = [rec(chat("m1", "buyer", NOW)), rec(chat("bad", "buyer", NOW + 1), offset=1,
                                                 key=b"s:b2"),
             rec(chat("m2", "agent", NOW + 5_000), offset=2)]
    batch[1].value = chat("bad", "buyer", NOW + 1, buyer="b2")
    await rt.on_input_batch(batch, sink)
    ((value, h),) = dead(rt, sink)
    assert value == batch[1].value
    assert h["kefu-reason"] == b"error:ZeroDivisionError"
    assert h["kefu-source-offset"] == b"1"
    assert rt.events_total[("kefu.chat", "accepted")] == 2
    assert rt.events_total[("kefu.chat", "rejected")] == 1


async def test_a_decoder_bug_dead_letters_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    rt, sink = runtime(), RecordingSink()

    def broken(raw: bytes, max_bytes: int) -> Any:
        raise RecursionError("deep")

    monkeypatch.setitem(runtime_mod.DECODERS, "ratings", broken)
    await rt.on_input_batch([rec(b"{}", topic="kefu.ratings", offset=3)], sink)
    ((_value, h),) = dead(rt, sink)
    assert h["kefu-reason"] == b"error:RecursionError"
    await rt.on_forward_batch([rec(b"{}", topic="kefu.ratings", offset=4)], sink)  # no raise


def test_dead_letter_headers_always_carry_partition_and_offset() -> None:
    from streams.events import dead_letter_headers

    h = dict(dead_letter_headers("x", "t", 3, 9))
    assert h["kefu-source-partition"] == b"3" and h["kefu-source-offset"] == b"9"
    assert orjson.dumps(sorted(h)) is not None


async def test_one_flooded_conversation_cannot_outgrow_a_changelog_record() -> None:
    """A producer that puts every message on one buyer (ids of 128 chars) made one conversation
    state grow past the producer's ~1 MB request limit: a crash at every restart."""
    rt, sink = runtime(), RecordingSink()
    n = 5_000
    batch = [rec(orjson.dumps({"message_id": f"{i:0128d}", "shop_id": "s", "buyer_id": "b1",
                               "sender": "buyer", "agent_id": "a1", "ts": NOW - 60_000 + i}),
                 offset=i) for i in range(n)]
    for i in range(0, n, 1000):
        await rt.on_input_batch(batch[i:i + 1000], sink)
    states = [v for t, _k, v, _p, _h in sink.sent if t == rt.names.conv_changelog]
    assert max(len(v or b"") for v in states) < 900_000
    letters = dead(rt, sink)
    assert letters and {h["kefu-reason"] for _, h in letters} == {b"limit:conversation"}
    assert rt.events_total[("kefu.chat", "accepted")] + len(letters) == n
