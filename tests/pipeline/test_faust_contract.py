"""Every private member of Faust, mode and aiokafka that `streams/pipeline/faust_adapter/` relies
on, named one by one: one test per reliance.

These are private: any release may move them. The versions are pinned exactly in
`pyproject.toml`; an upgrade must pass this file first. Each failure names the member that moved
and what the adapter uses it for, so the upgrade knows what to re-check. `PRIVATE_MEMBERS` is
also what tests/test_architecture.py keeps out of every module outside the adapter.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
import mode
import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.pipeline.faust_adapter import BatchApp, BatchConsumer, add_table

PINNED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


@dataclass(frozen=True)
class Method:
    """A method the adapter overrides or calls, with the leading parameters it passes."""

    owner: Any
    name: str
    params: tuple[str, ...]
    why: str

    @property
    def id(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


METHODS: list[Method] = [
    # overridden
    Method(faust.App, "_new_transport", ("self",), "BatchApp installs the batch transport"),
    Method(faust_aiokafka.Consumer, "_new_consumer_thread", ("self",),
           "BatchConsumer makes the thread with the fetch-wait setting"),
    Method(faust_aiokafka.Consumer, "_commit_offsets",
           ("self", "offsets", "start_new_transaction"), "traced, failpoints around commits"),
    Method(faust_consumer.Consumer, "_drain_messages", ("self", "fetcher"),
           "replaced: the batch fetch loop"),
    Method(faust_consumer.Consumer, "getmany", ("self", "timeout"),
           "replaced: every fetched record accounted for"),
    Method(faust_consumer.Consumer, "_getmany", ("self", "active_partitions", "timeout"),
           "replaced: a frozen, never empty partition set per fetch"),
    Method(faust_consumer.Consumer, "perform_seek", ("self",),
           "wrapped: seek bookkeeping (Positions), never-committed partitions to their start"),
    Method(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer",
           ("self", "transport"), "sets the fetch wait on the consumer it returns"),
    Method(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records",
           ("self", "consumer", "active_partitions", "timeout", "max_records"),
           "a failpoint holds fetches in flight"),
    Method(faust.Table, "_serializer_from_type", ("self", "typ"),
           "JsonTable picks the changelog codecs"),
    # called
    Method(faust_aiokafka.Consumer, "_to_message", ("self", "tp", "record"),
           "getmany builds Faust messages"),
    Method(faust_aiokafka.Consumer, "earliest_offsets", ("self", "partitions"),
           "never-committed partitions seek to the start"),
    Method(faust_aiokafka.Consumer, "highwater", ("self", "tp"), "backlog per partition"),
    Method(faust_consumer.Consumer, "_wait_next_records", ("self", "timeout"),
           "getmany waits for flow, then fetches"),
    Method(faust_consumer.Consumer, "track_message", ("self", "message"),
           "rebalances wait for a round's messages"),
    Method(faust_consumer.Consumer, "ack", ("self", "message"),
           "a round's messages acked after its handler"),
    Method(faust_consumer.Consumer, "_add_gap", ("self", "tp", "offset_from", "offset_to"),
           "offset gaps of compacted/transactional topics"),
    Method(faust_consumer.Consumer, "commit", ("self",), "commits every `_commit_every` acks"),
    Method(faust_consumer.Consumer, "wait_first", ("self", "coros"),
           "changelog records take Faust's path when it can block"),
    Method(faust_consumer.Consumer, "assignment", ("self",), "partitions to seek"),
    Method(faust_consumer.Consumer, "pause_partitions", ("self", "tps"),
           "recovery pauses (tested against)"),
    Method(faust_consumer.Consumer, "resume_partitions", ("self", "tps"),
           "recovery resumes (tested against)"),
    Method(faust_aiokafka.AIOKafkaConsumerThread, "getmany",
           ("self", "active_partitions", "timeout"), "the fetch for a frozen partition set"),
    Method(faust_aiokafka.AIOKafkaConsumerThread, "seek_wait", ("self", "partitions"),
           "seeks run in the consumer thread"),
    Method(faust_aiokafka.Producer, "_ensure_producer", ("self",),
           "BatchSink fills aiokafka batches itself"),
    Method(Recovery, "flush_buffers", ("self",),
           "bulk restore applies Faust's buffered records first"),
    Method(Fetcher, "fetched_records", ("self", "partitions", "timeout", "max_records"),
           "what the consumer thread's getmany calls"),
    Method(aiokafka.AIOKafkaProducer, "create_batch", ("self",), "BatchSink's record batches"),
    Method(aiokafka.AIOKafkaProducer, "send_batch", ("self", "batch", "topic", "partition"),
           "BatchSink sends a batch to an explicit partition"),
    Method(BatchBuilder, "append", ("self", "timestamp", "key", "value", "headers"),
           "BatchSink appends records (None when the batch is full)"),
]


@dataclass(frozen=True)
class Attribute:
    """A member of a constructed (unstarted) object, and the shape the adapter expects."""

    path: str  # from the app: "consumer._read_offset", "tables.recovery.in_recovery"
    check: Callable[[Any], bool]
    shape: str
    why: str


def _is_set(v: Any) -> bool:
    return isinstance(v, set)


def _event(v: Any) -> bool:
    return callable(getattr(v, "is_set", None)) and callable(getattr(v, "wait", None))


ATTRIBUTES: list[Attribute] = [
    Attribute("consumer._active_partitions", _is_set, "a set",
              "the live active set, copied before each fetch"),
    Attribute("consumer._paused_partitions", _is_set, "a set", "pause bookkeeping (tests)"),
    Attribute("consumer._buffered_partitions", _is_set, "a set",
              "partitions Faust still hands over while 'buffered'"),
    Attribute("consumer._read_offset", lambda v: isinstance(v, Mapping), "a mapping TP -> offset",
              "last read offset per partition; set after seeks"),
    Attribute("consumer._committed_offset", lambda v: isinstance(v, Mapping), "a mapping",
              "committed offsets (tests)"),
    Attribute("consumer._n_acked", lambda v: isinstance(v, int), "an int",
              "acks since the last commit"),
    Attribute("consumer._commit_every", lambda v: v is None or isinstance(v, int), "int or None",
              "commit after this many acks"),
    Attribute("consumer._stopped", _event, "an event", "the drain loop stops when it is set"),
    Attribute("consumer._thread", lambda v: callable(getattr(v, "seek_wait", None)),
              "a consumer thread with seek_wait", "fetches and seeks run there"),
    Attribute("consumer.flow_active", lambda v: isinstance(v, bool), "a bool", "flow control"),
    Attribute("consumer.suspend_flow", _event, "an event", "flow control (wait_first)"),
    Attribute("consumer.can_resume_flow", _event, "an event", "flow control"),
    Attribute("consumer.consumer_stopped_errors", lambda v: isinstance(v, tuple),
              "a tuple of exception types", "a broker-stopped consumer ends the loop"),
    Attribute("consumer.callback", callable, "a callable",
              "Faust's message handler, for topics without a batch handler"),
    Attribute("tables.recovery.in_recovery", lambda v: isinstance(v, bool), "a bool",
              "bulk restore runs only during a recovery"),
    Attribute("tables.recovery.tp_to_table", lambda v: isinstance(v, Mapping), "a mapping",
              "which table a changelog partition restores"),
    Attribute("tables.recovery.active_tps", _is_set, "a set", "partitions under recovery"),
    Attribute("tables.recovery.active_offsets", lambda v: isinstance(v, Mapping), "a mapping",
              "recovery's count of offsets read, kept by the bulk restore"),
    Attribute("tables.changelog_queue",
              lambda v: callable(v.empty) and callable(v.qsize) and isinstance(v.maxsize, int),
              "a queue (empty, qsize, maxsize)", "bulk restore waits for it to empty"),
    Attribute("consumer_generation_id", lambda v: isinstance(v, int), "an int",
              "getmany drops rounds of an old generation"),
    Attribute("producer.buffer", lambda v: isinstance(v.size, int)
              and isinstance(v.max_messages, int), "size and max_messages ints",
              "the plain path checks the producer buffer"),
    Attribute("flow_control", lambda v: callable(v.is_active), "is_active()",
              "rounds run only while flow is active"),
    Attribute("topics.acks_enabled_for", callable, "a callable",
              "offset gaps are recorded only for acked topics"),
]

# Private names (leading underscore) the adapter relies on; no module outside it may use them.
PRIVATE_MEMBERS: frozenset[str] = frozenset(
    {m.name for m in METHODS if m.name.startswith("_")}
    | {a.path.rsplit(".", 1)[-1] for a in ATTRIBUTES if a.path.rsplit(".", 1)[-1].startswith("_")}
    | {"_fetch_max_wait_ms", "_key_partition"}
)


def test_pinned_versions_are_installed() -> None:
    from importlib.metadata import version

    installed = {name: version(name) for name in PINNED}
    assert installed == PINNED, (
        f"installed {installed}, the adapter was checked against {PINNED}: run this file against "
        "the new versions, fix what it names, then update PINNED and pyproject.toml together"
    )
    assert aiokafka.__version__ == PINNED["aiokafka"]
    assert mode.__version__  # importable


@pytest.mark.parametrize("method", METHODS, ids=[m.id for m in METHODS])
def test_private_method(method: Method) -> None:
    member = getattr(method.owner, method.name, None)
    where = f"{method.owner.__module__}.{method.id}"
    assert member is not None, f"{where} is gone ({method.why})"
    params = tuple(inspect.signature(member).parameters)
    assert params[: len(method.params)] == method.params, (
        f"{where}{params}: the adapter expects {method.params} ({method.why})"
    )


@pytest.fixture
async def app() -> AsyncIterator[BatchApp]:
    yield BatchApp("contract-test", broker="kafka://127.0.0.1:1")


@pytest.mark.parametrize("attribute", ATTRIBUTES, ids=[a.path for a in ATTRIBUTES])
async def test_private_attribute(app: BatchApp, attribute: Attribute) -> None:
    assert isinstance(app.consumer, BatchConsumer)
    value: Any = app
    for part in attribute.path.split("."):
        assert hasattr(value, part), f"app.{attribute.path} is gone ({attribute.why})"
        value = getattr(value, part)
    assert attribute.check(value), (
        f"app.{attribute.path} is {value!r}, not {attribute.shape} ({attribute.why})"
    )


def test_transport_consumer_class_attribute() -> None:
    """BatchTransport swaps the consumer class through this class attribute."""
    assert isinstance(faust_aiokafka.Transport.Consumer, type)
    assert issubclass(faust_aiokafka.Transport.Consumer, faust_consumer.Consumer)


async def test_aiokafka_consumer_fetch_max_wait_ms_is_read_at_start() -> None:
    """`_create_worker_consumer` sets `_fetch_max_wait_ms` on a consumer not started yet: the
    fetcher is built from it in `start()`, so it must still be read there."""
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=123)
    assert consumer._fetch_max_wait_ms == 123
    source = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source


async def test_memory_store_key_partition(app: BatchApp) -> None:
    """JsonTable.apply_changelog_messages writes the memory store's data and its key ->
    partition map, as Faust's own `apply_changelog_batch` does."""
    store = add_table(app, "contract", 1).data
    assert isinstance(store, MemoryStore)
    assert isinstance(store.data, dict)
    assert isinstance(store._key_partition, dict)
    assert "_key_partition" in inspect.getsource(MemoryStore.apply_changelog_batch)


def test_aiokafka_reads_an_empty_partition_set_as_every_partition() -> None:
    """Why `BatchConsumer._getmany` never passes an empty or live set: if this changes, the
    freeze is still right, but the reason in its docstring is not."""
    source = inspect.getsource(Fetcher.fetched_records)
    assert "if partitions and tp not in partitions" in source


def test_faust_seek_sets_read_offset_as_seek_in_thread_does() -> None:
    """`seek_in_thread` leaves `_read_offset[tp] = offset or None`, as Faust's `seek` does."""
    source = inspect.getsource(faust_consumer.Consumer.seek)
    assert "self._read_offset[ensure_TP(partition)] = offset if offset else None" in source


# The Faust code the adapter replaces: (owner, method) -> sha256 prefix of its source.
REPLACED = {
    (faust_consumer.Consumer, "_drain_messages"): "44a2500309e83c63",
    (faust_consumer.Consumer, "getmany"): "4b168d84882a70d6",
    (faust_aiokafka.Consumer, "_getmany"): "f9d47aa9010b5ff2",
}


@pytest.mark.parametrize(("owner", "name"), list(REPLACED),
                         ids=[f"{o.__name__}.{n}" for o, n in REPLACED])
def test_replaced_faust_code_is_the_one_we_reworked(owner: Any, name: str) -> None:
    """Ours is a rework of these; a new version of them may do something ours does not."""
    digest = hashlib.sha256(inspect.getsource(getattr(owner, name)).encode()).hexdigest()[:16]
    assert digest == REPLACED[(owner, name)], (
        f"{owner.__module__}.{owner.__name__}.{name} changed: re-read it side by side with "
        "streams/pipeline/faust_adapter/consumer.py, then update REPLACED"
    )
