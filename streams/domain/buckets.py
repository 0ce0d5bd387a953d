"""Per-agent minute buckets and their cached summaries.

A bucket keeps every record of one agent in one UTC minute in a single dict keyed by the fact id
(salted by kind), which is what makes redelivered facts idempotent. Windows never walk records:
each bucket lazily builds a `Summary` (plain counts, sets and value lists), hours of finished
minutes are merged once into hour summaries, and a window merges a few dozen summaries with
C-level set and list operations. Any change to a bucket drops its summary and its hour's.

Summaries that are kept (a minute's, an hour's, a window prefix's) are sealed: their empty sets
and lists are replaced by one shared empty each. Why: a kept summary held nine containers, most
of them empty on a chat-only day, and the cyclic collector scans every container it tracks, so
those empties were ~100,000 of the worker's ~650,000 tracked objects at 1,000 agents and their
scans were the latency tail (docs/optimisations.md, "Continued (session 12)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from streams.domain.facts import (
    AD_BUYER,
    AGENT_MSG,
    ASSIST,
    BUYER_MSG,
    FIRST,
    MARK,
    ORDER,
    PAID,
    RATING,
    REFUND,
    ROUND,
    UNANSWERED,
)

# Records of different kinds may share a fact id (an order's ORDER and PAID); a round keeps its
# id whether or not it is a first response, so ROUND and FIRST share a salt.
_SALTS = {
    ROUND: 0, FIRST: 0, UNANSWERED: 1, AGENT_MSG: 2, BUYER_MSG: 3, AD_BUYER: 4, ORDER: 5,
    PAID: 6, REFUND: 7, ASSIST: 8, RATING: 9, MARK: 10,
}


# The shared empties of sealed summaries. Read-only. `summarize_into` is only given fresh
# summaries; `merge` is also given a sealed target (a window prefix's summary grows by the
# minute that just ended, `window_kpis.Prefix.extend`), which is right only because `merge`
# replaces an empty target by a copy instead of growing it: keep it so. Typed as the mutable
# containers they stand in for, so that readers see one type; mutating one fails loudly (a
# frozenset has no `add`, a tuple no `append`).
NO_BUYERS = cast(set[int], frozenset())
NO_VALUES = cast(list[int], ())
# A summary's containers by kind: the lists of values and the sets of ids.
VALUE_FIELDS = ("rts", "frts")
BUYER_FIELDS = ("replied", "unanswered", "inquired", "ordered", "paid", "refunded", "ads")


def record_key(kind: str, fid: int) -> int:
    """The bucket key of a record: its 63-bit fact id with the kind in the top bits."""
    return fid ^ (_SALTS[kind] << 58)


@dataclass(slots=True)
class Summary:
    """Everything a window needs from a set of buckets; merging two is a union."""

    rts: list[int] = field(default_factory=list)  # response ms of answered rounds
    frts: list[int] = field(default_factory=list)  # of first rounds
    replied: set[int] = field(default_factory=set)  # buyers
    unanswered: set[int] = field(default_factory=set)  # buyers
    inquired: set[int] = field(default_factory=set)  # buyers with a human reply
    agent_messages: int = 0
    buyer_messages: int = 0
    ordered: set[int] = field(default_factory=set)  # buyers
    paid: set[int] = field(default_factory=set)  # buyers
    paid_orders: int = 0
    sales_units: int = 0
    refunded: set[int] = field(default_factory=set)  # orders
    refund_units: int = 0
    assists: int = 0
    ratings: int = 0
    rating_sum: int = 0
    ratings_good: int = 0
    marked: int = 0  # sessions with a resolution mark
    resolved: int = 0
    ads: set[int] = field(default_factory=set)

    def merge(self, o: Summary) -> None:
        """Add `o` into this summary. Empty parts of `o` are skipped (most are, on a chat-only
        day), and an empty part of this one is replaced by a copy, never grown: it may be the
        shared empty of a sealed summary. Written out field by field on purpose: merges build
        every window prefix, and a helper call per field cost 28 % more (37 against 29 µs for
        60 minute summaries); `seal`, once per kept summary, loops over the field names."""
        if o.rts:
            if self.rts:
                self.rts += o.rts
            else:
                self.rts = list(o.rts)
        if o.frts:
            if self.frts:
                self.frts += o.frts
            else:
                self.frts = list(o.frts)
        if o.replied:
            if self.replied:
                self.replied |= o.replied
            else:
                self.replied = set(o.replied)
        if o.unanswered:
            if self.unanswered:
                self.unanswered |= o.unanswered
            else:
                self.unanswered = set(o.unanswered)
        if o.inquired:
            if self.inquired:
                self.inquired |= o.inquired
            else:
                self.inquired = set(o.inquired)
        self.agent_messages += o.agent_messages
        self.buyer_messages += o.buyer_messages
        if o.ordered:
            if self.ordered:
                self.ordered |= o.ordered
            else:
                self.ordered = set(o.ordered)
        if o.paid:
            if self.paid:
                self.paid |= o.paid
            else:
                self.paid = set(o.paid)
        self.paid_orders += o.paid_orders
        self.sales_units += o.sales_units
        if o.refunded:
            if self.refunded:
                self.refunded |= o.refunded
            else:
                self.refunded = set(o.refunded)
        self.refund_units += o.refund_units
        self.assists += o.assists
        self.ratings += o.ratings
        self.rating_sum += o.rating_sum
        self.ratings_good += o.ratings_good
        self.marked += o.marked
        self.resolved += o.resolved
        if o.ads:
            if self.ads:
                self.ads |= o.ads
            else:
                self.ads = set(o.ads)

    def seal(self) -> Summary:
        """Replace the empty containers by the shared empties (see the module docstring); for
        summaries that are kept and only read from now on. Returns itself."""
        for name in VALUE_FIELDS:
            if not getattr(self, name):
                setattr(self, name, NO_VALUES)
        for name in BUYER_FIELDS:
            if not getattr(self, name):
                setattr(self, name, NO_BUYERS)
        return self


class Bucket:
    """The records of one agent in one UTC minute: record key -> (kind, a, b)."""

    __slots__ = ("recs", "summary")

    def __init__(self) -> None:
        self.recs: dict[int, tuple[str, int, int]] = {}
        self.summary: Summary | None = None

    def empty(self) -> bool:
        return not self.recs

    def summarize(self) -> Summary:
        s = self.summary
        if s is None:
            s = self.summary = self.summarize_into(Summary()).seal()
        return s

    def summarize_into(self, s: Summary) -> Summary:
        """Add this minute's records to `s` (hour summaries skip the per-minute objects)."""
        for kind, a, b in self.recs.values():
            if kind in (ROUND, FIRST):
                s.rts.append(a)
                s.replied.add(b)
                if kind == FIRST:
                    s.frts.append(a)
            elif kind == AGENT_MSG:
                s.agent_messages += 1
                s.inquired.add(b)
            elif kind == BUYER_MSG:
                s.buyer_messages += 1
            elif kind == UNANSWERED:
                s.unanswered.add(b)
            elif kind == ORDER:
                s.ordered.add(b)
            elif kind == PAID:
                s.paid.add(b)
                s.paid_orders += 1
                s.sales_units += a
            elif kind == REFUND:
                s.refunded.add(b)
                s.refund_units += a
            elif kind == ASSIST:
                s.assists += 1
            elif kind == RATING:
                s.ratings += 1
                s.rating_sum += a
                s.ratings_good += a >= 4
            elif kind == MARK:
                s.marked += 1
                s.resolved += a
            elif kind == AD_BUYER:
                s.ads.add(b)
        return s

    def to_json(self) -> dict[int, tuple[str, int, int]]:
        """The records themselves: serialize at once with `orjson.OPT_NON_STR_KEYS` (no copy;
        the busiest bucket is rewritten every batch, so this is on the hot path)."""
        return self.recs

    @staticmethod
    def from_json(rows: Any) -> Bucket:
        bucket = Bucket()
        if isinstance(rows, dict):  # {"key": [kind, a, b]} (0.3)
            bucket.recs = {int(k): (str(v[0]), int(v[1]), int(v[2])) for k, v in rows.items()}
        else:  # [[key, kind, a, b], ...] (0.2)
            bucket.recs = {int(k): (str(kind), int(a), int(b)) for k, kind, a, b in rows}
        return bucket
