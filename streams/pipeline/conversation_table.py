"""Stage 1's conversations inside the Faust table's store, decoded only when touched."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from streams.domain import conversation_codec
from streams.domain.conversation import Conversation
from streams.domain.stage1 import ConversationStage
from streams.pipeline import outbox


def stored(value: Any) -> Any:
    """A table value as decoded; records restored in bulk stay raw bytes (see JsonTable)."""
    return orjson.loads(value) if isinstance(value, bytes) else value


class ConversationTable(MutableMapping[str, Conversation]):
    """Conversations kept in the Faust table's store, decoded lazily after recovery.

    Reads and writes touch only the local store; the changelog is written by the runtime,
    eagerly serialized, so what reaches Kafka is exactly the state at the end of the batch.
    """

    def __init__(self, store: MutableMapping[str, Any], stage: ConversationStage) -> None:
        self.store = store
        self.stage = stage

    def __getitem__(self, key: str) -> Conversation:
        value = self.store[key]
        if isinstance(value, Conversation):
            return value
        if value is None:
            raise KeyError(key)
        value = stored(value)
        shop, buyer = conversation_codec.identity(value)
        conv = conversation_codec.decode(value, self.stage.ctx(shop, buyer))
        self.store[key] = conv
        return conv

    def __setitem__(self, key: str, value: Conversation) -> None:
        self.store[key] = value

    def __delitem__(self, key: str) -> None:
        del self.store[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.store if not outbox.is_marker(key))

    def __len__(self) -> int:
        return sum(1 for _ in self)
