"""A SIGKILL at every durable-write boundary, on the real embedded broker: nothing lost, nothing
counted twice.

Each case runs the same generated day (chat, orders and ratings; transfers, bursts, bots, ads,
duplicates and a little bad input) through a worker armed with one failpoint
(`streams/failpoints.py`): the worker kills itself exactly at that boundary, every run, instead
of at whatever moment an outside timer happens to land. Then it is restarted — in some cases
killed again while it restores its state — and the last worker's `/metrics` must equal the
oracle on every response and business KPI of every agent and window.

The `recovery-stall` case is the defect that timing could not find: a worker killed before its
first offset commit, restarted, with its end of recovery slowed down. A fetch in flight at that
moment used to hand over the facts buffered for the paused partitions, which Faust then dropped:
stage 2 never saw them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config import load_config
from streams.tooling.broker import EmbeddedBroker
from streams.tooling.simulate import SimMessage, Simulator
from tests.domain.reference import snapshot_differences
from tests.integration.day import (
    DAY_START_MS,
    Expected,
    Stream,
    keyed_stream,
    produce_stream,
    write_config,
)
from tests.integration.harness import Sample, Worker, snapshots_from_metrics

pytestmark = pytest.mark.integration

RESPONSE_METRICS = {
    "kefu_waiting_buyers", "kefu_oldest_wait_seconds", "kefu_rounds_total",
    "kefu_rounds_within_target_total", "kefu_response_time_histogram_seconds_bucket",
    "kefu_response_time_histogram_seconds_sum", "kefu_rounds", "kefu_first_rounds",
    "kefu_received_buyers", "kefu_replied_buyers", "kefu_missed_buyers", "kefu_agent_messages",
    "kefu_buyer_messages",
    "kefu_response_time_seconds", "kefu_first_response_time_seconds",
    "kefu_response_time_mean_seconds", "kefu_first_response_time_mean_seconds",
    "kefu_rounds_within_target_ratio",
}  # fmt: skip
WATERMARK = ("kefu_watermark_timestamp_seconds", frozenset())


# Hit counts stay low: a fast machine runs the day in few rounds (stage 2 in as few as ~4), and
# a point never reached fails the case.
@dataclass(frozen=True)
class Case:
    first: str  # failpoint of the first worker (always a kill)
    restarts: tuple[str, ...] = ()  # failpoints of restarts that are killed again while restoring
    last: str = ""  # failpoint of the worker that must end equal to the oracle (not a kill)
    # The day starts with one conversation three days old: the idle sweep (which forgets a
    # conversation after two attribution windows, 48 h) then always has one to close out.
    with_old_conversation: bool = False
    # A line the last worker must log: the recovery path the case is about was taken.
    last_logs: str = ""


CASES: dict[str, Case] = {
    # stage 1: input → conversation state with its outbox → facts → ack
    "dead-letter-sent": Case("stage1.dead_letter_sent=kill@3"),
    "state-durable": Case("stage1.state_durable=kill@5",  # state + outbox durable, facts not
                          last_logs="from the outboxes of recovered conversations"),
    "facts-durable": Case("stage1.facts_durable=kill@5"),  # both durable, input not acked
    "round-acked": Case("round.acked=kill@8"),
    # stage 2: facts → aggregate records → ack
    "stage2-applied": Case("stage2.applied=kill@3"),
    "stage2-durable": Case("stage2.durable=kill@3"),
    # offsets
    "commit-before": Case("commit.before=kill@1"),
    "commit-done": Case("commit.done=kill@1"),
    # the minute tick and the idle sweep
    "tick-expired": Case("tick.expired=kill@1"),  # the clock may cross only one minute tick
    "sweep-facts-durable": Case("sweep.facts_durable=kill@1", with_old_conversation=True),
    # recovery: the reported defect, and kills while restoring (double crashes)
    "recovery-stall": Case("stage2.applied=kill@2",
                           last="recovery.completed=sleep:1500; fetch.in_thread=sleep:300@*"),
    "killed-while-restoring": Case("stage2.durable=kill@3",
                                   restarts=("recovery.bulk_applied=kill@1",)),
    "killed-at-recovery-end": Case("stage1.state_durable=kill@10",
                                   restarts=("recovery.completed=kill",)),
}


@dataclass
class Day:
    stream: Stream
    expected: Expected
    now: int
    config_path: Path


def _make_day(directory: Path, old_conversation: bool = False) -> Day:
    """~4k chat events of 10 agents in 2 shops, with their orders and ratings."""
    sim = Simulator(seed=23, start_ms=DAY_START_MS, shops=2, agents_per_shop=5,
                    buyers_per_minute=0.3)
    messages = list(sim.messages(24 * 3600))
    if old_conversation:
        shop, agent = sim.agents[0].shop, sim.agents[0].id
        t = DAY_START_MS - 3 * 86_400_000
        messages[:0] = [
            SimMessage("chat", f"{shop}:old-buyer".encode(), orjson.dumps({
                "message_id": f"old-{i}", "shop_id": shop, "buyer_id": "old-buyer",
                "sender": sender, "agent_id": agent, "ts": t + i * 20_000}), t + i * 20_000)
            for i, sender in enumerate(("buyer", "agent"))
        ]
    config_path = write_config(sim, directory / "kefu.toml")
    stream, events = keyed_stream(messages)
    now = max(e.ts for evs in events.values() for e in evs)
    expected = Expected(load_config(config_path), events, now)
    assert len(expected.agents) >= 8 and len(events["chat"]) > 3000
    assert len(stream) > len(events["chat"]) + len(events["orders"]) + len(events["ratings"]), \
        "the day must hold some bad input (dead letters)"
    return Day(stream, expected, now, config_path)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    return _make_day(tmp_path_factory.mktemp("crash"))


@pytest.fixture(scope="module")
def day_with_old_conversation(tmp_path_factory: pytest.TempPathFactory) -> Day:
    return _make_day(tmp_path_factory.mktemp("crash-old"), old_conversation=True)


def differences(samples: dict[Sample, float], day: Day) -> list[str]:
    """Every response and business KPI of /metrics that differs from the oracle."""
    response = {k: v for k, v in samples.items() if k[0] in RESPONSE_METRICS}
    diffs = snapshot_differences(snapshots_from_metrics(response, day.now), day.expected.response)
    return diffs + day.expected.differences(samples)


def _wait_killed_at(worker: Worker, spec: str, timeout: float = 120) -> None:
    """The worker must die by SIGKILL from the armed point (not finish, not crash elsewhere)."""
    assert worker.proc is not None
    point = spec.partition("=")[0]
    deadline = time.monotonic() + timeout
    while worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    code = worker.proc.poll()
    assert code is not None, f"{worker.name} never reached {spec}; log tail:\n{worker.log_tail()}"
    assert code == -9, f"{worker.name} exited {code}, not killed at {spec}:\n{worker.log_tail()}"
    log = worker.log_path.read_text(errors="replace")
    assert f"failpoint {point}: kill" in log, f"killed, but not by {point}:\n{worker.log_tail()}"


def _worker(broker: EmbeddedBroker, app_id: str, workdir: Path, day: Day, name: str,
            spec: str) -> Worker:
    env: dict[str, Any] = {"KEFU_BATCH_MAX": "200"}  # many small rounds: many boundaries
    if spec:
        env["KEFU_FAILPOINTS"] = spec
    return Worker(broker, app_id=app_id, workdir=workdir, config_path=day.config_path, env=env,
                  name=name)


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_at_every_boundary_loses_and_doubles_nothing(
    broker: EmbeddedBroker, app_id: str, workdir: Path, request: pytest.FixtureRequest,
    case: str
) -> None:
    spec = CASES[case]
    day: Day = request.getfixturevalue(
        "day_with_old_conversation" if spec.with_old_conversation else "day")
    workers: list[Worker] = []
    try:
        first = _worker(broker, app_id, workdir, day, "worker-1", spec.first)
        workers.append(first)
        first.start()
        produce_stream(broker.bootstrap, first.topics, day.stream)
        _wait_killed_at(first, spec.first)
        for i, restart_spec in enumerate(spec.restarts, start=2):
            restarted = _worker(broker, app_id, workdir, day, f"worker-{i}", restart_spec)
            workers.append(restarted)
            restarted.start(wait_ready=False)
            _wait_killed_at(restarted, restart_spec)
        last = _worker(broker, app_id, workdir, day, "worker-last", spec.last)
        workers.append(last)
        last.start()
        diffs: list[str] = []

        def settled() -> bool:
            samples = last.metrics()
            watermark = samples.get(WATERMARK)
            if watermark != day.now / 1000:
                diffs[:] = [f"watermark {watermark}, the day ends at {day.now / 1000}"]
                return False
            diffs[:] = differences(samples, day)
            return not diffs

        try:
            last.wait_until(settled, 120, "/metrics to equal the oracle after the crash")
        except AssertionError as exc:
            raise AssertionError(
                f"{case}: {len(diffs)} KPIs differ, first: " + "; ".join(diffs[:6])
                + f"\n{exc}"
            ) from None
        log = last.log_path.read_text(errors="replace")
        for entry in filter(None, spec.last.split(";")):
            point = entry.strip().partition("=")[0]
            assert f"failpoint {point}:" in log, f"{point} was never reached"
        assert spec.last_logs in log, f"the last worker never logged {spec.last_logs!r}"
    finally:
        for w in workers:
            w.stop()


# ---------------------------------------------------------------------------------------------
# hand-over: one of two workers dies at a boundary, the other takes its partitions over

HANDOVER_CASES = {
    "stage1-state-durable": "stage1.state_durable=kill@3",  # the survivor re-sends the outboxes
    "stage2-durable": "stage2.durable=kill@2",
    "round-acked": "round.acked=kill@4",
}


@pytest.mark.parametrize("case", list(HANDOVER_CASES))
def test_a_worker_killed_at_a_boundary_hands_over_losing_and_doubling_nothing(
    broker: EmbeddedBroker, app_id: str, workdir: Path, case: str
) -> None:
    from tests.integration import test_scale_out as scale

    spec = HANDOVER_CASES[case]
    sim, messages = scale._day(seed=24)
    config = write_config(sim, workdir / "kefu.toml")
    expected, now = scale._expected(config, messages)
    env = {"KEFU_BATCH_MAX": "200"}
    survivor = Worker(broker, app_id=app_id, workdir=workdir, config_path=config,
                      partitions=scale.PARTITIONS, name="survivor", env=env)
    leaver = Worker(broker, app_id=app_id, workdir=workdir, config_path=config,
                    partitions=scale.PARTITIONS, name="leaver",
                    env={**env, "KEFU_FAILPOINTS": spec})
    ws = [survivor, leaver]
    for w in ws:
        w.start(wait_ready=False)
    try:
        for w in ws:
            w.wait_ready(90)
        scale._wait_split(ws)
        scale.produce(broker, survivor.topics["chat"], scale._keyed(messages))
        _wait_killed_at(leaver, spec)
        survivor.wait_until(lambda: scale._owned(survivor) == set(range(scale.PARTITIONS)), 90,
                            "the survivor to own every partition")
        scale.produce(broker, survivor.topics["chat"], scale._ticks(now))
        keys = scale._wait_for_reference([survivor], expected, now)
        assert keys[0] == set(expected)
    finally:
        for w in ws:
            w.stop()
