"""What the batch hook (`streams/pipeline/fastpath.py`, `app.py`) takes from Faust's and
aiokafka's insides, named one by one.

These are private members: any release may move them. The versions are pinned in
`pyproject.toml`; an upgrade must pass this test first, and each failure says which member
moved and what the hook uses it for, so the upgrade knows what to re-check.
"""

from __future__ import annotations

import inspect
from typing import Any

import aiokafka
import faust
import mode
import pytest
from aiokafka.consumer.fetcher import Fetcher
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.pipeline.faust_adapter import BatchApp, BatchConsumer

PINNED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

# (owner, member, what the hook uses it for)
METHODS: list[tuple[Any, str, str]] = [
    (faust.App, "_new_transport", "BatchApp installs the batch transport"),
    (faust_aiokafka.Transport, "Consumer", "BatchTransport swaps the consumer class"),
    (faust_aiokafka.Consumer, "_new_consumer_thread", "the thread with the fetch-wait setting"),
    (faust_aiokafka.Consumer, "_commit_offsets", "traced, and a failpoint around commits"),
    (faust_aiokafka.Consumer, "_to_message", "getmany builds Faust messages"),
    (faust_aiokafka.Consumer, "earliest_offsets", "never-committed partitions seek to the start"),
    (faust_consumer.Consumer, "_drain_messages", "replaced: the batch fetch loop"),
    (faust_consumer.Consumer, "_wait_next_records", "getmany waits for flow, then fetches"),
    (faust_consumer.Consumer, "getmany", "replaced: every fetched record accounted for"),
    (faust_consumer.Consumer, "perform_seek", "wrapped: seek bookkeeping (Positions)"),
    (faust_consumer.Consumer, "seek", "re-reads after a dropped round"),
    (faust_consumer.Consumer, "track_message", "rebalances wait for a round's messages"),
    (faust_consumer.Consumer, "ack", "a round's messages acked after its handler"),
    (faust_consumer.Consumer, "_add_gap", "offset gaps of compacted/transactional topics"),
    (faust_consumer.Consumer, "pause_partitions", "recovery pauses (tested against)"),
    (faust_consumer.Consumer, "resume_partitions", "recovery resumes (tested against)"),
    (faust_consumer.Consumer, "commit", "commits every `_commit_every` acks"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", "fetch_max_wait_ms"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", "a failpoint holds fetches"),
    (faust_aiokafka.AIOKafkaConsumerThread, "getmany", "the fetch for a frozen partition set"),
    (faust_aiokafka.AIOKafkaConsumerThread, "seek_wait", "seeks run in the consumer thread"),
    (Recovery, "flush_buffers", "bulk restore applies Faust's buffered records first"),
    (faust.Table, "_serializer_from_type", "JsonTable picks the changelog codecs"),
    (Fetcher, "fetched_records", "what the consumer thread's getmany calls"),
]

# attributes set in __init__ (checked on a constructed, unstarted consumer / app)
CONSUMER_ATTRIBUTES = {
    "_active_partitions": "the live active set (copied before each fetch)",
    "_paused_partitions": "pause bookkeeping",
    "_buffered_partitions": "partitions Faust still hands over while 'buffered'",
    "_read_offset": "last read offset per partition; set by seeks",
    "_committed_offset": "committed offsets",
    "_n_acked": "acks since the last commit",
    "_commit_every": "commit after this many acks",
    "_stopped": "the consumer service's stop event",
    "flow_active": "flow control",
    "suspend_flow": "flow control (wait_first)",
    "can_resume_flow": "flow control",
    "_thread": "the consumer thread",
}
RECOVERY_ATTRIBUTES = {
    "in_recovery": "bulk restore runs only during a recovery",
    "tp_to_table": "which table a changelog partition restores",
    "active_tps": "partitions under recovery",
    "active_offsets": "recovery's count of offsets read",
}


def test_pinned_versions_are_installed() -> None:
    from importlib.metadata import version

    installed = {name: version(name) for name in PINNED}
    assert installed == PINNED, (
        f"installed {installed}, the hook was checked against {PINNED}: run this file against "
        "the new versions, fix what it names, then update PINNED and pyproject.toml together"
    )
    assert aiokafka.__version__ == PINNED["aiokafka"]
    assert mode.__version__  # importable


@pytest.mark.parametrize(("owner", "member", "why"), METHODS,
                         ids=[f"{o.__name__}.{m}" for o, m, _ in METHODS])
def test_private_member_exists(owner: Any, member: str, why: str) -> None:
    assert hasattr(owner, member), f"{owner.__module__}.{owner.__name__}.{member} is gone ({why})"


def test_signatures_the_hook_calls_with() -> None:
    params = inspect.signature(faust_aiokafka.AIOKafkaConsumerThread._fetch_records).parameters
    assert list(params)[:5] == ["self", "consumer", "active_partitions", "timeout",
                                "max_records"], params
    params = inspect.signature(faust_aiokafka.AIOKafkaConsumerThread.getmany).parameters
    assert list(params)[:3] == ["self", "active_partitions", "timeout"], params
    params = inspect.signature(Fetcher.fetched_records).parameters
    assert list(params)[:4] == ["self", "partitions", "timeout", "max_records"], params
    params = inspect.signature(faust_aiokafka.Consumer._commit_offsets).parameters
    assert "start_new_transaction" in params, params


def test_aiokafka_reads_an_empty_partition_set_as_every_partition() -> None:
    """Why `BatchConsumer._getmany` never passes an empty or live set: if this changes, the
    freeze is still right, but the reason in its docstring is not."""
    source = inspect.getsource(Fetcher.fetched_records)
    assert "if partitions and tp not in partitions" in source


async def test_consumer_and_recovery_attributes() -> None:
    app = BatchApp("contract-test", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    missing = {name: why for name, why in CONSUMER_ATTRIBUTES.items()
               if not hasattr(consumer, name)}
    assert not missing, f"Faust's consumer lost: {missing}"
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    missing = {name: why for name, why in RECOVERY_ATTRIBUTES.items()
               if not hasattr(recovery, name)}
    assert not missing, f"Faust's recovery lost: {missing}"
    assert hasattr(app.tables, "changelog_queue"), "bulk restore waits for this queue to empty"
    assert hasattr(app, "consumer_generation_id"), "getmany drops rounds of an old generation"
    assert hasattr(app.producer, "buffer"), "the plain path checks the producer buffer"
    assert hasattr(faust_aiokafka.Producer, "_ensure_producer"), "BatchSink fills batches"


def test_memory_store_internals() -> None:
    source = inspect.getsource(MemoryStore)
    assert "_key_partition" in source, "JsonTable.apply_changelog_messages keeps it in step"
