"""Changelog recovery in bulk (`BatchConsumer._restore`, `JsonTable.apply_changelog_messages`).

No broker: Faust's recovery is stood in for by the few attributes the bulk path reads and writes,
so what is checked is the bookkeeping — offsets, order, the end signal, rebalance safety. The
end-to-end crash, restart and hand-over tests run the same path against the real broker.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson

from streams.config import Settings, default_config
from streams.pipeline.faust_adapter import BatchConsumer
from streams.pipeline.positions import Positions
from streams.worker import build_app

TP0, TP1 = ("conv-changelog", 0), ("conv-changelog", 1)


def msg(tp: tuple[str, int], offset: int, key: str, value: Any) -> SimpleNamespace:
    return SimpleNamespace(topic=tp[0], partition=tp[1], tp=tp, offset=offset, key=key.encode(),
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
        self.active_tps = set(highwaters)
        self.active_offsets: Counter[Any] = Counter({tp: -1 for tp in highwaters})
        self.flushed = 0

    def flush_buffers(self) -> None:
        self.flushed += 1


def consumer(recovery: FakeRecovery, flow: bool = True) -> SimpleNamespace:
    flow_control = SimpleNamespace(is_active=lambda: flow)
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), flow_control=flow_control)
    return SimpleNamespace(app=app, positions=Positions(), restored_in_bulk=0)


def restore(c: SimpleNamespace, restored: dict[Any, list[Any]],
            tables: dict[Any, Any]) -> list[Any]:
    return BatchConsumer._restore(c, restored, tables)  # type: ignore[arg-type]


def test_all_but_each_partitions_last_record_go_in_bulk_the_last_to_faust():
    rec = FakeRecovery({TP0: 3, TP1: 1})
    c, table = consumer(rec), FakeTable()
    tables = {TP0: table, TP1: table}
    tail = restore(c, {TP0: [msg(TP0, o, f"k{o}", {"v": o}) for o in range(2)]}, tables)
    assert table.applied == [(TP0, 0)]
    assert [(m.topic, m.partition, m.offset) for m in tail] == [(*TP0, 1)]
    assert rec.active_offsets[TP0] == 0  # the tail record is Faust's to count
    assert rec.flushed == 1  # Faust's own buffered (older) events are applied first
    # Faust applied the tail; the next round carries on after it.
    rec.active_offsets[TP0] = 1
    tail = restore(c, {TP0: [msg(TP0, 2, "k", 1), msg(TP0, 3, "k", 2)],
                       TP1: [msg(TP1, 0, "j", 1), msg(TP1, 1, "j", None)]}, tables)
    assert table.applied == [(TP0, 0), (TP0, 2), (TP1, 0)]
    assert [(m.partition, m.offset) for m in tail] == [(0, 3), (1, 1)]
    assert rec.active_offsets == {TP0: 2, TP1: 0}
    assert rec.in_recovery  # ending it (and signalling) is left to Faust's recovery loop


def test_records_already_applied_are_skipped():
    rec = FakeRecovery({TP0: 10})
    rec.active_offsets[TP0] = 4
    c, table = consumer(rec), FakeTable()
    tail = restore(c, {TP0: [msg(TP0, o, "k", o) for o in range(3, 8)]}, {TP0: table})
    assert table.applied == [(TP0, 5), (TP0, 6)]
    assert [m.offset for m in tail] == [7]
    assert rec.active_offsets[TP0] == 6
    assert restore(c, {TP0: [msg(TP0, 6, "k", 6)]}, {TP0: table}) == []


def test_nothing_is_applied_once_a_rebalance_suspended_the_flow_or_moved_the_partition():
    rec = FakeRecovery({TP0: 5})
    c, table = consumer(rec, flow=False), FakeTable()
    assert restore(c, {TP0: [msg(TP0, 0, "k", 1), msg(TP0, 1, "k", 2)]}, {TP0: table}) == []
    assert table.applied == [] and rec.active_offsets[TP0] == -1
    rec.active_tps = set()
    assert restore(consumer(rec), {TP0: [msg(TP0, 0, "k", 1), msg(TP0, 1, "k", 2)]},
                   {TP0: table}) == []
    rec.in_recovery = False
    rec.active_tps = {TP0}
    assert restore(consumer(rec), {TP0: [msg(TP0, 0, "k", 1), msg(TP0, 1, "k", 2)]},
                   {TP0: table}) == []
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
