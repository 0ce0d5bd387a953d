"""The spine end to end on the real embedded broker: a generated day → /metrics == reference.

Event-clock mode (KEFU_CLOCK=event) makes *now* the largest event ts, so a whole simulated day
can be replayed in seconds and compared, KPI by KPI, with the oracle in tests/domain.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from streams.config import load_config
from streams.events import Rejected, decode_chat
from streams.tooling.simulate import Simulator
from tests.domain.reference import assert_same_snapshots, reference_snapshots
from tests.integration.day import write_config
from tests.integration.harness import (
    Worker,
    labels,
    produce,
    snapshots_from_metrics,
)

pytestmark = pytest.mark.integration

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00


def _day(seed: int = 11, hours: float = 24.0, bpm: float = 2.0) -> tuple[Simulator, list]:
    sim = Simulator(seed=seed, start_ms=DAY_START_MS, buyers_per_minute=bpm)
    return sim, [m for m in sim.messages(hours * 3600) if m.topic == "chat"]


def _decoded(messages: list) -> tuple[list, int]:
    good, bad = [], 0
    for m in messages:
        try:
            good.append(decode_chat(m.value))
        except Rejected:
            bad += 1
    return good, bad


def _keyed(messages: list) -> list[tuple[bytes, bytes]]:
    """Producer keys as the contract says; mis-keyed traffic has its own test below."""
    out = []
    for m in messages:
        try:
            out.append((decode_chat(m.value).conversation_key.encode(), m.value))
        except Rejected:
            out.append((m.key, m.value))
    return out


def _expected(sim: Simulator, config_path: Path, messages: list) -> tuple[dict, int, int]:
    cfg = load_config(config_path)
    events, bad = _decoded(messages)
    now = max(e.ts for e in events)
    return reference_snapshots(events, cfg.rules, cfg.filters, now, cfg.team_of), now, bad


def _wait_for_reference(worker: Worker, expected: dict, now: int, timeout: float = 240) -> None:
    last: list[str] = []

    def settled() -> bool:
        samples = worker.metrics()
        if samples.get(("kefu_watermark_timestamp_seconds", frozenset())) != now / 1000:
            return False
        try:
            assert_same_snapshots(snapshots_from_metrics(samples, now), expected)
        except AssertionError as exc:
            last[:] = [str(exc)]
            return False
        return True

    try:
        worker.wait_until(settled, timeout, "/metrics to equal the reference")
    except AssertionError:
        raise AssertionError(f"last difference: {last[0] if last else '(none)'}") from None


def test_generated_day_matches_reference(broker, app_id, workdir):
    sim, messages = _day()
    config_path = write_config(sim, workdir / "kefu.toml")
    expected, now, bad = _expected(sim, config_path, messages)
    assert bad > 0, "the generated day should include a little bad input"
    assert len(expected) > 10
    worker = Worker(broker, app_id=app_id, workdir=workdir, config_path=config_path).start()
    try:
        produce(broker, worker.topics["chat"], _keyed(messages))
        _wait_for_reference(worker, expected, now)
        samples = worker.metrics()
        chat = worker.topics["chat"]
        rejected = samples[("kefu_events_total", labels(topic=chat, outcome="rejected"))]
        assert rejected == bad
        accepted = samples[("kefu_events_total", labels(topic=chat, outcome="accepted"))]
        duplicate = samples.get(("kefu_events_total", labels(topic=chat, outcome="duplicate")), 0)
        late = samples.get(("kefu_events_total", labels(topic=chat, outcome="late")), 0)
        assert accepted + duplicate + late + rejected == len(messages)
        # Dead letters keep the original bytes and say why and where from.
        consumer = KafkaConsumer(
            worker.topics["deadletter"], bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest", consumer_timeout_ms=5000,
        )
        letters = list(consumer)
        consumer.close()
        assert len(letters) == bad
        originals = {m.value for m in messages}
        for letter in letters:
            headers = dict(letter.headers)
            assert letter.value in originals
            assert headers["kefu-reason"]
            assert headers["kefu-source-topic"] == chat.encode()
        # Worker health surfaces
        assert worker.get("/healthz")[0] == 200
        body = orjson.loads(worker.get("/api/v1/agents")[1])
        assert {a["agent"] for a in body["agents"]} == {a for _, a in expected}
    finally:
        worker.stop()


def test_sigkill_mid_day_loses_and_doubles_nothing(broker, app_id, workdir):
    sim, messages = _day(seed=12, hours=24.0, bpm=2.0)
    config_path = write_config(sim, workdir / "kefu.toml")
    expected, now, _ = _expected(sim, config_path, messages)
    keyed = _keyed(messages)
    half = len(keyed) // 2
    env = {"KEFU_BATCH_MAX": "200"}  # small batches: the kill lands between many commits
    worker = Worker(broker, app_id=app_id, workdir=workdir, config_path=config_path, env=env)
    worker.start()
    produce(broker, worker.topics["chat"], keyed[:half])
    middle = max(decode_chat(v).ts for _, v in keyed[: half // 2] if _ok(v))

    def past_middle() -> bool:
        wm = worker.metrics().get(("kefu_watermark_timestamp_seconds", frozenset()), 0)
        return wm >= middle / 1000

    worker.wait_until(past_middle, 60, "the worker to be busy mid-day")
    produce(broker, worker.topics["chat"], keyed[half:])
    watermark = worker.metrics().get(("kefu_watermark_timestamp_seconds", frozenset()), 0)
    worker.kill()  # SIGKILL while it is consuming the second half
    assert watermark < now / 1000, "the kill must land before the day is fully processed"
    restarted = Worker(
        broker, app_id=app_id, workdir=workdir, config_path=config_path, env=env,
        name="worker-restarted",
    ).start()
    try:
        _wait_for_reference(restarted, expected, now, timeout=300)
        samples = restarted.metrics()
        chat = restarted.topics["chat"]
        # The restarted worker re-read what was not committed at the kill: events whose state
        # was lost (accepted again) or already stored (duplicates, dropped by message id).
        redone = sum(
            samples.get(("kefu_events_total", labels(topic=chat, outcome=o)), 0)
            for o in ("accepted", "duplicate")
        )
        assert redone > 0, "the restarted worker must have re-read part of the day"
    finally:
        restarted.stop()


def _ok(value: bytes) -> bool:
    try:
        decode_chat(value)
    except Rejected:
        return False
    return True


def test_miskeyed_messages_are_rekeyed_and_counted(broker, app_id, workdir):
    """Producers that key by buyer only (or not at all) still land in the right conversation."""
    t = DAY_START_MS + 10 * 3_600_000
    events = [
        {"message_id": "k1", "shop_id": "s", "buyer_id": "b", "sender": "buyer", "agent_id": "a",
         "ts": t},
        {"message_id": "k2", "shop_id": "s", "buyer_id": "b", "sender": "agent", "agent_id": "a",
         "ts": t + 12_000},
    ]
    worker = Worker(broker, app_id=app_id, workdir=workdir).start()
    try:
        chat = worker.topics["chat"]
        accepted = ("kefu_events_total", labels(topic=chat, outcome="accepted"))
        # One at a time: the two land on different partitions of the chat topic, and Kafka
        # orders nothing across partitions, so the reply could be re-keyed first (and the
        # question, 12 s older, would then count as late).
        produce(broker, chat, [(b"b", orjson.dumps(events[0]))])
        worker.wait_until(lambda: worker.metrics().get(accepted) == 1, 60, "the question")
        produce(broker, chat, [(None, orjson.dumps(events[1]))])
        rounds = ("kefu_rounds", labels(shop="s", team="unassigned", agent="a", window="today"))
        worker.wait_until(lambda: worker.metrics().get(rounds) == 1, 60, "the rekeyed round")
        samples = worker.metrics()
        mean = ("kefu_response_time_mean_seconds",
                labels(shop="s", team="unassigned", agent="a", window="today"))
        assert samples[mean] == 12.0
        assert samples[("kefu_events_total", labels(topic=chat, outcome="rekeyed"))] == 2
        assert samples[accepted] == 2
    finally:
        worker.stop()
