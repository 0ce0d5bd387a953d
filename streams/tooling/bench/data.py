"""The bench's input: simulator records generated once, the worker's config, topics."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.tooling.bench.common import BUYERS_PER_AGENT_MINUTE, DAY_START_MS, HOUR_MS
from streams.tooling.bench.options import Options


@dataclass
class Dataset:
    """Pre-generated records per topic kind, in arrival order."""

    records: list[tuple[str, bytes, bytes, int]]  # (kind, key, value, event ts)
    shops: list[str]

    def count(self, kinds: Iterable[str]) -> int:
        ks = set(kinds)
        return sum(1 for r in self.records if r[0] in ks)


def simulator_shape(agents: int) -> tuple[int, int]:
    """(shops, agents per shop) for about `agents` agents."""
    shops = 10 if agents >= 200 else max(1, agents // 20)
    return shops, max(2, round(agents / shops))


def make_simulator(opts: Options, seed: int, start_ms: int, bpm: float,
                   profile: Any = None) -> Any:
    """The bench's simulator (`profile`: the simulator's own default, its awkward day, if None)."""
    from streams.tooling.simulate import Simulator

    shops, per_shop = simulator_shape(opts.agents)
    chosen = {} if profile is None else {"profile": profile}
    return Simulator(seed=seed, start_ms=start_ms, shops=shops, agents_per_shop=per_shop,
                     buyers_per_minute=bpm, **chosen)


def throughput_simulator(opts: Options, profile: Any = None) -> Any:
    """The simulator of the throughput data: a busy morning at 10:00 (see `make_simulator`)."""
    return make_simulator(opts, opts.seed, DAY_START_MS + 10 * HOUR_MS,
                          BUYERS_PER_AGENT_MINUTE * opts.agents, profile)


def chat_per_buyer(opts: Options) -> float:
    """Chat events per arriving buyer for this seed (calibrated on 10 simulated minutes)."""
    sim = make_simulator(opts, opts.seed, DAY_START_MS, 200.0)
    n = sum(1 for m in sim.messages(600.0) if m.topic == "chat")
    return max(1.0, n / 2000.0)


def generate(sim: Any, *, chat_limit: int | None = None, duration_s: float = math.inf,
             kinds: Iterable[str] = ("chat",)) -> Dataset:
    ks = set(kinds)
    out: list[tuple[str, bytes, bytes, int]] = []
    n_chat = 0
    for m in sim.messages(duration_s):
        if m.topic not in ks:
            continue
        out.append((m.topic, m.key, m.value, m.ts))
        if m.topic == "chat":
            n_chat += 1
            if chat_limit is not None and n_chat >= chat_limit:
                break
    return Dataset(out, [s.id for s in sim.shops])


def write_config(sim: Any, path: Path) -> Path:
    path.write_text(
        '[filters]\nad_patterns = ["加微信", "(?i)https?://", "QQ号"]\n'
        + sim.shops_toml() + "\n" + sim.roster_toml(),
        encoding="utf-8",
    )
    return path


def ensure(bootstrap: str, topics: Mapping[str, int]) -> None:
    from streams.topics import ensure_topics

    ensure_topics(bootstrap, dict(topics))
