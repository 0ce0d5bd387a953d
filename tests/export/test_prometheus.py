"""The hand-written `/metrics` exposition, read back with prometheus-client's own parser.

`export/prometheus.py` writes the text itself (the client's object model costs ~10 µs a series:
a second per scrape at 1,000 agents), so nothing but this test checks that Prometheus can read
it: every family typed as declared, label values escaped, histogram buckets cumulative, the
numbers those of the snapshots. It also counts the series one busy agent exports, the figure
the module docstring and the README quote.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.config import Settings, parse_config
from streams.export import prometheus
from streams.pipeline.runtime import Runtime
from streams.ports import Record
from tests.pipeline.test_runtime import RecordingSink

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_731_290_000_000  # 2024-11-11 09:53 Asia/Shanghai
S = 1000
ODD = 'odd"a\\gent'  # a quote and a backslash: both escaped in a label value
CONFIG = parse_config({"agents": [{"id": "a1", "team": "presale", "sales_target": 10000},
                                  {"id": "a2", "team": "presale", "sales_target": 10000},
                                  {"id": ODD, "team": "presale"}]})


def _chat(mid: str, sender: str, ts: int, agent: str, buyer: str) -> bytes:
    return orjson.dumps({"message_id": mid, "shop_id": "s1", "buyer_id": buyer,
                         "sender": sender, "agent_id": agent, "ts": ts})


def _day(agent: str, buyers: int) -> list[tuple[str, bytes]]:
    """Rounds, an order paid and refunded, a rating, a resolved session, a status: every
    family of a busy agent."""
    out: list[tuple[str, bytes]] = []
    for i in range(buyers):
        buyer, t = f"{agent}-b{i}", T0 + i * 60 * S
        out += [("kefu.chat", _chat(f"{buyer}-q", "buyer", t, agent, buyer)),
                ("kefu.chat", _chat(f"{buyer}-a", "agent", t + (10 + 20 * i) * S, agent, buyer))]
    buyer, t = f"{agent}-b0", T0 + 2 * 60 * S
    for status, dt in (("created", 0), ("paid", 5), ("refunded", 30)):
        out.append(("kefu.orders", orjson.dumps({"order_id": f"{agent}-o1", "shop_id": "s1",
                                                 "buyer_id": buyer, "status": status,
                                                 "amount": "99.50", "ts": t + dt * S})))
    out.append(("kefu.ratings", orjson.dumps({"shop_id": "s1", "buyer_id": buyer,
                                              "agent_id": agent, "score": 5, "ts": t + 60 * S,
                                              "resolved": True})))
    out.append(("kefu.chat", orjson.dumps({"message_id": f"{buyer}-close", "shop_id": "s1",
                                           "buyer_id": buyer, "sender": "system",
                                           "agent_id": agent, "ts": t + 90 * S,
                                           "event": "close", "resolved": True})))
    out.append(("kefu.agents", orjson.dumps({"shop_id": "s1", "agent_id": agent,
                                             "status": "online", "ts": T0 - 60 * S,
                                             "max_concurrent": 5})))
    return out


def _key(event: dict[str, Any]) -> bytes:
    """The producers' key: the conversation's, or the agent's for status events."""
    if "buyer_id" in event:
        return f"s1:{event['buyer_id']}".encode()
    return f"s1:{event['agent_id']}".encode()


async def _state(agents: tuple[str, ...] = ("a1",)) -> Runtime:
    rt = Runtime(Settings(clock="event"), CONFIG, partitions=1)
    rt.on_assigned({0})
    rt.health.ready = True
    sink = RecordingSink()
    events = [e for agent in agents for e in _day(agent, buyers=3)]
    events.sort(key=lambda e: orjson.loads(e[1])["ts"])
    records = [Record(topic, 0, i, _key(orjson.loads(v)), v) for i, (topic, v) in enumerate(events)]
    await rt.on_input_batch(records, sink)
    facts = [Record(rt.names.facts, 0, i, key, value)
             for i, (topic, key, value, _, _) in enumerate(sink.sent) if topic == rt.names.facts]
    await rt.on_facts_batch(facts, sink)
    now = rt.clock.now_ms() + 10 * 60 * S
    rt.aggs.advance(now)
    rt.refresh_snapshots(now)
    return rt


def _parse(text: str) -> list[Any]:
    """The families as the client's parser reads them. A list, not a dict by name: the parser
    names a counter without its `_total`, so `kefu_rounds_total` (counter) and `kefu_rounds`
    (gauge) come back as two families of the same name."""
    return list(text_string_to_metric_families(text))


def _kefu_samples(families: list[Any]) -> list[Sample]:
    return [s for f in families if f.name.startswith("kefu_") for s in f.samples]


def _declared(family: Any) -> str | None:
    """The type HELP declares for a parsed family (None: not one of ours)."""
    name = f"{family.name}_total" if family.type == "counter" else family.name
    kind = prometheus.HELP.get(name, (None, ""))[0]
    return kind


async def test_every_kefu_family_parses_with_its_declared_type() -> None:
    families = _parse(prometheus.render(await _state()).decode())
    kefu = [f for f in families if f.name.startswith("kefu_")]
    assert [(f.name, f.type) for f in kefu if _declared(f) != f.type] == []
    names = {f"{f.name}_total" if f.type == "counter" else f.name for f in kefu}
    assert names <= set(prometheus.HELP)
    assert len(names) > 40, sorted(names)  # a busy agent fills nearly every family
    assert {"process_cpu_seconds", "python_info"} & {f.name for f in families}  # the client's


async def test_values_are_the_snapshots() -> None:
    rt = await _state()
    families = _parse(prometheus.render(rt).decode())
    snap = rt.snapshots[("s1", "a1")]

    samples = _kefu_samples(families)

    def value(name: str, **labels: str) -> float:
        found = [s for s in samples
                 if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, (name, labels, found)
        return float(found[0].value)

    today = snap.windows["today"]
    assert value("kefu_rounds", agent="a1", window="today") == today.rounds == 3
    assert value("kefu_rounds", agent="a1", window="month") == 3
    assert value("kefu_response_time_mean_seconds", agent="a1", window="today") == 30.0
    assert value("kefu_sales_amount", agent="a1", window="today") == pytest.approx(99.5)
    assert value("kefu_refunded_orders", agent="a1", window="today") == 1
    assert value("kefu_csat_mean", agent="a1", window="today") == 5.0
    assert value("kefu_sales_target", agent="a1") == 10000
    assert value("kefu_rounds_total", agent="a1") == snap.rounds_total == 3
    assert value("kefu_worker_ready") == 1
    assert value("kefu_owned_partitions") == 1


async def test_histogram_buckets_are_cumulative_and_end_in_the_count() -> None:
    families = _parse(prometheus.render(await _state()).decode())
    [hist] = [f for f in families if f.name == "kefu_response_time_histogram_seconds"]
    buckets = [(float(s.labels["le"]), s.value) for s in hist.samples
               if s.name.endswith("_bucket") and s.labels["agent"] == "a1"]
    assert buckets == sorted(buckets)  # le ascending, counts never decreasing
    assert buckets[-1][0] == float("inf")
    [count] = [s.value for s in hist.samples if s.name.endswith("_count")]
    [total] = [s.value for s in hist.samples if s.name.endswith("_sum")]
    assert buckets[-1][1] == count == 3
    assert total == pytest.approx(10 + 30 + 50)


async def test_label_values_are_escaped() -> None:
    text = prometheus.render(await _state(("a1", ODD))).decode()
    assert 'agent="odd\\"a\\\\gent"' in text
    agents = {s.labels.get("agent") for s in _kefu_samples(_parse(text))}
    assert ODD in agents


def series_per_agent(samples: list[Sample], agent: str) -> int:
    return sum(1 for s in samples if s.labels.get("agent") == agent)


def _quoted(path: Path) -> int:
    m = re.search(r"~(\d+) series per agent", path.read_text(encoding="utf-8").replace("\n", " "))
    assert m, f"{path} no longer says how many series an agent exports"
    return int(m.group(1))


async def test_series_per_agent_is_what_the_docs_say() -> None:
    samples = _kefu_samples(_parse(prometheus.render(await _state()).decode()))
    n = series_per_agent(samples, "a1")
    for doc in (ROOT / "streams/export/prometheus.py", ROOT / "README.md"):
        quoted = _quoted(doc)
        assert abs(quoted - n) <= 5, f"{doc}: ~{quoted} series per agent, measured {n}"


async def test_each_agent_adds_the_same_series() -> None:
    one = _kefu_samples(_parse(prometheus.render(await _state(("a1",))).decode()))
    two = _kefu_samples(_parse(prometheus.render(await _state(("a1", "a2"))).decode()))
    per = Counter(s.labels.get("agent") for s in two)
    assert per["a2"] == per["a1"] == series_per_agent(one, "a1")


def test_scores_and_status_seconds_that_are_not_finite_are_written_as_the_format_says() -> None:
    """Finite values are written with `repr` inline (the render's fast path); anything else
    still goes through `num`: Prometheus reads NaN and ±Inf, never Python's nan / inf."""
    from streams.domain.model import AgentSnapshot, ScoreCard
    from streams.export import agent_text

    card = ScoreCard(items={"finite": 12.5, "nan": float("nan"), "up": float("inf")})
    snap = AgentSnapshot(shop="s1", agent="a1", team="t", score={"today": card},
                         status_seconds={"today": {"online": 61.5, "busy": float("-inf")}})
    text = agent_text.fragments(snap)
    points = {re.search(r'item="(\w+)"', line)[1]: line.rsplit(" ", 1)[1]  # type: ignore[index]
              for line in text["kefu_score_points"].splitlines()}
    assert points == {"finite": "12.5", "nan": "NaN", "up": "+Inf"}
    seconds = {re.search(r'status="(\w+)"', line)[1]: line.rsplit(" ", 1)[1]  # type: ignore[index]
               for line in text["kefu_status_seconds"].splitlines()}
    assert seconds == {"online": "61.5", "busy": "-Inf"}
