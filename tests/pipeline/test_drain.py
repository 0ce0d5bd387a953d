"""`BatchConsumer._drain_messages`, the batch fetch loop, without a broker.

Faust's consumer is real (an unstarted `BatchApp`); what a broker would deliver is stood in
for by `getmany`, one fetch round per call. Checked: a round goes to its handler in one call,
in route order, and is acked after it; a round collected while flow is suspended is dropped
unacked and marked for a re-read; records of other topics take Faust's own path; records
below the read offset are skipped; a handler that raises crashes the app. The hand-over and
crash tests run the same loop against the real broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.types import TP, Message

from streams.pipeline.faust_adapter import BatchApp, BatchConsumer

CHAT, FACTS, OTHER = "drain-chat", "drain-facts", "drain-changelog"


def message(topic: str, offset: int) -> Message:
    return Message(topic, 0, offset, 0.0, 0, [], b"k", b"v", 0, tp=TP(topic, 0))


class Stopper:
    """The fetcher service: its `_stopped` event ends the loop like Faust's `Fetcher.stop()`."""

    def __init__(self, app: BatchApp) -> None:
        self._stopped = app.consumer._stopped.__class__()


class Harness:
    def __init__(self, rounds: list[list[Message]]) -> None:
        self.app = BatchApp("drain-test", broker="kafka://127.0.0.1:1")
        self.calls: list[tuple[str, list[int]]] = []
        self.delivered: list[Message] = []
        self.crashed: list[BaseException] = []
        self.rounds = rounds
        self.fetcher = Stopper(self.app)
        app = self.app

        async def on_chat(messages: Sequence[Message]) -> None:
            self.calls.append(("chat", [m.offset for m in messages]))

        async def on_facts(messages: Sequence[Message]) -> None:
            self.calls.append(("facts", [m.offset for m in messages]))

        app.route_batches([app.topic(CHAT)], on_chat)
        app.route_batches([app.topic(FACTS)], on_facts)
        consumer = self.consumer
        consumer.getmany = self.getmany  # type: ignore[method-assign]

        async def callback(m: Message) -> None:
            self.delivered.append(m)

        async def crash(exc: BaseException) -> None:
            self.crashed.append(exc)

        consumer.callback = callback
        app.crash = crash  # type: ignore[method-assign]
        app.flow_control.resume()

    @property
    def consumer(self) -> BatchConsumer:
        consumer = self.app.consumer
        assert isinstance(consumer, BatchConsumer)
        return consumer

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        if not self.rounds:
            self.fetcher._stopped.set()
            return
        for m in self.rounds.pop(0):
            yield m.tp, m

    async def run(self) -> None:
        await self.consumer._drain_messages(self.fetcher)


async def test_a_round_goes_to_its_handlers_in_one_call_each_and_is_acked() -> None:
    h = Harness([[message(FACTS, 0), message(CHAT, 0), message(CHAT, 1), message(FACTS, 1)]])
    acked: list[int] = []
    h.consumer.ack = lambda m: acked.append(m.offset) or True  # type: ignore[method-assign]
    await h.run()
    assert h.calls == [("chat", [0, 1]), ("facts", [0, 1])]  # route order, not arrival order
    assert sorted(acked) == [0, 0, 1, 1]
    assert h.consumer._read_offset[TP(CHAT, 0)] == 1
    assert h.consumer.positions.next[TP(CHAT, 0)] == 2  # handled: the next offset it needs
    assert not h.crashed


async def test_records_of_topics_without_a_handler_take_fausts_path() -> None:
    h = Harness([[message(OTHER, 0), message(CHAT, 0)]])
    h.consumer.ack = lambda m: True  # type: ignore[method-assign]
    await h.run()
    assert [m.topic for m in h.delivered] == [OTHER]
    assert h.calls == [("chat", [0])]


async def test_records_below_the_read_offset_are_skipped() -> None:
    h = Harness([[message(CHAT, 0), message(CHAT, 1)], [message(CHAT, 0), message(CHAT, 2)]])
    h.consumer.ack = lambda m: True  # type: ignore[method-assign]
    await h.run()
    assert h.calls == [("chat", [0, 1]), ("chat", [2])]


async def test_a_round_collected_while_flow_is_suspended_is_dropped_for_a_reread() -> None:
    h = Harness([[message(CHAT, 5), message(CHAT, 6)]])
    h.app.flow_control.suspend()
    await h.run()
    assert h.calls == []
    assert h.consumer.positions.resync == {TP(CHAT, 0): 5}  # read again from its first offset


async def test_a_handler_that_raises_crashes_the_app() -> None:
    h = Harness([[message(CHAT, 0)]])
    boom = RuntimeError("handler bug")

    async def failing(messages: Sequence[Message]) -> None:
        raise boom

    h.app.batch_routes[0] = ([CHAT], failing)
    await h.run()
    assert h.crashed == [boom]


async def test_commits_once_commit_every_acks_are_in(monkeypatch: Any) -> None:
    acks = 3
    h = Harness([[message(CHAT, i) for i in range(acks)], [message(CHAT, acks)]])
    commits: list[list[tuple[str, list[int]]]] = []

    async def commit(*_: Any, **__: Any) -> bool:
        commits.append(list(h.calls))  # what had been handled when the commit ran
        return True

    def ack(m: Message) -> bool:
        h.consumer._n_acked += 1
        return True

    h.consumer._commit_every = acks
    monkeypatch.setattr(h.consumer, "commit", commit)
    monkeypatch.setattr(h.consumer, "ack", ack)
    await h.run()
    assert commits == [[("chat", [0, 1, 2])]]  # after the first round, not the second
    assert h.consumer._n_acked == 1
