"""Scale-out on the real embedded broker: two workers with one app id split the partitions, each
agent's series come from exactly one of them, and a worker stopping mid-stream (SIGTERM, or
SIGKILL) hands its partitions over without losing or doubling anything.

Clocks. With KEFU_CLOCK=event a worker's *now* is the largest event ts *it* has processed, so a
worker whose partitions' events end earlier shows an earlier *now*: its 5m/1h windows, waiting
ages, `unanswered_after` crossings and the reorder-window hold on the SLO counters would all
differ from a single worker's, though nothing is wrong. Rather than compare only some KPIs, the
tests end the stream with one "tick" per partition: a system message at the stream's largest ts
in a shop of its own (no agent: it makes no facts). Every worker then reaches the same watermark,
and *every* KPI of every agent — all windows, waiting now, counters, histogram — must equal the
oracle's (tests/domain/reference.py) for the union of the workers' /metrics.

Embedded-broker timing: Tansu holds a group join for half the session timeout (the workers use
KEFU_SESSION_TIMEOUT=6) and keeps a SIGKILLed member until its session expires, so hand-overs
take ~5-10 s; every wait below is bounded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config import load_config
from streams.events import Rejected, decode_chat
from streams.pipeline.partitioning import partition_of
from streams.tooling.broker import EmbeddedBroker
from streams.tooling.simulate import Simulator
from tests.domain.reference import (
    assert_same_snapshots,
    reference_snapshots,
    snapshot_differences,
)
from tests.integration.day import write_config
from tests.integration.harness import Worker, labels, produce, snapshots_from_metrics

pytestmark = pytest.mark.integration

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00
PARTITIONS = 4
TICK_SHOP = "zz-tick"
WATERMARK = ("kefu_watermark_timestamp_seconds", frozenset())


# ---------------------------------------------------------------------------------------------
# data and oracle


def _day(seed: int, hours: float = 12.0, bpm: float = 2.0) -> tuple[Simulator, list[Any]]:
    sim = Simulator(seed=seed, start_ms=DAY_START_MS, buyers_per_minute=bpm)
    return sim, [m for m in sim.messages(hours * 3600) if m.topic == "chat"]


def _keyed(messages: list[Any]) -> list[tuple[bytes, bytes]]:
    """Contract keys, so arrival order per conversation is the oracle's (re-keying has its own
    e2e test); bad events keep the simulator's key."""
    out = []
    for m in messages:
        try:
            out.append((decode_chat(m.value).conversation_key.encode(), m.value))
        except Rejected:
            out.append((m.key, m.value))
    return out


def _expected(config_path: Path, messages: list[Any]) -> tuple[dict[Any, Any], int]:
    cfg = load_config(config_path)
    events = []
    for m in messages:
        with contextlib.suppress(Rejected):
            events.append(decode_chat(m.value))
    now = max(e.ts for e in events)
    return reference_snapshots(events, cfg.rules, cfg.filters, now, cfg.team_of), now


def _ticks(now_ms: int) -> list[tuple[bytes, bytes]]:
    """One no-op event per partition at `now_ms`: every owner's event clock reaches it."""
    out: list[tuple[bytes, bytes]] = []
    i = 0
    for part in range(PARTITIONS):
        while True:
            buyer = f"tick-{i}"
            i += 1
            key = f"{TICK_SHOP}:{buyer}".encode()
            if partition_of(key, PARTITIONS) == part:
                break
        ev = {"message_id": f"tick-{part}-{now_ms}", "shop_id": TICK_SHOP, "buyer_id": buyer,
              "sender": "system", "agent_id": None, "ts": now_ms}
        out.append((key, orjson.dumps(ev)))
    return out


# ---------------------------------------------------------------------------------------------
# workers


def _workers(broker: EmbeddedBroker, app_id: str, workdir: Path, config: Path,
             n: int = 2) -> list[Worker]:
    ws = [
        Worker(broker, app_id=app_id, workdir=workdir, config_path=config,
               partitions=PARTITIONS, name=f"worker-{i}")
        for i in range(n)
    ]
    for w in ws:
        w.start(wait_ready=False)
    for w in ws:
        w.wait_ready(90)
    return ws


def _owned(w: Worker) -> set[int]:
    status, body = w.get("/readyz")
    if status not in (200, 503) or not body:
        return set()
    return set(orjson.loads(body).get("partitions", []))


def _wait_split(ws: list[Worker], timeout: float = 60) -> list[set[int]]:
    """Until every worker owns some partitions and they are disjoint and complete."""
    deadline = time.monotonic() + timeout
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        for w in ws:
            if not w.alive():
                raise AssertionError(f"{w.name} exited; log tail:\n{w.log_tail()}")
        owned = [_owned(w) for w in ws]
        union = set().union(*owned)
        disjoint = sum(len(o) for o in owned) == len(union)
        if all(owned) and disjoint and union == set(range(PARTITIONS)):
            return owned
        time.sleep(0.3)
    raise AssertionError(f"partitions never split between the workers: {owned}")


def _watermark(w: Worker) -> float:
    try:
        return w.metrics().get(WATERMARK, 0.0)
    except (AssertionError, OSError):
        return 0.0


def _union(ws: list[Worker], now: int) -> tuple[dict[Any, Any], list[set[Any]]]:
    """Every worker's per-agent snapshots, merged, and each worker's agent keys."""
    merged: dict[Any, Any] = {}
    keys: list[set[Any]] = []
    for w in ws:
        snaps = snapshots_from_metrics(w.metrics(), now)
        snaps = {k: v for k, v in snaps.items() if k[0] != TICK_SHOP}
        keys.append(set(snaps))
        merged.update(snaps)
    return merged, keys


def _wait_for_reference(ws: list[Worker], expected: dict[Any, Any], now: int,
                        timeout: float = 120) -> list[set[Any]]:
    """Until every worker's watermark is `now` and the union of their KPIs is the oracle's."""
    deadline = time.monotonic() + timeout
    last = "(nothing compared yet)"
    same_since = time.monotonic()
    summary = ""
    while time.monotonic() < deadline:
        for w in ws:
            if not w.alive():
                raise AssertionError(f"{w.name} exited; log tail:\n{w.log_tail()}")
        try:
            marks = [_watermark(w) for w in ws]
            if any(m != now / 1000 for m in marks):
                last = f"watermarks {marks}, want {now / 1000}"
            else:
                merged, keys = _union(ws, now)
                overlap = set.intersection(*keys) if len(keys) > 1 else set()
                assert not overlap, f"agents exported by more than one worker: {sorted(overlap)}"
                assert_same_snapshots(merged, expected)
                return keys
        except AssertionError as exc:
            if "more than one worker" in str(exc):
                raise
            if str(exc) != last:
                same_since = time.monotonic()
            elif last.startswith("first difference") and time.monotonic() - same_since > 20:
                break  # caught up (watermarks at now) and unchanged for 20 s: it stays wrong
            last = str(exc)
            with contextlib.suppress(AssertionError, OSError):
                diffs = snapshot_differences(_union(ws, now)[0], expected)
                fields = sorted({d.split(": ")[0].split(".", 1)[-1] for d in diffs})
                agents = sorted({d.split(")")[0] + ")" for d in diffs})
                summary = f"{len(diffs)} differences in fields {fields} of {len(agents)} agents"
        time.sleep(0.5)
    raise AssertionError(f"the workers' KPIs never equalled the reference; last: {last}\n"
                         f"{summary}\n"
                         + "logs: " + ", ".join(str(w.log_path) for w in ws))


def _accounted(w: Worker) -> float:
    chat = w.topics["chat"]
    samples = w.metrics()
    return sum(v for (name, lab), v in samples.items()
               if name == "kefu_events_total" and dict(lab).get("topic") == chat
               and dict(lab).get("outcome") != "rekeyed")


# ---------------------------------------------------------------------------------------------
# tests


def test_two_workers_split_partitions_and_agents(broker, app_id, workdir):
    sim, messages = _day(seed=21)
    config = write_config(sim, workdir / "kefu.toml")
    expected, now = _expected(config, messages)
    ws = _workers(broker, app_id, workdir, config)
    try:
        owned = _wait_split(ws)
        produce(broker, ws[0].topics["chat"], _keyed(messages) + _ticks(now))
        keys = _wait_for_reference(ws, expected, now)
        # Each agent's series come from exactly one worker: the owner of its partition.
        assert set().union(*keys) == set(expected)
        assert all(keys), "both workers must export some agents"
        for w, own in zip(ws, owned, strict=True):
            samples = w.metrics()
            assert samples[("kefu_owned_partitions", frozenset())] == len(own)
            assert samples[("kefu_exported_agents", frozenset())] >= 1
        # Both did part of the work, and together every event exactly once.
        done = [_accounted(w) for w in ws]
        assert all(done), f"each worker should have processed events: {done}"
        assert sum(done) == len(messages) + PARTITIONS
        # The assignment held: nobody rebalanced in the middle.
        assert [_owned(w) for w in ws] == owned
    finally:
        for w in ws:
            w.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_stopping_a_worker_mid_stream_loses_and_doubles_nothing(broker, app_id, workdir, how):
    sim, messages = _day(seed=22 if how == "sigterm" else 23)
    config = write_config(sim, workdir / "kefu.toml")
    expected, now = _expected(config, messages)
    keyed = _keyed(messages)
    half = len(keyed) // 2
    # Small batches: the stop lands between many commits.
    env = {"KEFU_BATCH_MAX": "200"}
    ws = [
        Worker(broker, app_id=app_id, workdir=workdir, config_path=config,
               partitions=PARTITIONS, name=f"worker-{i}", env=env)
        for i in range(2)
    ]
    for w in ws:
        w.start(wait_ready=False)
    try:
        for w in ws:
            w.wait_ready(90)
        owned = _wait_split(ws)
        survivor, leaver = ws
        chat = survivor.topics["chat"]
        produce(broker, chat, keyed[:half])
        # Both workers busy with their partitions before the second half arrives.
        middle = max(decode_chat(v).ts for _, v in keyed[: half // 2] if _ok(v)) / 1000
        for w in ws:
            w.wait_until(lambda w=w: _watermark(w) >= middle, 90, f"{w.name} past mid-stream")
        # Stop the leaver while the second half is still arriving and being processed.
        feeder = threading.Thread(target=produce, args=(broker, chat, keyed[half:]))
        feeder.start()
        mark = half + (len(keyed) - half) // 4
        deadline = time.monotonic() + 60
        while _accounted(survivor) + _accounted(leaver) < mark and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped_at = _accounted(survivor) + _accounted(leaver)
        if how == "sigterm":
            leaver.stop()
        else:
            leaver.kill()
        feeder.join()
        assert stopped_at < len(keyed), "the stop must land before the stream is processed"
        # The survivor takes over every partition (a SIGKILLed member first has to time out).
        survivor.wait_until(lambda: _owned(survivor) == set(range(PARTITIONS)), 90,
                            "the survivor to own every partition")
        assert owned[0] != set(range(PARTITIONS))
        produce(broker, chat, _ticks(now))
        keys = _wait_for_reference([survivor], expected, now)
        assert keys[0] == set(expected)
        samples = survivor.metrics()
        assert samples[("kefu_owned_partitions", frozenset())] == PARTITIONS
        assert samples[("kefu_worker_ready", frozenset())] == 1
        rejected = samples.get(("kefu_events_total", labels(topic=chat, outcome="rejected")), 0)
        assert rejected <= sum(1 for m in messages if not _ok(m.value))
    finally:
        for w in ws:
            w.stop()


def _ok(value: bytes) -> bool:
    try:
        decode_chat(value)
    except Rejected:
        return False
    return True
