"""The simulator: deterministic, realistic in the ways the KPIs care about, and replayable."""

from __future__ import annotations

import io
import itertools
import math
import re
import statistics
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from streams.config import parse_config
from streams.domain.model import ChatEvent, OrderEvent, RatingEvent
from streams.events import Rejected, decode_chat, decode_order, decode_rating
from streams.tooling.simulate import (
    DEFAULT_START_MS,
    SimMessage,
    Simulator,
    read_jsonl,
    write_jsonl,
)

AD = re.compile(r"加微信|(?i:https?://)")
BAD_REASONS = {"invalid_json", "missing:shop_id", "enum:sender", "text_too_large"}
HOUR = 3600.0


@dataclass
class Day:
    """An hour of traffic, decoded once for all realism checks."""

    sim: Simulator
    messages: list[SimMessage]
    chat: list[tuple[SimMessage, ChatEvent]] = field(default_factory=list)
    orders: list[tuple[SimMessage, OrderEvent]] = field(default_factory=list)
    ratings: list[tuple[SimMessage, RatingEvent]] = field(default_factory=list)
    rejected: list[tuple[SimMessage, str]] = field(default_factory=list)

    @property
    def chat_records(self) -> int:
        return sum(1 for m in self.messages if m.topic == "chat")

    def conversations(self) -> dict[str, list[ChatEvent]]:
        """Distinct chat events per conversation, in event-time order."""
        seen: set[tuple[str, str]] = set()
        out: dict[str, list[ChatEvent]] = defaultdict(list)
        for _, e in self.chat:
            if (e.shop_id, e.message_id) not in seen:
                seen.add((e.shop_id, e.message_id))
                out[e.conversation_key].append(e)
        for events in out.values():
            events.sort(key=lambda e: e.ts)
        return out


@pytest.fixture(scope="module")
def day() -> Day:
    sim = Simulator(seed=7)
    d = Day(sim, list(sim.messages(HOUR)))
    for m in d.messages:
        try:
            if m.topic == "chat":
                d.chat.append((m, decode_chat(m.value)))
            elif m.topic == "orders":
                d.orders.append((m, decode_order(m.value)))
            else:
                d.ratings.append((m, decode_rating(m.value)))
        except Rejected as exc:
            d.rejected.append((m, exc.reason))
    return d


# --------------------------------------------------------------------------------------------
# Determinism and shape


def test_same_seed_same_bytes() -> None:
    a = list(Simulator(seed=11).messages(600))
    b = list(Simulator(seed=11).messages(600))
    assert a == b
    assert len(a) > 500
    assert a != list(Simulator(seed=12).messages(600))


def test_messages_is_pure() -> None:
    sim = Simulator(seed=3)
    assert list(sim.messages(300)) == list(sim.messages(300))


def test_arrival_order_and_time_span(day: Day) -> None:
    arrivals = [m.ts for m in day.messages]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] >= DEFAULT_START_MS and arrivals[-1] < DEFAULT_START_MS + HOUR * 1000


def test_start_and_rate_parameters() -> None:
    start = 1_760_000_000_000
    slow = list(Simulator(seed=1, start_ms=start, buyers_per_minute=10).messages(600))
    fast = list(Simulator(seed=1, start_ms=start, buyers_per_minute=60).messages(600))
    assert all(start <= m.ts < start + 600_000 for m in slow + fast)
    assert 4 < len(fast) / len(slow) < 8


def test_endless_stream_is_lazy() -> None:
    first = list(itertools.islice(Simulator(seed=5).messages(math.inf), 200))
    assert len(first) == 200
    assert first == list(itertools.islice(Simulator(seed=5).messages(HOUR), 200))


def test_more_shops_and_agents() -> None:
    sim = Simulator(seed=2, shops=5, agents_per_shop=4)
    assert len({s.id for s in sim.shops}) == 5
    assert len({a.id for a in sim.agents}) == 20
    shops = {decode_chat(m.value).shop_id for m in sim.messages(900) if _good_chat(m)}
    assert shops == {s.id for s in sim.shops}


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Simulator(shops=0)
    with pytest.raises(ValueError):
        Simulator(agents_per_shop=1)
    with pytest.raises(ValueError):
        Simulator(buyers_per_minute=0)


# --------------------------------------------------------------------------------------------
# Realism


def test_everything_good_decodes_and_bad_input_is_rare(day: Day) -> None:
    assert {m.topic for m, _ in day.rejected} == {"chat"}  # orders and ratings are clean
    reasons = Counter(reason for _, reason in day.rejected)
    assert set(reasons) == BAD_REASONS, reasons  # every kind of bad input shows up
    assert 0.001 <= len(day.rejected) / day.chat_records <= 0.0035
    assert len(day.orders) > 500 and len(day.ratings) > 200


def test_shops_teams_agents(day: Day) -> None:
    sim = day.sim
    assert [s.id for s in sim.shops] == ["tmall-flagship", "jd-store", "pdd-outlet"]
    assert {a.team for a in sim.agents} == {"pre-sales", "after-sales"}
    assert {a.speed for a in sim.agents} == {"fast", "normal", "slow"}
    replying = {e.agent_id for _, e in day.chat if e.sender == "agent"}
    assert replying == {a.id for a in sim.agents}  # everyone works
    per_shop = Counter(e.shop_id for _, e in day.chat)
    assert per_shop.most_common()[0][0] == "tmall-flagship"
    assert all(n > 1000 for n in per_shop.values())


def test_senders_and_event_kinds(day: Day) -> None:
    senders = Counter(e.sender for _, e in day.chat)
    kinds = Counter(e.event for _, e in day.chat)
    total = len(day.chat)
    assert 0.3 < senders["buyer"] / total < 0.55
    assert 0.3 < senders["agent"] / total < 0.55
    assert 0.05 < senders["bot"] / total < 0.15
    assert kinds["transfer"] > 100 and kinds["close"] > 1000
    assert all(e.sender == "system" for _, e in day.chat if e.event == "transfer")


def test_bots_answer_the_first_buyer_message(day: Day) -> None:
    for events in day.conversations().values():
        bots = [i for i, e in enumerate(events) if e.sender == "bot"]
        for i in bots:
            assert events[i - 1].sender in ("buyer", "bot") and i > 0


def test_sessions_close_and_some_buyers_go_unanswered(day: Day) -> None:
    convs = day.conversations()
    chatting = [evs for evs in convs.values() if not any(AD.search(e.text or "") for e in evs)]
    closed = sum(1 for evs in chatting if any(e.event == "close" for e in evs))
    unanswered = sum(1 for evs in chatting if not any(e.sender == "agent" for e in evs))
    assert 0.7 < closed / len(chatting) < 0.95
    assert 0.02 < unanswered / len(chatting) < 0.09


def test_multi_message_rounds_and_reply_speed_by_agent(day: Day) -> None:
    speed = {a.id: a.speed for a in day.sim.agents}
    delays: dict[str, list[float]] = defaultdict(list)
    bursts = 0
    for events in day.conversations().values():
        start: int | None = None
        pending = 0
        assigned: dict[str, int] = {}
        for e in events:
            if e.event == "transfer" and e.agent_id:
                assigned[e.agent_id] = e.ts
            elif e.sender == "buyer" and e.event == "message":
                if e.agent_id and e.agent_id not in assigned:
                    assigned[e.agent_id] = e.ts
                pending += 1
                start = e.ts if start is None else start
            elif e.sender == "agent" and e.event == "message" and start is not None:
                assert e.agent_id is not None
                since = max(start, assigned.get(e.agent_id, start))
                delays[speed[e.agent_id]].append((e.ts - since) / 1000)
                bursts += pending > 1
                start, pending = None, 0
    medians = {s: statistics.median(v) for s, v in delays.items()}
    assert 5 < medians["fast"] < 12
    assert 17 < medians["normal"] < 35
    assert 40 < medians["slow"] < 85
    assert bursts > 500  # rounds where the buyer typed several messages before the reply


def test_ad_buyers(day: Day) -> None:
    convs = day.conversations()
    ads = [k for k, evs in convs.items() if any(AD.search(e.text or "") for e in evs)]
    assert 0.015 < len(ads) / len(convs) < 0.05
    for key in ads:  # an ad buyer never shows up as a normal buyer later
        assert all(AD.search(e.text or "") for e in convs[key] if e.sender == "buyer" and e.text)


def test_chinese_texts(day: Day) -> None:
    texts = {e.text for _, e in day.chat if e.text}
    assert any("发货" in t for t in texts) and any("尺码" in t for t in texts)
    assert any("退" in t for t in texts)
    assert all(len(t.encode()) <= 8192 for t in texts)


def test_duplicates_are_identical_redeliveries(day: Day) -> None:
    ids = Counter((e.shop_id, e.message_id) for _, e in day.chat)
    dupes = sum(n - 1 for n in ids.values())
    assert 0.005 < dupes / len(day.chat) < 0.02
    values: dict[tuple[str, str], bytes] = {}
    for m, e in day.chat:
        assert values.setdefault((e.shop_id, e.message_id), m.value) == m.value


def test_wrong_keys_are_rare(day: Day) -> None:
    wrong = [(m, e) for m, e in day.chat if m.key != e.conversation_key.encode()]
    assert 0.002 < len(wrong) / len(day.chat) < 0.01
    assert all(m.key == e.buyer_id.encode() for m, e in wrong)
    for m, o in day.orders:
        assert m.key == o.conversation_key.encode()
    for m, r in day.ratings:
        assert m.key == r.conversation_key.encode()


def test_small_out_of_order_arrival(day: Day) -> None:
    late = [m.ts - e.ts for m, e in day.chat if m.ts != e.ts]
    jittered = [d for d in late if d < 1000]
    assert 0.01 < len(jittered) / len(day.chat) < 0.06
    assert all(d > 0 for d in late)
    # Within a conversation, some events really do arrive after ones with a later ts.
    inversions = 0
    last: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for _, e in day.chat:
        if (e.shop_id, e.message_id) in seen:
            continue
        seen.add((e.shop_id, e.message_id))
        if e.ts < last.get(e.conversation_key, 0):
            inversions += 1
            assert last[e.conversation_key] - e.ts < 1000
        last[e.conversation_key] = max(e.ts, last.get(e.conversation_key, 0))
    assert inversions > 10


def test_order_lifecycles(day: Day) -> None:
    by_order: dict[str, list[tuple[SimMessage, OrderEvent]]] = defaultdict(list)
    for m, o in day.orders:
        by_order[o.order_id].append((m, o))
    statuses = Counter(o.status for _, o in day.orders)
    assert statuses["created"] > 300 and statuses["paid"] > 250
    assert statuses["refunded"] > 5 and statuses["cancelled"] > 5
    rank = {"created": 0, "paid": 1, "cancelled": 1, "refunded": 2}
    for events in by_order.values():
        seq = [o.status for _, o in events]  # arrival order
        assert seq == sorted(seq, key=rank.__getitem__), seq
        assert [o.ts for _, o in events] == sorted(o.ts for _, o in events)
        assert len(set(seq)) == len(seq)
        assert not {"paid", "cancelled"} <= set(seq)
        assert "refunded" not in seq or "paid" in seq or seq[0] != "created"
        paid = {o.status: o.amount for _, o in events}
        if "refunded" in paid and "paid" in paid:
            assert Decimal(0) < paid["refunded"] <= paid["paid"]
        assert len({o.buyer_id for _, o in events}) == 1


def test_orders_lag_and_silent_buyers(day: Day) -> None:
    lag = [m.ts - o.ts for m, o in day.orders]
    assert all(d >= 0 for d in lag)
    lagging = sum(1 for d in lag if d >= 60_000)
    assert 0.04 < lagging / len(lag) < 0.2
    chatted = {e.conversation_key for _, e in day.chat}
    buyers = {o.conversation_key for _, o in day.orders}
    silent = buyers - chatted
    assert 0.1 < len(silent) / len(buyers) < 0.6
    # Orders come as decimal strings and as JSON numbers, ts as ms and as RFC 3339.
    assert any(b'"amount":"' in m.value for m, _ in day.orders)
    assert any(re.search(rb'"amount":[0-9]', m.value) for m, _ in day.orders)
    assert any(b'+08:00"' in m.value for m, _ in day.orders)


def test_ratings_follow_agent_speed(day: Day) -> None:
    speed = {a.id: a.speed for a in day.sim.agents}
    scores: dict[str, list[int]] = defaultdict(list)
    for _, r in day.ratings:
        scores[speed[r.agent_id]].append(r.score)
    means = {s: statistics.mean(v) for s, v in scores.items()}
    assert means["fast"] > means["normal"] > means["slow"]
    assert {r.score for _, r in day.ratings} == {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------------------------
# Roster and files


def test_roster_toml_matches_the_agents(day: Day) -> None:
    text = day.sim.roster_toml()
    data = tomllib.loads(text)
    config = parse_config(data)
    assert set(config.agents) == {a.id for a in day.sim.agents}
    for a in day.sim.agents:
        info = config.agents[a.id]
        assert (info.name, info.team) == (a.name, a.team)
        assert info.sales_target == (None if a.sales_target is None else float(a.sales_target))
    assert any(a.sales_target for a in day.sim.agents)
    shops = parse_config(tomllib.loads(day.sim.shops_toml())).shops
    assert {k: v.profile for k, v in shops.items()} == {
        "tmall-flagship": "taobao",
        "jd-store": "jd",
        "pdd-outlet": "pdd",
    }


def test_write_jsonl_round_trip(tmp_path: Path) -> None:
    messages = list(Simulator(seed=9).messages(1800))
    extra = [
        SimMessage("chat", b"k", b"\xff\xfe not utf-8", 1),
        SimMessage("chat", b"\xff", b'"a json string"', 2),
        SimMessage("orders", b"s:b", b'{"order_id": "spaced", "amount": 1.50}', 3),
    ]
    path = tmp_path / "day.jsonl"
    assert write_jsonl(messages + extra, path) == len(messages) + 3
    back = list(read_jsonl(path))
    assert back == [(m.topic, m.key, m.value) for m in messages + extra]
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert {tuple(sorted(line)) for line in lines} <= {
        ("key", "topic", "value"),
        ("key", "topic", "value_base64"),
        ("key_base64", "topic", "value"),
    }
    objects = [line for line in lines if isinstance(line.get("value"), dict)]
    assert len(objects) > 0.99 * len(messages)
    assert any(isinstance(line.get("value"), str) for line in lines)  # the bad ones, verbatim


def test_read_jsonl_bare_events_and_garbage() -> None:
    chat = {"message_id": "m", "shop_id": "s", "buyer_id": "b", "sender": "buyer", "ts": 1}
    order = {"order_id": "o", "shop_id": "s", "buyer_id": "b", "status": "paid", "amount": "1"}
    rating = {"shop_id": "s", "buyer_id": "b", "agent_id": "a", "score": 5, "ts": 1}
    lines = [orjson.dumps(chat), orjson.dumps(order), b"", orjson.dumps(rating) + b"\r",
             b"{not json", b"[1, 2]", orjson.dumps({"shop_id": 3, "text": "x"}),
             orjson.dumps({"topic": "orders", "value": order}),
             orjson.dumps({"topic": "ratings", "key": None, "value": "raw text"})]  # fmt: skip
    back = list(read_jsonl(io.BytesIO(b"\n".join(lines))))
    assert back == [
        ("chat", b"s:b", orjson.dumps(chat)),
        ("orders", b"s:b", orjson.dumps(order)),
        ("ratings", b"s:b", orjson.dumps(rating)),
        ("chat", None, b"{not json"),
        ("chat", None, b"[1, 2]"),
        ("chat", None, orjson.dumps({"shop_id": 3, "text": "x"})),
        ("orders", b"s:b", orjson.dumps(order)),
        ("ratings", None, b"raw text"),
    ]


def _good_chat(m: SimMessage) -> bool:
    if m.topic != "chat":
        return False
    try:
        decode_chat(m.value)
    except Rejected:
        return False
    return True
