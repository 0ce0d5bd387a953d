"""One buyer's visit: the chat, order and rating events, with the awkward cases mixed in.

It writes into a `Sink` (the run) rather than knowing the run's class, so this module does not
import the simulator that drives it.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from streams.tooling.simulate.model import (
    _AD_TEXTS,
    _AFTER_SALES_ASK,
    _AFTER_SALES_REPLY,
    _BOT_REPLY,
    _FOLLOW_UP,
    _OVERSIZE,
    _PRE_SALES_ASK,
    _PRE_SALES_REPLY,
    BOT_OVERTAKES_RATE,
    CONVERSION,
    CST,
    LAGGING_ORDER_RATE,
    SCORE_WEIGHTS,
    SimAgent,
    SimMessage,
    SimShop,
    TopicKind,
    _choice,
    _lognormal_ms,
    _rfc3339,
)
from streams.tooling.simulate.profile import Profile

# The buyer's answer to "was your problem solved?" (问题是否解决), by the score they gave.
RESOLVED_BY_SCORE = {1: 0.1, 2: 0.2, 3: 0.5, 4: 0.85, 5: 0.95}


class Sink(Protocol):
    """What a visit needs of its run: a tag for unique message ids, the teams, the heap, the
    profile's rates, each agent's reply speed and the status script's answers."""

    tag: str
    by_team: dict[tuple[str, str], tuple[SimAgent, ...]]
    profile: Profile
    median_s: dict[str, float]

    def push(self, arrival: int, msg: SimMessage) -> None: ...

    def routable(self, agent: SimAgent, ts: int) -> bool: ...

    def hold(self, agent: SimAgent, asked_ms: int, reply_ms: int, r: random.Random) -> int: ...


class _Session:
    """One buyer's visit: builds chat, order and rating events and hands them to the run."""

    def __init__(self, run: Sink, r: random.Random, shop: SimShop, buyer: str, n: int) -> None:
        self.run = run
        self.r = r
        self.shop = shop
        self.buyer = buyer
        self.n = n
        self.key = f"{shop.id}:{buyer}".encode()
        self.msg_no = 0
        self.last_chat_ts = 0
        self.out: list[tuple[int, SimMessage]] = []
        self.profile = run.profile

    # -- low level --------------------------------------------------------------------------

    def _emit(self, topic: TopicKind, obj: dict[str, Any], arrival: int, key: bytes) -> None:
        self.out.append((arrival, SimMessage(topic, key, orjson.dumps(obj), arrival)))

    def _chat(
        self,
        ts: int,
        sender: str,
        agent: SimAgent | None,
        text: str | None = None,
        event: str = "message",
        late: int | None = None,
        resolved: bool | None = None,
    ) -> None:
        r = self.r
        rates = self.profile
        self.msg_no += 1
        obj: dict[str, Any] = {
            "message_id": f"{self.shop.prefix}-{self.run.tag}-{self.n:07d}-{self.msg_no:03d}",
            "shop_id": self.shop.id,
            "buyer_id": self.buyer,
            "sender": sender,
            "agent_id": agent.id if agent else None,
            "ts": ts,
        }
        if event != "message" or self.shop.platform == "taobao":
            obj["event"] = event
        if text is not None:
            obj["text"] = text
        if resolved is not None:
            obj["resolved"] = resolved
        if self.shop.platform == "jd":
            obj["channel"] = "dongdong"  # unknown fields must be ignored by the worker
        self.last_chat_ts = max(self.last_chat_ts, ts)
        if late is None:
            late = r.randrange(50, 950) if r.random() < rates.jitter_rate else 0
        arrival = ts + late
        key = self.buyer.encode() if r.random() < rates.wrong_key_rate else self.key
        self._emit("chat", obj, arrival, key)
        if r.random() < rates.duplicate_rate:  # a producer retry / redelivery: same bytes
            again = arrival + r.randrange(200, 20_000)
            self.out.append((again, replace(self.out[-1][1], ts=again)))
        if r.random() < rates.bad_rate:
            self._bad(obj, arrival + 1)

    def _bad(self, good: dict[str, Any], arrival: int) -> None:
        r = self.r
        kind = int(r.random() * 4)
        obj = dict(good, message_id=f"{good['message_id']}-x")
        if kind == 0:  # a truncated write: never a complete JSON object
            raw = orjson.dumps(obj)
            value = raw[: max(1, int(len(raw) * r.uniform(0.3, 0.9)))]
        elif kind == 1:
            del obj["shop_id"]
            value = orjson.dumps(obj)
        elif kind == 2:
            obj["sender"] = "robot"
            value = orjson.dumps(obj)
        else:
            obj["text"] = _OVERSIZE * (8192 // len(_OVERSIZE.encode()) + 1)
            value = orjson.dumps(obj)
        self.out.append((arrival, SimMessage("chat", self.key, value, arrival)))

    def flush(self) -> None:
        for arrival, msg in self.out:
            self.run.push(arrival, msg)

    def _agent_of(self, team: str, at: int, avoid: SimAgent | None = None) -> SimAgent:
        """The router's pick: anyone of the team who is not `avoid` and takes new buyers."""
        agents = (
            self.run.by_team[(self.shop.id, team)] or self.run.by_team[(self.shop.id, "pre-sales")]
        )
        choices = tuple(a for a in agents if a is not avoid) or agents
        choices = tuple(a for a in choices if self.run.routable(a, at)) or choices
        return _choice(self.r, choices)

    def _delay(self, agent: SimAgent) -> int:
        rates = self.profile
        # Nobody types a reply in under 2 s (and the bot always answers first).
        ms = max(2_000, _lognormal_ms(self.r, self.run.median_s[agent.id], rates.reply_sigma))
        # The odd distracted moment.
        return ms * 4 if self.r.random() < rates.distracted_rate else ms

    # -- session kinds --------------------------------------------------------------------

    def ad(self, t0: int) -> None:
        r = self.r
        agent = self._agent_of("pre-sales", t0)
        wx = f"{_choice(r, ('vx', 'wx', 'hb', 'qq'))}{r.randrange(10**5, 10**8)}"
        code = f"{r.randrange(16**6):06x}"
        t = t0
        for _ in range(1 + (r.random() < 0.5)):
            self._chat(t, "buyer", agent, _choice(r, _AD_TEXTS).format(wx=wx, code=code))
            t += r.randrange(1_000, 8_000)
        if r.random() < 0.3:
            t += self._delay(agent)
            self._chat(t, "agent", agent, "亲，请勿发送广告信息")
        if r.random() < 0.5:
            self._chat(t + r.randrange(5_000, 60_000), "agent", agent, None, "close")

    def chat(self, t0: int, forced: SimAgent | None = None) -> None:
        """A chatting buyer; `forced`: the agent the router sends them to (a scripted case)."""
        r = self.r
        team = "after-sales" if r.random() < 0.3 else "pre-sales"
        if forced is not None:
            team = forced.team
        asks = _AFTER_SALES_ASK if team == "after-sales" else _PRE_SALES_ASK
        rates = self.profile
        agent = self._agent_of(team, t0) if forced is None else forced
        unanswered = r.random() < rates.unanswered_rate
        transfer_at = 1 + int(r.random() * 3) if r.random() < rates.transfer_rate else -1
        rounds = 1
        while rounds < 6 and r.random() < 0.55:
            rounds += 1
        # Who the buyer is assigned to, from when: buyer messages carry it (null while queued).
        holders: list[tuple[int, SimAgent | None]] = [(t0, agent)]
        if r.random() < rates.queued_rate:  # queued first; a system transfer assigns an agent
            holders = [(t0, None), (t0 + r.randrange(*rates.queue_ms), agent)]

        def holder(ts: int) -> SimAgent | None:
            return next(a for since, a in reversed(holders) if since <= ts)

        served: list[tuple[int, SimAgent]] = []  # (ts, agent) of every human reply
        t = t0
        for i in range(rounds):
            round_start = t
            first_text = _choice(r, asks) if i == 0 else _choice(r, _FOLLOW_UP + asks)
            # The shop's bot answers the first message at once; its reply travels another path
            # and now and then overtakes the buyer's message (arrives < 1 s out of order).
            bot_delay = r.randrange(300, 1_500) if i == 0 and r.random() < 0.75 else None
            late = None
            if bot_delay is not None and r.random() < BOT_OVERTAKES_RATE:
                bot_delay = r.randrange(300, 700)
                late = bot_delay + r.randrange(20, 250)
            self._chat(t, "buyer", holder(t), first_text, late=late)
            if i == 0:
                if bot_delay is not None:
                    bot = _choice(r, _BOT_REPLY).format(shop=self.shop.name)
                    self._chat(t + bot_delay, "bot", holder(t), bot)
                if len(holders) > 1:
                    self._chat(holders[1][0], "system", agent, "已为您接入人工客服", "transfer")
            if i == transfer_at and served:
                # Transferred mid-round: the new agent answers, the old one does not count it.
                new_team = "after-sales" if r.random() < 0.6 else team
                agent = self._agent_of(new_team, t, avoid=agent)
                holders.append((t + r.randrange(5_000, 40_000), agent))
                self._chat(holders[-1][0], "system", agent, "会话已转接", "transfer")
            assigned_at = holders[-1][0]
            reply_at = on_time = None
            if not (unanswered and i == 0):
                asked = max(round_start, assigned_at)
                on_time = asked + self._delay(agent)
                reply_at = self.run.hold(agent, asked, on_time, r)
            # The buyer keeps typing until the reply comes (a round does not restart).
            extra = int(r.random() < 0.45) + int(r.random() < 0.2) + int(r.random() < 0.1)
            tb = t
            for _ in range(extra):
                tb += r.randrange(2_000, 12_000)
                if reply_at is not None and tb >= reply_at - 500:
                    break
                self._chat(tb, "buyer", holder(tb), _choice(r, _FOLLOW_UP))
            if reply_at is not None and reply_at != on_time:  # held: the buyer nags now and then
                tb = max(tb, asked)
                while (tb := tb + r.randrange(30_000, 80_000)) < reply_at - 500:
                    self._chat(tb, "buyer", holder(tb), _choice(r, ("人呢？", "？", "在吗")))
            if reply_at is None:
                self._unanswered(max(tb, assigned_at), agent)
                return
            replies = _AFTER_SALES_REPLY if agent.team == "after-sales" else _PRE_SALES_REPLY
            ta = reply_at
            for k in range(1 + int(r.random() < 0.35) + int(r.random() < 0.1)):
                if k:
                    ta += r.randrange(3_000, 20_000)
                self._chat(ta, "agent", agent, _choice(r, replies))
                served.append((ta, agent))
            t = ta + _lognormal_ms(r, 20.0, 0.7)
        if r.random() < rates.close_rate:
            closer = "agent" if r.random() < 0.6 else "system"
            end = self.last_chat_ts + r.randrange(20_000, 120_000)
            self._chat(end, closer, agent, None, "close", resolved=self._mark())
            if r.random() < 0.35:
                self._rating(end + r.randrange(5_000, 300_000), agent)
        if team == "pre-sales" and served:
            if r.random() < CONVERSION[served[-1][1].speed]:
                reply_ts = _choice(r, tuple(ts for ts, _ in served))
                self.order(reply_ts + _lognormal_ms(r, 90.0, 0.8))
        elif served and r.random() < 0.05:
            self.order(served[-1][0] + _lognormal_ms(r, 120.0, 0.8))

    def _mark(self) -> bool | None:
        """The agent's resolution mark on a close, when the profile sends marks (else none)."""
        rates = self.profile
        if not rates.close_mark_rate or self.r.random() >= rates.close_mark_rate:
            return None
        return self.r.random() < rates.resolved_rate

    def _unanswered(self, t: int, agent: SimAgent) -> None:
        r = self.r
        if r.random() < 0.5:  # timed out by the platform
            end = t + r.randrange(600_000, 900_000)
            self._chat(end, "system", agent, None, "close")
            if r.random() < 0.2:
                self._rating(end + r.randrange(5_000, 120_000), agent, score=1 + (r.random() < 0.4))

    def _rating(self, ts: int, agent: SimAgent, score: int | None = None) -> None:
        r = self.r
        if score is None:
            score = r.choices((1, 2, 3, 4, 5), SCORE_WEIGHTS[agent.speed])[0]
        obj: dict[str, Any] = {
            "shop_id": self.shop.id,
            "buyer_id": self.buyer,
            "agent_id": agent.id,
            "score": score,
            "ts": _rfc3339(ts, UTC) if self.shop.platform == "pdd" else ts,
        }
        marks = self.profile.rating_mark_rate
        if marks and r.random() < marks:  # the buyer's word, which overrides the agent's mark
            obj["resolved"] = r.random() < RESOLVED_BY_SCORE[score]
        self._emit("ratings", obj, ts, self.key)

    # -- orders -----------------------------------------------------------------------------

    def order(self, created: int) -> None:
        """created -> paid (-> refunded) or cancelled; the whole lifecycle may lag minutes."""
        r = self.r
        shop = self.shop
        price = math.exp(r.uniform(math.log(shop.price_lo), math.log(shop.price_hi)))
        amount_cents = int(price * (1 + (r.random() < 0.2))) * 100 + _choice(r, (0, 0, 90, 50, 99))
        lag = r.randrange(60_000, 300_000) if r.random() < LAGGING_ORDER_RATE else 0
        if shop.platform == "taobao":
            order_id = str(r.randrange(10**18, 10**19))
        elif shop.platform == "jd":
            order_id = str(r.randrange(10**11, 10**12))
        else:
            day = datetime.fromtimestamp(created / 1000, CST).strftime("%y%m%d")
            order_id = f"{day}-{r.randrange(10**14, 10**15)}"
        self._order(order_id, "created", amount_cents, created, lag)
        if r.random() < 0.86:
            paid = created + r.randrange(10_000, 180_000)
            self._order(order_id, "paid", amount_cents, paid, lag)
            if r.random() < 0.08:
                refund = (
                    amount_cents if r.random() < 0.7 else amount_cents * r.randrange(1, 9) // 10
                )
                self._order(
                    order_id, "refunded", refund, paid + r.randrange(180_000, 1_800_000), lag
                )
        else:
            self._order(
                order_id, "cancelled", amount_cents, created + r.randrange(300_000, 900_000), lag
            )

    def _order(self, order_id: str, status: str, cents: int, ts: int, lag: int) -> None:
        shop = self.shop
        amount: str | float
        if shop.platform == "jd":  # JD's integration sends numbers and RFC 3339 times
            amount = cents / 100
            ts_value: int | str = _rfc3339(ts, CST)
        else:
            amount = f"{cents // 100}.{cents % 100:02d}"
            ts_value = ts
        obj = {
            "order_id": order_id,
            "shop_id": shop.id,
            "buyer_id": self.buyer,
            "status": status,
            "amount": amount,
            "ts": ts_value,
        }
        self._emit("orders", obj, ts + lag, self.key)

