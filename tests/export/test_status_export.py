"""Status and load on every surface: /metrics families, /api/v1/agents and the board JSON, read
from snapshot fields only (the exporters compute nothing)."""

from __future__ import annotations

from streams.domain.model import STATUSES, AgentSnapshot
from streams.export import api, prometheus
from streams.export.wallboard import BoardFilter, board_state
from tests.export.test_wallboard import NOW_MS, FakeRuntime, snapshot


def loaded(agent: str, status: str | None, concurrent: int, limit: int) -> AgentSnapshot:
    snap = snapshot(agent, "pre-sales")
    snap.status = status
    snap.status_seconds = {w: {s: (60.0 if s == status else 0.0) for s in STATUSES}
                           for w in ("5m", "1h", "today")}
    snap.concurrent, snap.max_concurrent = concurrent, limit
    snap.occupancy = concurrent / limit
    return snap


def runtime() -> FakeRuntime:
    from streams.config import parse_config

    rt = FakeRuntime(config=parse_config({}))
    rt.add(loaded("a1", "online", 3, 8))
    rt.add(loaded("a2", "busy", 5, 5))
    rt.add(loaded("a3", "online", 9, 8))  # over its limit: no free slot, not a negative one
    rt.add(loaded("a4", "away", 0, 10))
    rt.add(loaded("a5", None, 0, 10))  # never sent a status
    queue = snapshot("", "unassigned", waiting=4, waited_s=30)
    rt.add(queue)
    return rt


def test_metrics_carry_19_series_per_agent_and_none_for_the_queue() -> None:
    rt = runtime()
    rt.snapshot_queue, rt.snapshot_seconds, rt.snapshots_refreshed = 0, 0.0, 0  # type: ignore[attr-defined]
    text = prometheus.render(rt).decode()  # type: ignore[arg-type]
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    families = ("kefu_agent_status{", "kefu_status_seconds{", "kefu_concurrent_buyers{",
                "kefu_max_concurrent{", "kefu_occupancy_ratio{")
    a1 = [ln for ln in lines if ln.startswith(families) and 'agent="a1"' in ln]
    assert len(a1) == 4 + 12 + 3
    assert 'kefu_agent_status{shop="s1",team="pre-sales",agent="a1",status="online"} 1' in a1
    assert 'kefu_agent_status{shop="s1",team="pre-sales",agent="a1",status="away"} 0' in a1
    assert ('kefu_status_seconds{shop="s1",team="pre-sales",agent="a1",status="online",'
            'window="today"} 60.0') in a1
    assert 'kefu_occupancy_ratio{shop="s1",team="pre-sales",agent="a1"} 0.375' in a1
    a5 = [ln for ln in lines if ln.startswith("kefu_agent_status{") and 'agent="a5"' in ln]
    assert len(a5) == 4 and all(ln.endswith(" 0") for ln in a5)
    assert not [ln for ln in lines if ln.startswith(families) and 'agent=""' in ln]


def test_the_api_has_the_same_fields() -> None:
    rt = runtime()
    by_agent = {d["agent"]: d for d in (api.agent_dict(s, rt, NOW_MS)  # type: ignore[arg-type]
                                        for s in rt.snapshots.values())}
    a2 = by_agent["a2"]
    assert (a2["status"], a2["concurrent_buyers"], a2["max_concurrent"], a2["occupancy_ratio"]) \
        == ("busy", 5, 5, 1.0)
    assert a2["status_seconds"]["1h"]["busy"] == 60.0
    assert by_agent[""]["concurrent_buyers"] is None and by_agent[""]["status"] is None


def test_the_board_shows_status_load_and_the_room() -> None:
    board = board_state(runtime(), BoardFilter())  # type: ignore[arg-type]
    tiles = {t["agent"]: t for t in board["agents"]}
    assert (tiles["a1"]["agent_status"], tiles["a1"]["concurrent"], tiles["a1"]["max_concurrent"]) \
        == ("online", 3, 8)
    assert tiles["a5"]["agent_status"] is None
    h = board["header"]
    # online: a1 and a3; free slots: a1's 5, a3 none (over its limit), busy a2 takes no more
    assert (h["agents_online"], h["agents_busy"], h["free_capacity"]) == (2, 1, 5)
    assert h["queue_waiting"] == 4


def test_a_room_without_status_events_says_nothing_about_it() -> None:
    from streams.config import parse_config

    rt = FakeRuntime(config=parse_config({}))
    rt.add(snapshot("a1", "pre-sales"))
    h = board_state(rt, BoardFilter())["header"]  # type: ignore[arg-type]
    assert h["agents_online"] is None and h["free_capacity"] is None
