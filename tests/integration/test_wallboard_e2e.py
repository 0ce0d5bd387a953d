"""The wall-board in headless Chromium (Debian's, driven by Playwright) on a real worker.

A worker on the embedded broker is fed the simulator's last few minutes for one shop plus a
hand-made shop whose agents are fast, slow, waiting and in between. The board must show every
agent, change without a reload, turn the slow agent red, keep buyer ids and text off the page,
ask for its token, say its data is stale once the worker stops, and come back by itself when
a worker is up again. Screenshots (1080p, 4K,
English, team filter, stale) go to test-artifacts/wallboard/ for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.tooling.simulate import Simulator
from tests.integration.harness import ARTIFACTS, Worker, produce

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = ARTIFACTS / "wallboard"
SHOP = "wb-shop"
TOKEN = "tv-room-3f"
PRIVATE_TEXT = "我的手机号13800138000"
AGENTS = {  # id -> (name, team)
    "w-fast": ("小美", "pre-sales"),
    "w-slow": ("阿强", "pre-sales"),
    "w-wait": ("晓雯", "after-sales"),
    "w-mid": ("老王", "after-sales"),
}

sync_api = pytest.importorskip("playwright.sync_api", reason="run `make test-deps-browser`")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("Debian chromium missing: run `make test-deps-browser`", allow_module_level=True)


class Chat:
    """Builds `kefu.chat` events for the hand-made shop (docs/interfaces.md)."""

    def __init__(self) -> None:
        self.n = 0
        self.out: list[tuple[bytes, bytes]] = []

    def msg(self, buyer: str, sender: str, agent: str | None, ts: int, **extra: Any) -> Chat:
        self.n += 1
        event = {"message_id": f"wb-{self.n}", "shop_id": SHOP, "buyer_id": buyer,
                 "sender": sender, "agent_id": agent, "ts": ts, "event": "message", **extra}
        self.out.append((f"{SHOP}:{buyer}".encode(), orjson.dumps(event)))
        return self

    def round(self, buyer: str, agent: str, start: int, reply_after_s: float) -> Chat:
        self.msg(buyer, "buyer", agent, start)
        return self.msg(buyer, "agent", agent, start + int(reply_after_s * 1000))

    def take(self) -> list[tuple[bytes, bytes]]:
        out, self.out = self.out, []
        return out


def config_text(sim: Simulator) -> str:
    roster = "".join(
        f'\n[[agents]]\nid = "{aid}"\nname = "{name}"\nteam = "{team}"\n'
        for aid, (name, team) in AGENTS.items()
    )
    return sim.shops_toml() + "\n" + sim.roster_toml() + roster


@pytest.fixture
def worker(broker: Any, app_id: str, workdir: Path) -> Iterator[Worker]:
    sim = Simulator(seed=5, start_ms=int(time.time() * 1000) - 6 * 60_000, shops=1,
                    agents_per_shop=6, buyers_per_minute=10)
    config = workdir / "kefu.toml"
    config.write_text(config_text(sim), encoding="utf-8")
    w = Worker(broker, app_id=app_id, workdir=workdir, clock="wall", config_path=config,
               env={"KEFU_WALLBOARD_TOKEN": TOKEN})
    w.start()
    try:
        # The simulated shop's last six minutes, up to now.
        produce(broker, w.topics["chat"],
                [(m.key, m.value) for m in sim.messages(6 * 60) if m.topic == "chat"])
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def tiles(page: Any) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.tile[data-agent]')].map(t =>
            [t.dataset.shop + '/' + t.dataset.agent, {
              status: t.dataset.status,
              name: t.querySelector('.tile-name').textContent,
              waiting: t.querySelector('.t-waiting').textContent,
              oldest: t.querySelector('.t-oldest').textContent,
              p90: t.querySelector('.t-p90').textContent,
            }]))"""
    )
    return result


def api_agents(w: Worker) -> set[str]:
    return {f"{a['shop']}/{a['agent']}" for a in w.agents()["agents"] if a["agent"]}


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path))
    return path


def wait_for(what: str, predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return
        except AssertionError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def test_wallboard_live_in_chromium(broker: Any, worker: Worker, browser: Any) -> None:
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    url = worker.url
    chat = Chat()
    t0 = int(time.time() * 1000)
    for i, start in enumerate((150, 120, 90)):
        chat.round(f"bf{i}", "w-fast", t0 - start * 1000, 4 + i)
    chat.round("bs1", "w-slow", t0 - 100_000, 8)
    chat.round("bw0", "w-wait", t0 - 200_000, 12)
    chat.msg("bw1", "buyer", "w-wait", t0 - 20_000, text=PRIVATE_TEXT)  # waiting, unanswered
    chat.round("bm0", "w-mid", t0 - 140_000, 35)
    chat.round("bm1", "w-mid", t0 - 80_000, 36)
    chat.msg("bq1", "buyer", None, t0 - 10_000)  # the shop's unassigned queue
    produce(broker, worker.topics["chat"], chat.take())
    mine = {f"{SHOP}/{a}" for a in AGENTS}
    worker.wait_until(lambda: mine <= api_agents(worker), 60, "the hand-made agents")

    # Token: without it the page is refused; with it the page sets a cookie for the feed.
    assert worker.get("/wallboard")[0] == 401
    assert worker.get("/wallboard/events")[0] == 401

    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    t_load = time.monotonic()
    page.goto(f"{url}/wallboard?token={TOKEN}")
    page.wait_for_selector('body[data-state="live"]', timeout=15_000)
    page.wait_for_selector(".tile[data-agent]", timeout=15_000)
    load_s = time.monotonic() - t_load

    # Every agent the worker knows is on the board (the simulator's and the hand-made ones).
    wait_for("every agent on the board", lambda: set(tiles(page)) == api_agents(worker))
    board = tiles(page)
    assert mine <= set(board) and len(board) >= len(mine) + 3
    assert {board[f"{SHOP}/{a}"]["name"] for a in AGENTS} == {n for n, _ in AGENTS.values()}
    assert board[f"{SHOP}/w-slow"]["status"] == "ok"
    assert board[f"{SHOP}/w-mid"]["status"] == "warn"  # p90 35 s: over 30, under 40
    assert board[f"{SHOP}/w-wait"]["waiting"] == "1"
    assert board[f"{SHOP}/w-fast"]["waiting"] == "0"
    assert page.inner_text("#kpi-waiting .num") != "–"
    assert not page.is_visible("#stale")
    shot(page, "wallboard-1080p-initial.png")

    # The oldest wait counts up in the browser between pushes.
    first = tiles(page)[f"{SHOP}/w-wait"]["oldest"]
    wait_for("the wait to count up", lambda: tiles(page)[f"{SHOP}/w-wait"]["oldest"] != first, 5)

    # New events change the numbers without a reload, and the slow agent turns red.
    t1 = int(time.time() * 1000)
    chat.round("bs2", "w-slow", t1 - 70_000, 65)
    chat.round("bs3", "w-slow", t1 - 66_000, 63)
    chat.msg("bf9", "buyer", "w-fast", t1 - 2_000)
    produce(broker, worker.topics["chat"], chat.take())
    page.wait_for_function(
        """() => {
            const t = id => document.querySelector(`.tile[data-id="${id}"]`);
            const slow = t('wb-shop/w-slow'), fast = t('wb-shop/w-fast');
            return slow && fast && slow.dataset.status === 'crit'
                && fast.querySelector('.t-waiting').textContent === '1';
        }""",
        timeout=20_000,
    )
    board = tiles(page)
    assert board[f"{SHOP}/w-slow"]["p90"] in ("1:05", "65秒")
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
    # Worst first: the red slow agent comes before the green fast one.
    order = page.eval_on_selector_all(".tile[data-agent]", "els => els.map(e => e.dataset.id)")
    assert order.index(f"{SHOP}/w-slow") < order.index(f"{SHOP}/w-fast")
    page.wait_for_timeout(1200)  # let the header settle before the picture
    shot(page, "wallboard-1080p.png")

    # No buyer ids or message text anywhere on the page; nothing fetched from elsewhere.
    html = page.content()
    assert PRIVATE_TEXT not in html and "bw1" not in html and "bq1" not in html
    assert all(r.startswith(url) or r.startswith("data:") for r in requests), requests
    assert not errors, errors

    # 4K, English, and a team filter; the cookie from the first load opens these.
    big = browser.new_context(viewport={"width": 3840, "height": 2160})
    big.add_cookies(context.cookies())
    p4k = big.new_page()
    p4k.goto(f"{url}/wallboard")
    p4k.wait_for_selector('.tile[data-agent][data-status="crit"]', timeout=15_000)
    p4k.wait_for_timeout(800)
    shot(p4k, "wallboard-4k.png")
    big.close()

    en = context.new_page()
    en.goto(f"{url}/wallboard?lang=en")
    en.wait_for_selector(".tile[data-agent]", timeout=15_000)
    assert en.inner_text("#kpi-waiting .kpi-label") == "Buyers waiting"
    en.wait_for_timeout(800)
    shot(en, "wallboard-en-1080p.png")
    en.close()

    team = context.new_page()
    team.goto(f"{url}/wallboard?shop={SHOP}&team=after-sales")
    team.wait_for_selector(".tile[data-agent]", timeout=15_000)
    wait_for("the team filter", lambda: set(tiles(team)) == {f"{SHOP}/w-wait", f"{SHOP}/w-mid"})
    team.wait_for_timeout(800)
    shot(team, "wallboard-team-after-sales-1080p.png")
    team.close()

    # The worker stops: the board must say so rather than look like a quiet room.
    worker.stop()
    page.wait_for_selector('body[data-state="stale"]', timeout=15_000)
    assert page.is_visible("#stale")
    assert "数据已过期" in page.inner_text("#stale")
    page.wait_for_timeout(600)
    shot(page, "wallboard-stale-1080p.png")

    # A restarted worker on the same port: the board recovers by itself, no one touches the TV.
    again = Worker(
        broker, app_id=worker.env["KEFU_APP_ID"], workdir=worker.workdir, clock="wall",
        config_path=Path(worker.env["KEFU_CONFIG"]), env={"KEFU_WALLBOARD_TOKEN": TOKEN},
        port=worker.port, name="worker-restarted",
    )
    try:
        again.start()
        page.wait_for_selector('body[data-state="live"]', timeout=30_000)
        wait_for("the recovered agents", lambda: mine <= set(tiles(page)), 30)
        assert not page.is_visible("#stale")
    finally:
        again.stop()
    context.close()
    print(f"\nwall-board first paint {load_s:.2f}s; screenshots in {SHOTS}")


# -- drill-down: who is waiting (GET /api/v1/waiting behind a tile) ------------------------------

READ_TOKEN = "read-room-9c"
WAITERS = {"bw-old": 200, "bw-mid": 90, "bw-new": 40}  # buyer -> seconds waiting at the start


@pytest.fixture
def guarded(broker: Any, app_id: str, workdir: Path) -> Iterator[Worker]:
    """A worker with a read token (the drill-down's) and the older wall-board token (a TV's)."""
    roster = "".join(
        f'[[agents]]\nid = "{aid}"\nname = "{name}"\nteam = "{team}"\n\n'
        for aid, (name, team) in AGENTS.items()
    )
    config = workdir / "kefu.toml"
    config.write_text(roster, encoding="utf-8")
    w = Worker(broker, app_id=app_id, workdir=workdir, clock="wall", config_path=config,
               env={"KEFU_WALLBOARD_TOKEN": TOKEN, "KEFU_READ_TOKEN": READ_TOKEN})
    w.start()
    try:
        yield w
    finally:
        w.stop()


def seconds(text: str) -> int:
    """A wait as the board writes it: "40秒" / "40s", "3:20", "1:02:03"."""
    digits = text.rstrip("秒s").strip()
    total = 0
    for part in digits.split(":"):
        total = total * 60 + int(part)
    return total


def drill_rows(page: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = page.eval_on_selector_all(
        "#drill-list .drill-row",
        "els => els.map(e => [e.querySelector('.drill-buyer').textContent,"
        " e.querySelector('.drill-wait').textContent])")
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_drill_down_lists_waiting_buyers_only_with_the_read_token(
    broker: Any, guarded: Worker, browser: Any,
) -> None:
    url = guarded.url
    chat = Chat()
    t0 = time.time()
    for buyer, waited in WAITERS.items():  # unanswered buyers of 晓雯 (w-wait)
        chat.msg(buyer, "buyer", "w-wait", int((t0 - waited) * 1000), text=PRIVATE_TEXT)
    chat.round("bf0", "w-fast", int((t0 - 60) * 1000), 3)  # answered: never listed
    produce(broker, guarded.topics["chat"], chat.take())
    tile = f"{SHOP}/w-wait"

    def waiting_api() -> dict[str, Any]:
        status, body = guarded.get(f"/api/v1/waiting?shop={SHOP}&agent=w-wait&token={READ_TOKEN}")
        assert status == 200, status
        result: dict[str, Any] = orjson.loads(body)
        return result

    guarded.wait_until(lambda: waiting_api()["total"] == len(WAITERS), 60, "the waiting buyers")
    assert guarded.get("/api/v1/waiting")[0] == 401
    assert guarded.get(f"/api/v1/waiting?token={TOKEN}")[0] == 401  # the TV's token: no ids

    # A board opened with the wall-board token: the tile says 3, a click says a token is needed.
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    tv = context.new_page()
    errors: list[str] = []
    tv.on("pageerror", lambda e: errors.append(str(e)))
    tv.goto(f"{url}/wallboard?token={TOKEN}")
    tv.wait_for_function(
        f"""() => {{ const t = document.querySelector('.tile[data-id="{tile}"]');
            return t && t.querySelector('.t-waiting').textContent === '{len(WAITERS)}'; }}""",
        timeout=20_000)
    tv.click(f'.tile[data-id="{tile}"]')
    tv.wait_for_selector("#drill-msg:not([hidden])", timeout=5_000)
    tv.wait_for_function(
        "() => document.querySelector('#drill-msg').textContent.includes('令牌')", timeout=5_000)
    html = tv.content()
    assert not any(b in html for b in WAITERS) and PRIVATE_TEXT not in html
    assert drill_rows(tv) == []
    shot(tv, "wallboard-drill-no-token-1080p.png")
    tv.keyboard.press("Escape")
    assert tv.is_hidden("#drill")
    context.close()

    # Opened with the read token: the list names each buyer, longest wait first.
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/wallboard?token={READ_TOKEN}")
    page.wait_for_selector(f'.tile[data-id="{tile}"]', timeout=20_000)
    assert not any(b in page.content() for b in WAITERS)  # nothing before the tap
    page.click(f'.tile[data-id="{tile}"]')
    page.wait_for_function(
        f"() => document.querySelectorAll('#drill-list .drill-row').length === {len(WAITERS)}",
        timeout=10_000)
    page.wait_for_timeout(600)  # a tick: the waits are written locally
    rows = drill_rows(page)
    elapsed = time.time() - t0
    assert [b for b, _ in rows] == sorted(WAITERS, key=lambda b: -WAITERS[b]), rows
    for buyer, wait in rows:
        expected = WAITERS[buyer] + elapsed
        assert abs(seconds(wait) - expected) <= 3, (buyer, wait, expected)
    assert seconds(rows[0][1]) > seconds(rows[1][1]) > seconds(rows[2][1])
    assert "晓雯" in page.inner_text("#drill-title") and "3" in page.inner_text("#drill-title")
    assert PRIVATE_TEXT not in page.content()  # ids only; never message text
    shot(page, "wallboard-drill-1080p.png")

    # Escape closes it and the ids leave the page; a tap anywhere closes it too.
    page.keyboard.press("Escape")
    assert page.is_hidden("#drill")
    assert not any(b in page.content() for b in WAITERS)
    page.click(f'.tile[data-id="{tile}"]')
    page.wait_for_selector("#drill-list .drill-row", timeout=10_000)
    page.mouse.click(5, 5)
    assert page.is_hidden("#drill") and not any(b in page.content() for b in WAITERS)

    # English strings like the rest of the board.
    en = context.new_page()
    en.goto(f"{url}/wallboard?lang=en&token={READ_TOKEN}")
    en.click(f'.tile[data-id="{tile}"]')
    en.wait_for_selector("#drill-list .drill-row", timeout=10_000)
    assert "buyers waiting" in en.inner_text("#drill-title")
    assert drill_rows(en)[0][0] == "bw-old" and drill_rows(en)[0][1].count(":") == 1
    context.close()
    assert not errors, errors
