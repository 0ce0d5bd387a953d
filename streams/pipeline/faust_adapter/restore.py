"""Changelog recovery in bulk: whole fetch rounds of changelog records into a table at once.

Why: Faust's recovery takes each changelog record through the conductor, a queue and its
`_slurp_changelogs` loop — an event, a queue hand-off and a `wait_for` task per record, ~200 µs,
most of a restart's time for a day of state. `BulkRestore` (mixed into `BatchConsumer`) hands a
round's records of tables that can take them (`JsonTable.apply_changelog_messages`) straight to
the table, and keeps Faust's recovery bookkeeping (`active_offsets`) as Faust keeps it, so
Faust's own loop still decides when the recovery is over. Everything it reads of Faust's
recovery (`in_recovery`, `tp_to_table`, `active_tps`, `active_offsets`, `flush_buffers`,
`changelog_queue`) and of the memory store (`_key_partition`) is private: the contract test
(tests/pipeline/test_faust_contract.py) names each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
from faust.types import Message

from streams import failpoints

QUEUE_DRAIN_TURNS = 200  # event-loop turns a bulk restore waits for Faust's queue to empty


class BulkRestore:
    """The bulk-restore half of `BatchConsumer` (a mixin over Faust's consumer)."""

    # Members of Faust's consumer this half uses (the class it is mixed into provides them).
    app: Any
    suspend_flow: Any
    callback: Any
    wait_first: Any
    restored_in_bulk = 0  # changelog records of the recovery under way (read by on_recover)

    async def _restoring_tables(self) -> dict[Any, Any] | None:
        """Active changelog partitions of tables that restore in bulk, while Faust recovers them.

        Faust's recovery takes each changelog record through the conductor, a queue and its
        `_slurp_changelogs` loop (an event, a queue hand-off and a `wait_for` task per record:
        ~200 µs, most of a restart's time for a day of state). Tables with
        `apply_changelog_messages` take a whole fetch round of records in one call instead,
        with the recovery's count of offsets read kept as Faust keeps it (`_restore`). Only
        when nothing of Faust's own path is pending (its queue empty, after a few turns of the
        loop for the records the last round handed it): records of one partition must be
        applied in offset order.
        """
        recovery = getattr(self.app.tables, "recovery", None)
        if recovery is None or not recovery.in_recovery:
            return None
        queue = self.app.tables.changelog_queue
        for _ in range(QUEUE_DRAIN_TURNS):  # the last round's tail records, handed to Faust
            if queue.empty():
                break
            await asyncio.sleep(0)
        if not queue.empty() or not recovery.in_recovery:
            return None
        out = {
            tp: table
            for tp, table in recovery.tp_to_table.items()
            if tp in recovery.active_tps and hasattr(table, "apply_changelog_messages")
        }
        return out or None

    def _restore(self, restored: dict[Any, list[Message]], tables: dict[Any, Any]) -> list[Message]:
        """Apply a round of changelog records to their tables, as `_slurp_changelogs` would.

        The last record of each partition is returned, for Faust's own path: its recovery loop
        then applies it and decides, as always, whether the recovery is over (and signals it).
        """
        app = self.app
        recovery = app.tables.recovery
        if not recovery.in_recovery or not app.flow_control.is_active():
            # A rebalance: the recovery starts again and seeks its changelog partitions back
            # to what it has applied (as when Faust abandons a callback on suspended flow).
            return []
        recovery.flush_buffers()  # events Faust's own path buffered are older: apply them first
        offsets = recovery.active_offsets
        active = recovery.active_tps
        tail: list[Message] = []
        for tp, messages in restored.items():
            if tp not in active:
                continue  # no longer recovered here (a rebalance since the round began)
            seen = offsets.get(tp)
            fresh = [m for m in messages if seen is None or m.offset > seen]
            if not fresh:
                continue
            *bulk, last = fresh
            if bulk:
                tables[tp].apply_changelog_messages(bulk)
                offsets[tp] = bulk[-1].offset
                self.restored_in_bulk += len(bulk)
                failpoints.hit("recovery.bulk_applied")
            tail.append(last)
        return tail

    async def _deliver(self, message: Message) -> None:
        """Faust's path for a message without a batch handler (see `_callback_unblocked`)."""
        if self._callback_unblocked():  # the callback cannot wait: skip wait_first's two tasks
            await self.callback(message)
        else:
            await self.wait_first(self.callback(message), self.suspend_flow.wait())

    def _callback_unblocked(self) -> bool:
        """Whether Faust's message callback would run to the end without waiting.

        Messages of topics without a batch handler (the table changelogs, read during
        recovery) take Faust's path: `wait_first(callback(message), suspend_flow.wait())`, so
        that a rebalance can abandon a callback blocked on suspended flow, a full queue or a
        full producer buffer. That costs two tasks per message (~50-100 µs here, most of a
        recovery's time). When none of those can block, the plain call does the same work.
        """
        app = self.app
        queue = app.tables.changelog_queue
        buffer = app.producer.buffer
        return (
            not self.suspend_flow.is_set()
            and app.flow_control.is_active()
            and (queue.maxsize <= 0 or queue.qsize() < queue.maxsize - 1)
            and buffer.size <= buffer.max_messages
        )


class JsonTable(faust.Table[str, Any]):
    """A table with str keys and orjson values in its changelog.

    Faust picks table codecs from key_type/value_type (a schema is ignored), so choose here.
    """

    def _serializer_from_type(self, typ: Any) -> str:
        return "kefu-str" if typ is str else "kefu-json"

    def apply_changelog_messages(self, messages: Sequence[Message]) -> None:
        """Recovery in bulk (see `BulkRestore`): raw records straight into the memory store.

        Values stay undecoded bytes: most are superseded by a later record of the same key,
        and the runtime decodes what is left when it first reads a key.
        """
        store = self.data
        data = store.data
        key_partition = store._key_partition  # type: ignore[attr-defined]
        for m in messages:
            key = m.key.decode() if isinstance(m.key, bytes) else m.key
            if m.value is None:
                data.pop(key, None)
                key_partition.pop(key, None)
            else:
                data[key] = m.value
                key_partition[key] = m.partition
