"""A realistic, deterministic customer-service day for the demo, the tests and load.

`Simulator` models what a support room really sees, because KPIs only mean something against
traffic with the awkward parts in it: shops on three platforms, pre-/after-sales teams, fast and
slow agents (log-normal reply delays), buyers arriving in Poisson bursts and typing several
messages per round, bot auto-replies that must not count as replies, queueing and transfers,
unanswered buyers, ad spammers, orders that lag behind the chat, refunds, ratings, redelivered
duplicates, sub-second reordering, wrongly keyed messages and a little garbage. It is pure:
the same seed and start time give byte-identical output, so tests can assert on it.
`run_simulate` (live, paced on the wall clock) and `run_replay` (JSONL files) put it on Kafka.

That awkward day is the `DEFAULT` profile. The demo runs `DEMO` instead: a calm room where red
means something, with agent status events, resolution marks and one scripted incident, told
in advance by `demo_script` (see `profile`).

Modules: `model` (types, rates, texts), `profile` (kinds of day), `simulator` (roster and
arrivals), `session` (one buyer's visit), `status` (who is at their console), `script` (the
demo banner), `jsonl` (files), `live` (Kafka).
"""

from streams.tooling.simulate.jsonl import read_jsonl, write_jsonl
from streams.tooling.simulate.live import run_replay, run_simulate
from streams.tooling.simulate.model import (
    DEFAULT_START_MS,
    TOPIC_KINDS,
    SimAgent,
    SimMessage,
    SimShop,
    TopicKind,
)
from streams.tooling.simulate.profile import DEFAULT, DEMO, PROFILES, Incident, Profile
from streams.tooling.simulate.script import demo_config, demo_script
from streams.tooling.simulate.simulator import Simulator

__all__ = [
    "DEFAULT",
    "DEFAULT_START_MS",
    "DEMO",
    "PROFILES",
    "TOPIC_KINDS",
    "Incident",
    "Profile",
    "SimAgent",
    "SimMessage",
    "SimShop",
    "Simulator",
    "TopicKind",
    "demo_config",
    "demo_script",
    "read_jsonl",
    "run_replay",
    "run_simulate",
    "write_jsonl",
]
