"""Named crash points on the worker's durable-write boundaries, inert unless a test arms one.

Why: "nothing accepted is lost or counted twice across crashes" has to hold at *every* moment,
and a kill timed from outside lands on the moments that are wide, not on the narrow ones where
bugs hide (a crash while stage 2 catches up after stage 1 is done, or while a restart
recovers). In the style of TiKV's fail-rs, each boundary names a point; a test arms one through
`KEFU_FAILPOINTS` and the worker crashes (or stalls) exactly there, every run.

    KEFU_FAILPOINTS="stage1.facts_durable=kill@3; recovery.completed=sleep:1500"

Each entry is `point=action[@hit]`: on the `hit`-th time the point is reached (default the
first; `@*` every time), `kill` SIGKILLs the process (no shutdown, no final commit: a crash),
`raise` raises `FailpointError`, `sleep:MS` stalls for MS milliseconds (async points sleep
without blocking other tasks; sync ones block their thread). Before it fires, a point logs one
line, so a test can tell that the crash came from the point and not from somewhere else.

Cost when nothing is armed: one truthiness test of a module-level dict per point.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV = "KEFU_FAILPOINTS"

# Every point, and the boundary it marks. Arming an unknown name is an error (a typo must not
# make a crash test pass vacuously).
POINTS: dict[str, str] = {
    "stage1.dead_letter_sent": "stage 1: a rejected record handed to the producer, batch "
                               "unfinished",
    "stage1.state_durable": "stage 1: conversation state (with its outbox) acked by the broker, "
                            "facts not sent yet",
    "stage1.facts_durable": "stage 1: the batch's facts acked by the broker, input not acked",
    "round.acked": "a fetch round's records acked in memory, offsets not committed",
    "stage2.applied": "stage 2: facts applied to the in-memory aggregates, records not written",
    "stage2.durable": "stage 2: aggregate records acked by the broker, facts not acked",
    "commit.before": "offsets about to be committed",
    "commit.done": "offsets committed",
    "tick.expired": "minute tick: expired buckets dropped in memory, tombstones not written",
    "sweep.facts_durable": "idle sweep: closing facts durable, conversation tombstones not written",
    "recovery.bulk_applied": "changelog recovery: a round applied to a table in bulk",
    "recovery.completed": "changelog recovery done, stream partitions not resumed yet",
    "round.dropped": "a fetch round dropped (rebalance or seek under way), re-read scheduled",
    "resync.seek": "a partition about to be sought back after a dropped round",
    "fetch.in_thread": "the consumer thread about to take fetched records for the partitions "
                       "it was asked for (sleep here keeps a fetch in flight)",
}


class FailpointError(RuntimeError):
    """Raised by a point armed with `raise`."""


@dataclass(slots=True)
class Action:
    kind: str  # kill | raise | sleep
    hit: int = 1  # fire on this hit of the point (0: on every hit)
    sleep_ms: int = 0


ARMED: dict[str, list[Action]] = {}
_hits: dict[str, int] = {}


def parse(spec: str) -> dict[str, list[Action]]:
    """`point=action[@hit]; …` → armed actions; ValueError naming the bad entry."""
    armed: dict[str, list[Action]] = {}
    for entry in filter(None, (part.strip() for part in spec.replace(",", ";").split(";"))):
        name, sep, rest = entry.partition("=")
        name = name.strip()
        if not sep or name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} in {entry!r}; known: "
                             + ", ".join(sorted(POINTS)))
        what, _, hit_text = rest.strip().partition("@")
        try:
            hit = 0 if hit_text == "*" else int(hit_text) if hit_text else 1
        except ValueError:
            raise ValueError(f"{ENV}: bad hit count in {entry!r}") from None
        if hit < 1 and hit_text != "*":
            raise ValueError(f"{ENV}: hit count must be >= 1 in {entry!r}")
        kind, _, arg = what.partition(":")
        if kind in ("kill", "raise") and not arg:
            action = Action(kind, hit)
        elif kind == "sleep" and arg.isdigit():
            action = Action(kind, hit, int(arg))
        else:
            raise ValueError(f"{ENV}: bad action {what!r} in {entry!r} "
                             "(kill, raise or sleep:MS)")
        armed.setdefault(name, []).append(action)
    return armed


def configure(spec: str | None) -> None:
    """Arm the points of `spec` (None or empty: disarm all)."""
    ARMED.clear()
    _hits.clear()
    if spec:
        ARMED.update(parse(spec))
        log.warning("failpoints armed: %s", spec)


def configure_from_env() -> None:
    configure(os.environ.get(ENV))


def _due(name: str) -> Action | None:
    actions = ARMED.get(name)
    if not actions:
        return None
    n = _hits[name] = _hits.get(name, 0) + 1
    for action in actions:
        if action.hit in (n, 0):
            return action
    return None


def _fire(name: str, action: Action) -> None:
    message = f"failpoint {name}: {action.kind} (hit {_hits.get(name)})"
    log.warning(message)
    if action.kind == "kill":
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if action.kind == "raise":
        raise FailpointError(message)


def hit(name: str) -> None:
    """Reach point `name` (synchronous: `sleep` blocks the thread)."""
    if ARMED:
        action = _due(name)
        if action is not None:
            _fire(name, action)
            if action.kind == "sleep":
                time.sleep(action.sleep_ms / 1000)


async def ahit(name: str) -> None:
    """Reach point `name` from a coroutine (`sleep` lets other tasks run meanwhile)."""
    if ARMED:
        action = _due(name)
        if action is not None:
            _fire(name, action)
            if action.kind == "sleep":
                await asyncio.sleep(action.sleep_ms / 1000)
