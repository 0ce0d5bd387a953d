"""Stage 1's outbox: a conversation's state and the facts it made become durable in one write.

Why: stage 1 has two outputs, the conversation state (changelog) and the facts (to stage 2).
Written one after the other, a crash between them splits a decision. Facts first, state second
left facts the replay did not know it had made: chat and orders are separate topics, so after a
restart they can interleave differently and the replay may decide otherwise (an order first
*silent*, then *credited*) — the first decision's fact was never retracted (an orphan).

So each state record carries the facts its batch made (field `ob`, its *outbox*), the record is
written first, and the facts are sent after it. A crash before the record lands loses nothing
(no fact was sent; the replay decides afresh); a crash after it leaves a state that remembers
its facts, and recovery re-sends them. Facts are idempotent upserts and deletes with stable
ids, and an outbox holds the conversation's latest word on each of them, so re-sending is safe.

Recovery must not scan every conversation for an outbox, so each changelog partition has a
*marker* record: the keys of the conversations whose facts may still be in flight. A batch
writes its markers before its state records (one producer keeps a partition's order, so any
state record that landed has its marker before it); once the facts are acknowledged the
marker is emptied at the next tick. A stale marker only re-sends facts already delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import orjson

from streams.domain.facts import Fact

MARKER_PREFIX = "\x00outbox:"  # + changelog partition; never a conversation key (no NUL there)
FIELD = "ob"  # the outbox inside a conversation's state record: [[agent, *fact wire row], …]

StateOut = tuple[bytes, bytes, int, None]  # (key, value, partition, headers) for the changelog


def marker_key(partition: int) -> str:
    return f"{MARKER_PREFIX}{partition}"


def is_marker(key: str) -> bool:
    return key.startswith(MARKER_PREFIX)


def state_records(
    touched: Iterable[str],
    made_by: Mapping[str, list[Fact]],
    state_of: Callable[[str], dict[str, Any]],
    partition_of_key: Callable[[str], int],
) -> tuple[list[StateOut], set[int]]:
    """The changelog records of one batch: each partition's marker first, then its states.

    Returns the records and the partitions whose marker now lists in-flight facts.
    """
    states: list[StateOut] = []
    listed: dict[int, list[str]] = {}
    for key in touched:
        part = partition_of_key(key)
        record = state_of(key)
        made = made_by.get(key)
        if made:
            record[FIELD] = [[f.agent, *f.to_wire()] for f in made]
            listed.setdefault(part, []).append(key)
        states.append((key.encode(), orjson.dumps(record), part, None))
    markers: list[StateOut] = [
        (marker_key(part).encode(), orjson.dumps(keys), part, None)
        for part, keys in listed.items()
    ]
    return markers + states, set(listed)


def cleared_markers(partitions: Iterable[int]) -> list[StateOut]:
    """Empty markers: every fact those partitions listed has been acknowledged."""
    return [(marker_key(part).encode(), b"[]", part, None) for part in sorted(partitions)]


def take_pending(
    store: MutableMapping[str, Any], partitions: Iterable[int],
    decode: Callable[[Any], Any],
) -> list[Fact]:
    """Remove the markers of `partitions` from a recovered store; the facts they point at.

    `decode` turns a stored value (raw bytes after a bulk restore) into its JSON value. A live
    (already decoded) conversation is skipped: this process made and delivered its facts.
    """
    facts: list[Fact] = []
    for part in partitions:
        raw = store.pop(marker_key(part), None)
        if raw is None:
            continue
        for key in decode(raw) or ():
            value = store.get(key)
            if value is None or not isinstance(value, bytes | str | dict):
                continue
            record = decode(value)
            rows = record.get(FIELD) if isinstance(record, dict) else None
            if not rows:
                continue
            shop = str(record["k"][0])
            facts.extend(Fact.from_wire(shop, str(row[0]), row[1:]) for row in rows)
    return facts
