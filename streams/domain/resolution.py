"""Resolution marks (问题解决率) of one conversation: which session ended resolved, by whose word.

A session's mark is the `resolved` of its `close` (the agent's or the system's word), credited
to the agent who held the session at the close. A rating with `resolved` given after the session
started and before the buyer's next session overrides it (the buyer's word counts over the
agent's), credited to the rated agent at the rating's time; of several such ratings the latest
counts. A rating with `resolved` before any session the conversation knows marks a session of
its own. Sessions without a mark are left out.

The state machine (`conversation.Core`) reports session starts and close marks as internal
facts, so a reorder that moves a session start or a close retracts and redoes them like any
other fact; this class keeps them with the ratings' votes and emits the marks as the difference
between what should be counted now and what was sent (a put, or a delete of the old record in
the bucket of its old time).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, cast

from streams.domain.facts import CLOSE_MARK, DEL, MARK, PUT, SESSION_STARTED, Fact, stable_hash

Mark = tuple[str, int, int]  # (agent, ts, resolved 0/1)
# Sessions one conversation remembers for its marks. A real buyer has a few a day and the state
# lives for days, so this binds only a producer that opens thousands (it keeps the changelog
# record small); past it the oldest sessions' marks are final.
MAX_SESSIONS = 256
# Shared read-only empties until a conversation's first close mark, vote or sent mark (most
# open conversations have none; three empty dicts of their own cost 192 bytes). Writers make
# the dict their own first; a write through one fails loudly (a mapping proxy is read-only).
NO_CLOSES = cast(dict[int, Mark], MappingProxyType({}))
NO_VOTES = cast(dict[tuple[str, int], int], MappingProxyType({}))
NO_SENT = cast(dict[str, Mark], MappingProxyType({}))


class Marks:
    """Session starts, close marks, rating votes, and the marks already sent."""

    __slots__ = ("closes", "sent", "starts", "votes")

    def __init__(self) -> None:
        self.starts: list[int] = []  # session starts, sorted
        self.closes = NO_CLOSES  # session start -> close mark
        self.votes = NO_VOTES  # (rated agent, ts) -> resolved 0/1
        self.sent = NO_SENT  # session key -> the mark counted now

    def __bool__(self) -> bool:
        return bool(self.closes or self.votes or self.sent)

    def apply_internal(self, f: Fact) -> bool:
        """Take a SESSION_STARTED or CLOSE_MARK fact of the state machine; True on a change."""
        if f.kind == SESSION_STARTED:
            i = bisect.bisect_left(self.starts, f.ts)
            present = i < len(self.starts) and self.starts[i] == f.ts
            if f.op == PUT and not present:
                self.starts.insert(i, f.ts)
                return True
            if f.op == DEL and present:
                del self.starts[i]
                return True
            return False
        assert f.kind == CLOSE_MARK
        mark = (f.agent, f.ts, f.a)
        if f.op == PUT:
            changed = self.closes.get(f.b) != mark
            if not self.closes:
                self.closes = {}  # its own, not the shared empty
            self.closes[f.b] = mark
            return changed
        if self.closes.get(f.b) == mark:
            del self.closes[f.b]
            return True
        return False

    def vote(self, agent: str, ts: int, resolved: bool) -> None:
        if not self.votes:
            self.votes = {}  # its own, not the shared empty
        self.votes[(agent, ts)] = int(resolved)

    def emit(self, shop: str, buyer: str, buyer_hash: int, is_ad: Callable[[int], bool],
             out: list[Fact]) -> None:
        """Append the mark changes since the last call (see the module docstring)."""
        self._prune()
        want: dict[str, Mark] = {str(start): mark for start, mark in self.closes.items()}
        best: dict[str, tuple[int, str, int]] = {}
        starts = self.starts
        for (agent, ts), resolved in self.votes.items():
            if is_ad(ts):
                continue  # ad buyers are left out of every KPI
            i = bisect.bisect_right(starts, ts) - 1
            key = str(starts[i]) if i >= 0 else f"r{ts}\x1f{agent}"
            candidate = (ts, agent, resolved)
            if key not in best or candidate > best[key]:
                best[key] = candidate
        for key, (ts, agent, resolved) in best.items():
            want[key] = (agent, ts, resolved)
        sent = self.sent
        for key, (agent, ts, resolved) in list(sent.items()):
            if want.get(key) != (agent, ts, resolved):
                out.append(Fact(DEL, MARK, shop, agent, _fid(shop, buyer, key), ts, resolved,
                                buyer_hash))
                del sent[key]
        if want and not sent:
            sent = self.sent = {}  # its own, not the shared empty
        for key, (agent, ts, resolved) in want.items():
            if key not in sent:
                out.append(Fact(PUT, MARK, shop, agent, _fid(shop, buyer, key), ts, resolved,
                                buyer_hash))
                sent[key] = (agent, ts, resolved)

    def _prune(self) -> None:
        starts = self.starts
        if len(starts) <= MAX_SESSIONS:
            return
        horizon = starts[-MAX_SESSIONS]
        del starts[:-MAX_SESSIONS]
        # Everything is placed by its session's start (a vote: its own ts, which is at or after
        # the start it belongs to), so what is kept still finds its session.
        for start in [s for s in self.closes if s < horizon]:
            del self.closes[start]
        for vote in [v for v in self.votes if v[1] < horizon]:
            del self.votes[vote]
        for key in [k for k in self.sent if _placed_at(k) < horizon]:
            del self.sent[key]

    # -- persistence -----------------------------------------------------------------------------

    def to_list(self) -> list[Any]:
        return [
            self.starts,
            [[start, *mark] for start, mark in self.closes.items()],
            [[agent, ts, resolved] for (agent, ts), resolved in self.votes.items()],
            [[key, *mark] for key, mark in self.sent.items()],
        ]

    @staticmethod
    def from_list(v: list[Any]) -> Marks:
        marks = Marks()
        starts, closes, votes, sent = v
        marks.starts = sorted(int(s) for s in starts)
        if closes:  # empty ones stay the shared empties
            marks.closes = {int(s): (str(a), int(ts), int(r)) for s, a, ts, r in closes}
        if votes:
            marks.votes = {(str(a), int(ts)): int(r) for a, ts, r in votes}
        if sent:
            marks.sent = {str(k): (str(a), int(ts), int(r)) for k, a, ts, r in sent}
        return marks


def _placed_at(key: str) -> int:
    """The time a session key stands for: its start, or a lone vote's ts (`r<ts>\x1f<agent>`)."""
    return int(key[1:].partition("\x1f")[0]) if key.startswith("r") else int(key)


def _fid(shop: str, buyer: str, key: str) -> int:
    return stable_hash("mark", shop, buyer, key)
