"""Changelog recovery in bulk (`BatchConsumer._restore`, `JsonTable.apply_changelog_messages`).

No broker: Faust's recovery is stood in for by the few attributes the bulk path reads and writes,
so what is checked is the bookkeeping — offsets, order, the end signal, rebalance safety. The
end-to-end crash, restart and hand-over tests run the same path against the real broker.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson

from streams.config import Settings, default_config
from streams.pipeline.app import build_app
from streams.pipeline.fastpath import BatchConsumer
from streams.pipeline.positions import Positions

TP0, TP1 = ("conv-changelog", 0), ("conv-changelog", 1)


def msg(tp: tuple[str, int], offset: int, key: str, value: Any) -> SimpleNamespace:
    return SimpleNamespace(topic=tp[0], partition=tp[1], offset=offset, key=key.encode(),
                           value=None if value is None else orjson.dumps(value))


class FakeTable:
    def __init__(self) -> None:
        self.applied: list[tuple[Any, int]] = []

    def apply_changelog_messages(self, messages: list[Any]) -> None:
        self.applied.extend(((m.topic, m.partition), m.offset) for m in messages)


class FakeRecovery:
    def __init__(self, highwaters: dict[Any, int]) -> None:
        self.in_recovery = True
        self.active_highwaters = highwaters
        self.active_offsets: Counter[Any] = Counter({tp: -1 for tp in highwaters})
        self.flushed = 0
        self.ended = False
        self.signal_recovery_end = asyncio.Event()

    def flush_buffers(self) -> None:
        self.flushed += 1

    def need_recovery(self) -> bool:
        return any(h - self.active_offsets[tp] > 0 for tp, h in self.active_highwaters.items())

    def _set_recovery_ended(self) -> None:
        self.in_recovery = False
        self.ended = True


def consumer(recovery: FakeRecovery, flow: bool = True) -> SimpleNamespace:
    flow_control = SimpleNamespace(is_active=lambda: flow)
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), flow_control=flow_control)
    return SimpleNamespace(app=app, positions=Positions(), restored_in_bulk=0)


def restore(c: SimpleNamespace, restored: dict[Any, list[Any]], tables: dict[Any, Any]) -> None:
    BatchConsumer._restore(c, restored, tables)  # type: ignore[arg-type]


def test_records_are_applied_in_order_and_the_recovery_ends_at_the_highwater():
    rec = FakeRecovery({TP0: 3, TP1: 1})
    c, table = consumer(rec), FakeTable()
    tables = {TP0: table, TP1: table}
    restore(c, {TP0: [msg(TP0, o, f"k{o}", {"v": o}) for o in range(2)]}, tables)
    assert table.applied == [(TP0, 0), (TP0, 1)]
    assert rec.active_offsets[TP0] == 1 and not rec.ended
    restore(c, {TP0: [msg(TP0, 2, "k", 1), msg(TP0, 3, "k", 2)],
                TP1: [msg(TP1, 0, "j", 1), msg(TP1, 1, "j", None)]}, tables)
    assert rec.ended and rec.signal_recovery_end.is_set()
    assert rec.active_offsets == {TP0: 3, TP1: 1}
    assert rec.flushed >= 2  # Faust's own buffered (older) events go first, and at the end


def test_records_already_applied_are_skipped():
    rec = FakeRecovery({TP0: 10})
    rec.active_offsets[TP0] = 4
    c, table = consumer(rec), FakeTable()
    restore(c, {TP0: [msg(TP0, o, "k", o) for o in range(3, 7)]}, {TP0: table})
    assert table.applied == [(TP0, 5), (TP0, 6)]
    assert rec.active_offsets[TP0] == 6


def test_nothing_is_applied_once_a_rebalance_suspended_the_flow():
    rec = FakeRecovery({TP0: 5})
    c, table = consumer(rec, flow=False), FakeTable()
    restore(c, {TP0: [msg(TP0, 0, "k", 1)]}, {TP0: table})
    assert table.applied == [] and rec.active_offsets[TP0] == -1
    rec.in_recovery = False
    restore(consumer(rec), {TP0: [msg(TP0, 0, "k", 1)]}, {TP0: table})
    assert table.applied == []


def test_json_table_keeps_values_raw_and_honours_tombstones():
    settings = Settings.from_env({"KEFU_BROKERS": "127.0.0.1:1", "KEFU_APP_ID": "t-restore"})
    app, _rt = build_app(settings, default_config(), partitions=2)
    table = app.tables["conversations"]
    raw = orjson.dumps({"x": 1})
    table.apply_changelog_messages([msg(TP1, 0, "a", {"x": 1}), msg(TP1, 1, "b", {"y": 2}),
                                    msg(TP1, 2, "b", None)])
    store = table.data
    assert store.data == {"a": raw}
    assert store._key_partition == {"a": 1}
