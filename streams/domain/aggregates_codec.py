"""The aggregates' changelog records: one agent's state split into small records, each
`encode`d to a JSON-able value and `decode`d back into an `AgentState`.

Why apart from `aggregates`: the KPI maths changes for business reasons, the record format
must not — every record already in a changelog is read back by it. A record's key is
`agent_key + SEP + part`; the part names the record (one letter, to keep keys short):

  <minute>  a minute bucket: {record key: [kind, a, b]} (0.2 wrote [[key, kind, a, b]...])
  d<day>    a closed local day's summed KPIs: {SUMMABLE field: n, "within": {level: n}}
  p         'waiting now': [[conversation, start, since, last]...]
  t         totals: [rounds, within, histogram, sum_ms, [[fid, ts, ms]...] uncounted]
  e         supervisor execution points: [[period start, points]...]
  S, c      the status timeline and the open sessions (see `status.AgentLoad`)

`encode` returns None for a record that is empty (the changelog deletes it).
"""

from __future__ import annotations

from typing import Any

from streams.domain.agent_state import AgentState, Totals
from streams.domain.buckets import Bucket
from streams.domain.facts import AGENT_MSG
from streams.domain.model import SUMMABLE, WindowKpis
from streams.domain.rules import MINUTE_MS
from streams.domain.windows import HISTOGRAM_BUCKETS


def encode(st: AgentState, part: str) -> Any:
    """The value of record `part` of this agent's state; None when it has nothing."""
    if part == "p":
        if not st.pending:
            return None
        buyers = st.buyers  # a fifth value where known (older readers take four)
        return [[k, *v, buyers[k]] if k in buyers else [k, *v] for k, v in st.pending.items()]
    if part == "t":
        return totals_to_json(st.totals)
    if part == "e":
        return [[k, v] for k, v in st.execution.items()] if st.execution else None
    if part == "S":
        return st.load.status_record()
    if part == "c":
        return st.load.sessions_record()
    if part.startswith("d"):
        day = st.days.get(int(part[1:]))
        return None if day is None else kpis_to_json(day)
    bucket = st.buckets.get(int(part))
    return None if bucket is None or bucket.empty() else bucket.to_json()


def decode(st: AgentState, part: str, value: Any) -> None:
    """Put record `part` (not None) back into the agent's state, dropping stale caches."""
    if part == "p":
        st.pending = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in value}
        st.buyers = {int(r[0]): str(r[4]) for r in value if len(r) > 4}
    elif part == "t":
        st.totals = totals_from_json(value)
    elif part == "e":
        st.execution = {int(k): float(v) for k, v in value}
    elif part.startswith("d"):
        st.days[int(part[1:])] = kpis_from_json(value)
    elif part == "S":
        st.load.load_status(value)
    elif part == "c":
        st.load.load_sessions(value)
    else:
        minute = int(part)
        st.buckets[minute] = bucket = Bucket.from_json(value)
        base = minute * MINUTE_MS
        st.load.load_replies(minute, {k: base + a for k, (kind, a, _) in bucket.recs.items()
                                      if kind == AGENT_MSG})
        st.hours.pop(minute // 60, None)
        st.prefix.clear()


def delete(st: AgentState, part: str) -> None:
    """A tombstone: buckets, day summaries and the status records are deleted."""
    if part.startswith("d"):
        st.days.pop(int(part[1:]), None)
    elif part.isdigit():
        minute = int(part)
        st.buckets.pop(minute, None)
        st.load.load_replies(minute, None)
        st.hours.pop(minute // 60, None)
        st.prefix.clear()
    elif part == "S":
        st.load.load_status(None)
    elif part == "c":
        st.load.load_sessions(None)


def totals_to_json(t: Totals) -> list[Any]:
    pending = [[k, ts, ms] for k, (ts, ms) in t.uncounted.items()]
    return [t.rounds, t.within, t.hist, t.sum_ms, pending]


def totals_from_json(v: list[Any]) -> Totals:
    hist = list(v[2]) + [0] * (len(HISTOGRAM_BUCKETS) - len(v[2]))
    pending = {int(r[0]): (int(r[1]), int(r[2])) for r in (v[4] if len(v) > 4 else ())}
    return Totals(int(v[0]), list(v[1]), hist, int(v[3]), pending)


def kpis_to_json(w: WindowKpis) -> dict[str, Any]:
    d: dict[str, Any] = {name: getattr(w, name) for name in SUMMABLE if getattr(w, name)}
    d["within"] = w.within
    return d


def kpis_from_json(d: dict[str, Any]) -> WindowKpis:
    w = WindowKpis(within={k: int(v) for k, v in d.get("within", {}).items()})
    for name in SUMMABLE:
        setattr(w, name, int(d.get(name, 0)))
    return w
