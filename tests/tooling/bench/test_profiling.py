"""py-spy stacks are assigned to the layer that spent the time."""

from __future__ import annotations

from streams.tooling.bench import profiling


def test_profile_stacks_are_assigned_to_layers() -> None:
    loop = [("Worker.execute_from_commandline", "/v/mode/worker.py"),
            ("cmd_worker", "/w/streams/cli.py"),
            ("BaseEventLoop._run_once", "/py/asyncio/base_events.py")]
    agent = ("BatchConsumer._drain_messages", "/w/streams/pipeline/faust_adapter/consumer.py")
    take = ("Stream.take_events", "/v/faust/streams.py")
    send_facts = ("InputStage._send_facts", "/w/streams/pipeline/input_stage.py")
    producer = ("Producer.send", "/v/faust/transport/producer.py")
    cases = {
        "idle/wait": [*loop, ("EpollSelector.select", "/py/selectors.py")],
        "Faust/mode/asyncio machinery (main thread)": [*loop, agent, take],
        "produce (facts, changelogs, rekey)": [*loop, agent, send_facts, producer],
        "decode + validate": [*loop, agent, ("decode_chat", "/w/streams/events.py")],
        "domain: aggregates & snapshots (stage 2)": [*loop, ("Aggregates.snapshot",
                                                             "/w/streams/domain/aggregates.py")],
        "domain: conversations (stage 1)": [*loop, ("Core.apply",
                                                    "/w/streams/domain/conversation.py")],
        "/metrics & pages": [*loop, ("render", "/w/streams/export/prometheus.py")],
    }
    for want, stack in cases.items():
        assert profiling.classify(stack) == want, want
    assert profiling.classify(loop, "Thread-1").startswith("aiokafka consumer thread")
