"""Cardinality bound: past KEFU_MAX_AGENTS / KEFU_MAX_SHOPS, shop totals stay
exact and /metrics stays bounded.

Before: 20,000 distinct agents made /metrics 300 MB (3.26 M samples) and the worker 1.3 GiB.
Here the same traffic runs through two runtimes, one capped and one not, and the sums of every
count over each shop (over everything, for the shop cap) must be equal.
"""

from __future__ import annotations

from collections import Counter

import orjson

from streams.config import ConfigError, Settings, default_config, parse_config
from streams.export import prometheus
from streams.pipeline.runtime import Runtime
from streams.ports import Record
from tests.integration.harness import parse_metrics
from tests.pipeline.test_runtime import RecordingSink

T0 = 1_731_290_000_000
SHOPS, AGENTS = 5, 30


def _events() -> list[Record]:
    out: list[Record] = []
    for s in range(SHOPS):
        for a in range(AGENTS):
            shop, agent = f"s{s}", f"a{a}"
            for b in range(2):
                buyer = f"b{a}-{b}"
                t = T0 + (s * 1000 + a * 10 + b) * 1_000
                key = f"{shop}:{buyer}".encode()
                q = {"message_id": f"q{a}{b}", "shop_id": shop, "buyer_id": buyer,
                     "sender": "buyer", "agent_id": agent, "ts": t}
                out.append(Record("kefu.chat", 0, len(out), key, orjson.dumps(q)))
                if b == 0 or a % 3:  # some buyers are still waiting
                    r = {**q, "message_id": f"r{a}{b}", "sender": "agent", "ts": t + 5_000 + a}
                    out.append(Record("kefu.chat", 0, len(out), key, orjson.dumps(r)))
    return out


async def _run(settings: Settings, partitions: int = 2) -> Runtime:
    rt = Runtime(settings, default_config(), partitions=partitions)
    rt.owned = set(range(partitions))
    sink = RecordingSink()
    await rt.on_input_batch(_events(), sink)
    facts = [Record(rt.names.facts, p or 0, i, k, v)
             for i, (t, k, v, p, _h) in enumerate(sink.sent) if t == rt.names.facts]
    await rt.on_facts_batch(facts, RecordingSink())
    now = T0 + (SHOPS - 1) * 1_000_000 + 400_000  # the last shop's buyers still wait
    rt.aggs.advance(now)
    rt.refresh_snapshots(now)
    return rt


def _totals(rt: Runtime, by_shop: bool) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (shop, _agent), s in rt.snapshots.items():
        key = shop if by_shop else "*"
        today = s.windows["today"]
        for name, value in (("rounds", today.rounds), ("received", today.received),
                            ("replied", today.replied), ("agent_msgs", today.agent_messages),
                            ("buyer_msgs", today.buyer_messages), ("inquiries", today.inquiries),
                            ("waiting", s.waiting), ("rounds_total", s.rounds_total),
                            ("rt_sum_ms", today.rt_sum_ms)):
            out[(key, name)] += value
    return +out


async def test_past_the_agent_cap_shop_totals_stay_exact_and_metrics_bounded() -> None:
    free = await _run(Settings(clock="event"))
    capped = await _run(Settings(clock="event", max_agents=20))
    assert _totals(capped, by_shop=True) == _totals(free, by_shop=True)
    assert len(capped.limits.over) == SHOPS * AGENTS - 20
    samples = parse_metrics(prometheus.render(capped).decode())
    agents = {(dict(k)["shop"], dict(k)["agent"]) for (n, k) in samples
              if n == "kefu_rounds_total"}
    assert len(agents) <= 20 + SHOPS * 2  # the admitted agents + one over-limit per shop/partition
    assert samples[("kefu_agents_over_limit", frozenset())] == SHOPS * AGENTS - 20
    over = [k for k in agents if k[1].startswith("over_limit/p")]
    assert over and all(
        dict(k)["team"] == "over_limit" for (n, k) in samples
        if n == "kefu_rounds_total" and dict(k)["agent"].startswith("over_limit/p")
    )
    free_size, capped_size = len(prometheus.render(free)), len(prometheus.render(capped))
    assert capped_size < free_size / 2
    # the over-limit series waits for buyers like an agent would: the alert still pages
    assert _totals(free, by_shop=True)[("s4", "waiting")] > 0
    assert sum(s.waiting for (_, a), s in capped.snapshots.items() if a.startswith("\x00")) > 0


async def test_past_the_shop_cap_totals_stay_exact_over_all_shops() -> None:
    free = await _run(Settings(clock="event"))
    capped = await _run(Settings(clock="event", max_agents=1_000, max_shops=2))
    assert _totals(capped, by_shop=False) == _totals(free, by_shop=False)
    shops = {shop for shop, _ in capped.snapshots}
    assert len(shops - {""}) == 2 and "" in shops
    assert len(capped.limits.over_shops) == SHOPS - 2


def test_the_over_limit_team_is_reserved() -> None:
    try:
        parse_config({"agents": [{"id": "x", "team": "over_limit"}]})
    except ConfigError as exc:
        assert "reserved" in str(exc)
    else:
        raise AssertionError("over_limit must be reserved")


def test_caps_come_from_the_environment() -> None:
    s = Settings.from_env({"KEFU_MAX_AGENTS": "7", "KEFU_MAX_SHOPS": "3"})
    assert (s.max_agents, s.max_shops) == (7, 3)
    assert Settings().max_agents == 5000 and Settings().max_shops == 500


async def test_over_limit_series_are_bounded_too() -> None:
    free = await _run(Settings(clock="event"), partitions=8)
    capped = await _run(Settings(clock="event", max_agents=20), partitions=8)
    assert _totals(capped, by_shop=False) == _totals(free, by_shop=False)
    spill = [k for k in capped.aggs.agents if k[1].startswith("\x00")]
    assert len([k for k in spill if k[0]]) <= capped.limits.max_spill == 16
    # the admitted, the capped over-limit ones, shop "" (one per partition) and the queues
    assert len(capped.snapshots) <= 20 + capped.limits.max_spill + 8 + SHOPS
