"""Every key built from ids, in one place, so two different ids can never share one.

Ids (shop, buyer, agent, message, order) may hold any printable Unicode, `:` `/` `"` and spaces
included. Joining them with a plain separator is ambiguous: `"s3" + "x:y"` and `"s3:x" + "y"`
both make `"s3:x:y"`. Every key here is an *escaped* join: inside a part the escape character
is doubled and the separator is preceded by the escape, so `split` gives the parts back
exactly, and different parts always make different keys. Ids without the separator or the
escape (nearly all of them) come out exactly as a plain join, so ordinary keys read as before.

- `conversation_key`: the state key of a conversation (table and changelog key), `shop:buyer`
  with `\\` escapes (`"s3:x\\:y"` vs `"s3\\:x:y"`).
- `routing_key`: the Kafka key producers use, the plain `"{shop}:{buyer}"`. It only chooses a
  partition: the two conversations above share a partition (harmless) but never state.
- `agent_key`: the key of one (shop, agent) aggregate and of its facts, joined with U+001F
  (escape U+001B); aggregate record keys append `RECORD_SEP` and a record name to it.
- `tile_id`: a wall-board tile's id, `shop/agent` with `\\` escapes (printable, for the DOM).

Control characters are rejected in ids at input, so the U+001F keys need no escaping in
practice; the escaping keeps them unambiguous even so.
"""

from __future__ import annotations

__all__ = [
    "RECORD_SEP",
    "agent_key",
    "conversation_key",
    "join",
    "routing_key",
    "routing_key_of",
    "split",
    "split_agent_key",
    "tile_id",
]

AGENT_SEP = "\x1f"
AGENT_ESC = "\x1b"
RECORD_SEP = "\x1e"  # between an agent key and the name of one of its aggregate records


def join(parts: tuple[str, ...] | list[str], sep: str, esc: str) -> str:
    """Parts joined so that `split(key, sep, esc)` gives exactly them back."""
    out = []
    for part in parts:
        if esc in part:
            part = part.replace(esc, esc + esc)
        if sep in part:
            part = part.replace(sep, esc + sep)
        out.append(part)
    return sep.join(out)


def split(key: str, sep: str, esc: str) -> list[str]:
    """The parts of a key made by `join` with the same separator and escape."""
    if esc not in key:
        return key.split(sep)
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(key)
    while i < n:
        ch = key[i]
        if ch == esc and i + 1 < n:
            cur.append(key[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def conversation_key(shop: str, buyer: str) -> str:
    """The state key of one buyer's conversation with one shop."""
    if ":" in shop or "\\" in shop or ":" in buyer or "\\" in buyer:
        return join((shop, buyer), ":", "\\")
    return f"{shop}:{buyer}"


def routing_key(shop: str, buyer: str) -> bytes:
    """The Kafka message key producers use; it decides the partition, not the state."""
    return f"{shop}:{buyer}".encode()


def routing_key_of(conv_key: str) -> bytes:
    """The routing key (hence the partition) of a conversation state key."""
    if "\\" not in conv_key:
        return conv_key.encode()  # no escapes: the state key is the routing key
    parts = split(conv_key, ":", "\\")
    if len(parts) != 2:
        return conv_key.encode()
    return routing_key(parts[0], parts[1])


def agent_key(shop: str, agent: str) -> str:
    """Key of the per-agent aggregate: facts and aggregate state share its partition."""
    if AGENT_SEP in shop or AGENT_ESC in shop or AGENT_SEP in agent or AGENT_ESC in agent:
        return join((shop, agent), AGENT_SEP, AGENT_ESC)
    return f"{shop}{AGENT_SEP}{agent}"


def split_agent_key(key: str) -> tuple[str, str]:
    parts = split(key, AGENT_SEP, AGENT_ESC)
    if len(parts) != 2:
        raise ValueError(f"not an agent key: {key!r}")
    return parts[0], parts[1]


def tile_id(shop: str, agent: str) -> str:
    """A wall-board tile's id: printable (a DOM attribute) and unambiguous."""
    return join((shop, agent), "/", "\\")
