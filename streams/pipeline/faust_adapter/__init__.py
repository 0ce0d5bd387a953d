"""The one place that knows Faust's, mode's and aiokafka's insides.

Faust stays the framework — consumer groups, co-partitioned assignment, flow control during
rebalances, offset commits from acks, changelog recovery of tables, the web server — but three
of its per-message paths cost more than the KPI logic itself, so this package takes them over:

- **Delivery** (`consumer.BatchConsumer`): Faust's fetch loop (`_drain_messages`) is reworked
  to hand each fetch round of a topic to one batch handler call instead of a task, an event and
  a queue per message. With it come the crash-safety pieces that loop needs: a frozen copy of
  the active partitions per fetch (`_getmany`), a `getmany` that re-reads records Faust would
  drop, seeks of never-committed partitions to their start (`_seek_uncommitted`) and seeks in
  the consumer thread (`seek_in_thread`). A configurable fetch wait replaces Faust's hard-coded
  1.5 s (`BatchConsumerThread._create_worker_consumer`).
- **Recovery** (`restore.BulkRestore`, `restore.JsonTable`): changelog records go into the
  memory store a round at a time instead of one task per record.
- **Producing** (`sink.BatchSink`): record batches per partition instead of a future per record.

The rest of the code calls only this interface:

- `build_batch_app(settings, partitions)` → the worker's Faust app (`BatchApp`);
- `add_table(app, name, partitions)` → a `JsonTable` (its `.data` is the store the runtime
  reads and writes; `@table.on_recover` is the table-restore hook);
- `route_records(app, topics, handler)` → `handler(list[Record])` per fetch round;
- `BatchSink(app)` → the runtime's `Sink`;
- `backlog(app, topic, partitions, last_offsets)` → unread messages per partition.

**Upgrading faust-streaming, mode-streaming or aiokafka**: the three are pinned exactly in
pyproject.toml. Every private member relied on here is named, with what it is used for, in
tests/pipeline/test_faust_contract.py — run it first against the new versions. Then re-read
Faust's `Consumer._drain_messages` and `getmany` side by side with ours (ours must still do
what theirs does for topics without a batch handler), and re-run the hand-over and crash tests
(tests/integration/test_consumer_handover.py, test_crash_matrix.py): they are what caught the
lost-record bugs this code guards against.
"""

from __future__ import annotations

from streams.pipeline.faust_adapter.app import (
    BatchApp,
    add_table,
    backlog,
    broker_credentials,
    build_batch_app,
    route_records,
    to_records,
)
from streams.pipeline.faust_adapter.consumer import BatchConsumer, BatchConsumerThread
from streams.pipeline.faust_adapter.restore import JsonTable
from streams.pipeline.faust_adapter.sink import BatchSink

__all__ = [
    "BatchApp",
    "BatchConsumer",
    "BatchConsumerThread",
    "BatchSink",
    "JsonTable",
    "add_table",
    "backlog",
    "broker_credentials",
    "build_batch_app",
    "route_records",
    "to_records",
]
