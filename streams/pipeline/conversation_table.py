"""Stage 1's conversations inside the Faust table's store: live while in use, compact when quiet.

A store value is one of three forms:

- a `Conversation`, live: decoded, touched by a batch in the last `quiet_ms`;
- a `Quiet` conversation: its changelog record's bytes and the two times retention needs;
- raw changelog bytes (or their JSON value) restored in bulk after a start or a rebalance.

Why the compact form: a conversation outlives its last message by two attribution windows
(48 h by default: late orders and duplicates still find it), and as objects it held ~2.5 KB, a
little over half of the heap a day of events leaves behind (~920 B per event in-process,
docs/optimisations.md, session 13). As its record's bytes it holds ~600 B, and one object
the cyclic collector scans instead of ~35. Decoding is exactly what recovery does, so a
conversation woken by a late order behaves as it would after a restart; few are (0.14 % of
the events of a simulated busy day touch a conversation quiet for five minutes), and each
costs ~50-100 µs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, NamedTuple

import orjson

from streams.domain import conversation_codec
from streams.domain.conversation import Conversation, expires_at
from streams.domain.rules import ShopRules
from streams.domain.stage1 import ConversationStage
from streams.pipeline import outbox


class Quiet(NamedTuple):
    """A conversation nothing touched for a while: its record, and when it may expire.

    (A tuple subclass stays tracked by the collector: one object per quiet conversation.)"""

    raw: bytes  # its changelog record (without an outbox: its facts were delivered)
    shop: str
    seen_ms: int  # see `Conversation.activity`
    orders_last_ms: int | None


def stored(value: Any) -> Any:
    """A table value as decoded; records restored in bulk stay raw bytes (see JsonTable)."""
    return orjson.loads(value) if isinstance(value, bytes) else value


def right_sized(data: bytes) -> bytes:
    """A copy of `data` that holds only its length.

    Why: orjson 3.12+ returns its output in a buffer rounded up to a power of two, at least
    ~4 KB, and never shrinks it (measured with orjson 3.13: ~8 KB of heap for a 206-byte
    result). Bytes that are sent and dropped do not care; bytes kept for hours do.
    """
    return bytes(memoryview(data))


def _quiet(record: dict[str, Any], shop: str, seen_ms: int, orders_last_ms: int | None) -> Quiet:
    """A `Quiet` conversation of its changelog record (a JSON-able dict without an outbox)."""
    return Quiet(right_sized(orjson.dumps(record)), shop, seen_ms, orders_last_ms)


class ConversationTable(MutableMapping[str, Conversation]):
    """Conversations kept in the Faust table's store, decoded when touched.

    Reads and writes touch only the local store; the changelog is written by the runtime,
    eagerly serialized, so what reaches Kafka is exactly the state at the end of the batch.
    The runtime says when a batch wrote conversations (`mark_written`, on its clock once the
    batch's events moved it); `compact` keeps those not written since a line in compact form.
    """

    def __init__(self, store: MutableMapping[str, Any], stage: ConversationStage) -> None:
        self.store = store
        self.stage = stage
        # Live conversations by when a batch last wrote them, oldest first: a write moves the
        # key to the end, so `compact` only ever looks at the front.
        self.written: dict[str, int] = {}

    def __getitem__(self, key: str) -> Conversation:
        value = self.store[key]
        if isinstance(value, Conversation):
            return value
        if value is None:
            raise KeyError(key)
        conv = self._decode(value.raw if isinstance(value, Quiet) else value)
        self.store[key] = conv
        # Live again: keep it known to `compact` even if no batch writes it (any reader of the
        # mapping decodes). At the newest time known, so `written` stays in order; a batch
        # that writes it marks it at its own time.
        written = self.written
        newest = next(reversed(written.values()), 0)
        written.pop(key, None)
        written[key] = newest
        return conv

    def __setitem__(self, key: str, value: Conversation) -> None:
        self.store[key] = value

    def __delitem__(self, key: str) -> None:
        del self.store[key]
        self.written.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.store if not outbox.is_marker(key))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def mark_written(self, keys: Iterable[str], now_ms: int) -> None:
        """These live conversations were written at `now_ms`: the newest, for `compact`."""
        written = self.written
        for key in keys:
            written.pop(key, None)
            written[key] = now_ms

    def _decode(self, value: Any) -> Conversation:
        value = stored(value)
        shop, buyer = conversation_codec.identity(value)
        return conversation_codec.decode(value, self.stage.ctx(shop, buyer))

    def compact(self, quiet_before_ms: int, deadline: float) -> int:
        """Keep live conversations last written at or before `quiet_before_ms` as `Quiet` ones,
        oldest first, until `deadline` (a `time.perf_counter` value). Returns how many."""
        written, store = self.written, self.store
        done = looked = 0
        while written:
            key = next(iter(written))
            if written[key] > quiet_before_ms:
                break
            del written[key]
            conv = store.get(key)  # gone (expired, or a partition revoked): only forgotten here
            if isinstance(conv, Conversation):
                store[key] = _quiet(conversation_codec.encode(conv), conv.shop,
                                    *conv.activity())
                done += 1
            looked += 1
            if not looked % 16 and time.perf_counter() > deadline:
                break
        return done

    def expiry_candidates(self, now_ms: int, quiet_before_ms: int,
                          rules_for: Callable[[str], ShopRules]
                          ) -> list[tuple[str, Conversation]]:
        """The conversations `ConversationStage.expire` must look at: every live one, and the
        quiet ones whose `expires_at` has passed (decoded). Of a restored record only its times
        are read (`conversation_codec.activity`): one not due whose last activity is at or
        before `quiet_before_ms` stays bytes as a `Quiet` one; the others are decoded."""
        out: list[tuple[str, Conversation]] = []
        store = self.store
        for key, value in list(store.items()):
            if isinstance(value, Conversation):
                out.append((key, value))
            elif isinstance(value, Quiet):
                if now_ms >= expires_at(value.seen_ms, value.orders_last_ms,
                                        rules_for(value.shop)):
                    out.append((key, self[key]))  # decoded, and known to `compact` again
            elif value is not None and not outbox.is_marker(key):
                record = stored(value)  # restored: its times read without decoding it
                seen, orders_last = conversation_codec.activity(record)
                shop = conversation_codec.identity(record)[0]
                last = seen if orders_last is None else max(seen, orders_last)
                if last <= quiet_before_ms and now_ms < expires_at(seen, orders_last,
                                                                   rules_for(shop)):
                    record.pop(outbox.FIELD, None)  # re-sent at recovery; ~40 % of a record
                    store[key] = _quiet(record, shop, seen, orders_last)
                else:
                    conv = self._decode(record)
                    self[key] = conv
                    self.mark_written([key], now_ms)
                    out.append((key, conv))
        return out
