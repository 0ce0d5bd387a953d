"""The `kefu.agents` topic end to end in one process: decoding, the roster key, routing through
stage 1 into a STATUS fact, and stage 2 turning facts into status and load."""

from __future__ import annotations

import orjson
import pytest

from streams.config import ConfigError, Settings, default_config, parse_config
from streams.events import Rejected, decode_agent_status
from streams.pipeline.runtime import KIND_HEADER, Runtime
from tests.pipeline.test_runtime import T0, RecordingSink, chat, rec


def status(agent: str = "a1", st: str = "online", ts: int = T0, **extra: object) -> bytes:
    return orjson.dumps({"shop_id": "s", "agent_id": agent, "status": st, "ts": ts, **extra})


def test_valid_status_events_decode() -> None:
    ev = decode_agent_status(status(max_concurrent=8))
    assert (ev.shop_id, ev.agent_id, ev.status, ev.ts, ev.max_concurrent) == (
        "s", "a1", "online", T0, 8)
    assert decode_agent_status(status(st="away")).max_concurrent is None
    assert ev.routing_key == b"s:a1"


@pytest.mark.parametrize(("raw", "reason"), [
    (status(st="lunch"), "enum:status"),
    (status(st=None), "missing:status"),
    (orjson.dumps({"agent_id": "a1", "status": "online", "ts": T0}), "missing:shop_id"),
    (orjson.dumps({"shop_id": "s", "status": "online", "ts": T0}), "missing:agent_id"),
    (status(max_concurrent=0), "range:max_concurrent"),
    (status(max_concurrent=201), "range:max_concurrent"),
    (status(max_concurrent=8.0), "type:max_concurrent"),
    (status(max_concurrent=True), "type:max_concurrent"),
    (status(max_concurrent="8"), "type:max_concurrent"),
    (status(ts="yesterday"), "format:ts"),
])
def test_bad_status_events_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as exc:
        decode_agent_status(raw)
    assert exc.value.reason.split(":")[0] == reason.split(":")[0]
    if reason != "format:ts":
        assert exc.value.reason == reason


def test_the_roster_takes_max_concurrent_1_to_200() -> None:
    config = parse_config({"agents": [{"id": "a7", "max_concurrent": 8}, {"id": "a8"}]})
    assert config.agents["a7"].max_concurrent == 8
    assert config.agents["a8"].max_concurrent is None
    for bad in (0, 201, 2.5, "8", True):
        with pytest.raises(ConfigError, match=r"agents\[0\]\.max_concurrent"):
            parse_config({"agents": [{"id": "a7", "max_concurrent": bad}]})


async def test_status_events_become_facts_and_bad_ones_dead_letters() -> None:
    rt = Runtime(Settings(), parse_config({"agents": [{"id": "a1", "max_concurrent": 4}]}), 4)
    sink = RecordingSink()
    topic = rt.names.agents
    batch = [
        rec(status(), key=b"s:a1", topic=topic),
        rec(status(st="nap"), key=b"s:a1", topic=topic, offset=1),
        rec(chat("m1", "buyer", T0 + 1000), offset=2),
    ]
    await rt.on_input_batch(batch, sink)
    assert rt.events_total[(topic, "accepted")] == 1
    assert rt.events_total[(topic, "rejected")] == 1
    (dead,) = [s for s in sink.sent if s[0] == rt.names.deadletter]
    assert dict(dead[4])["kefu-reason"] == b"enum:status"
    facts = [orjson.loads(v) for t, _k, v, _p, _h in sink.sent if t == rt.names.facts]
    kinds = sorted(row[1] for group in facts for rows in group.values() for row in rows)
    assert "S" in kinds and "s" in kinds  # the status, and b1's open session with a1
    # Stage 2: the facts as the worker reads them back.
    await rt.on_facts_batch([rec(v, key=None, topic=rt.names.facts, offset=i)
                             for i, (t, _k, v, _p, _h) in enumerate(sink.sent)
                             if t == rt.names.facts], RecordingSink())
    rt.refresh_snapshots(T0 + 2000)
    snap = rt.snapshots[("s", "a1")]
    assert (snap.status, snap.concurrent, snap.max_concurrent, snap.occupancy) == (
        "online", 1, 4, 0.25)


async def test_a_status_event_keyed_otherwise_is_rekeyed() -> None:
    rt, sink = Runtime(Settings(), default_config(), 4), RecordingSink()
    await rt.on_input_batch([rec(status(), key=b"wrong", topic=rt.names.agents)], sink)
    (sent,) = [s for s in sink.sent if s[0] == rt.names.rekey]
    assert sent[1] == b"s:a1" and dict(sent[4])[KIND_HEADER] == b"agents"
