"""A realistic, deterministic customer-service day for the demo, the tests and load.

`Simulator` models what a support room really sees, because KPIs only mean something against
traffic with the awkward parts in it: shops on three platforms, pre-/after-sales teams, fast and
slow agents (log-normal reply delays), buyers arriving in Poisson bursts and typing several
messages per round, bot auto-replies that must not count as replies, queueing and transfers,
unanswered buyers, ad spammers, orders that lag behind the chat, refunds, ratings, redelivered
duplicates, sub-second reordering, wrongly keyed messages and a little garbage. It is pure:
the same seed and start time give byte-identical output, so tests can assert on it.
`run_simulate` (live, paced on the wall clock) and `run_replay` (JSONL files) put it on Kafka.
"""

from __future__ import annotations

import base64
import heapq
import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, cast

import orjson

if TYPE_CHECKING:
    from streams.config import Settings

__all__ = [
    "DEFAULT_START_MS",
    "SimAgent",
    "SimMessage",
    "SimShop",
    "Simulator",
    "read_jsonl",
    "run_replay",
    "run_simulate",
    "write_jsonl",
]

TopicKind = Literal["chat", "orders", "ratings"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("chat", "orders", "ratings")
Speed = Literal["fast", "normal", "slow"]
T = TypeVar("T")

# 2024-11-11 09:00 Asia/Shanghai (Double 11): a fixed default keeps runs reproducible.
DEFAULT_START_MS = 1_731_286_800_000
CST = timezone(timedelta(hours=8))

# Target rates of the awkward cases (per chat message unless noted).
DUPLICATE_RATE = 0.01
JITTER_RATE = 0.03  # arrive up to 1 s late
BOT_OVERTAKES_RATE = 0.05  # per bot reply: arrives before the buyer message it answers
WRONG_KEY_RATE = 0.005
BAD_RATE = 0.002
AD_BUYER_RATE = 0.03  # per arriving buyer
SILENT_BUYER_RATE = 0.08  # per arriving buyer: orders without chatting
UNANSWERED_RATE = 0.05  # per chatting buyer
TRANSFER_RATE = 0.07  # per chatting buyer
QUEUED_RATE = 0.12  # per chatting buyer: starts unassigned, then a system transfer assigns
LAGGING_ORDER_RATE = 0.10  # per order: its events arrive minutes after their ts

SPEED_MEDIAN_S: dict[Speed, float] = {"fast": 8.0, "normal": 25.0, "slow": 60.0}
# Probability an inquiring pre-sales buyer orders, by the speed of the agent who served them.
CONVERSION: dict[Speed, float] = {"fast": 0.38, "normal": 0.27, "slow": 0.15}
# Rating score weights 1..5 by agent speed: slow service gets worse reviews.
SCORE_WEIGHTS: dict[Speed, tuple[float, ...]] = {
    "fast": (0.01, 0.02, 0.05, 0.22, 0.70),
    "normal": (0.03, 0.04, 0.13, 0.35, 0.45),
    "slow": (0.08, 0.10, 0.25, 0.32, 0.25),
}


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One Kafka record: `value` is the JSON bytes (or deliberately bad bytes), `ts` its arrival."""

    topic: TopicKind
    key: bytes
    value: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class SimShop:
    id: str
    platform: Literal["taobao", "jd", "pdd"]
    name: str
    prefix: str
    weight: float
    price_lo: float
    price_hi: float


@dataclass(frozen=True, slots=True)
class SimAgent:
    id: str
    name: str
    shop: str
    team: Literal["pre-sales", "after-sales"]
    speed: Speed
    sales_target: int | None


_SHOP_TEMPLATES: tuple[
    tuple[str, Literal["taobao", "jd", "pdd"], str, str, float, float, float], ...
] = (
    ("tmall-flagship", "taobao", "天猫旗舰店", "tm", 0.45, 39.0, 899.0),
    ("jd-store", "jd", "京东自营店", "jd", 0.32, 59.0, 2999.0),
    ("pdd-outlet", "pdd", "拼多多工厂店", "pdd", 0.23, 6.9, 129.0),
)
_NAMES = (
    "小美", "阿强", "小雪", "大伟", "晓婷", "小杰", "丽丽", "阿峰", "思思", "小宇", "佳佳", "阿明",
    "婉婷", "浩然", "小芳", "子涵", "欣怡", "俊杰", "雨萱", "梓轩", "诗涵", "一鸣", "可欣", "家豪",
)  # fmt: skip
_SPEED_CYCLE: tuple[Speed, ...] = ("fast", "normal", "slow", "normal", "fast", "normal")

# Buyer texts by intent; agent replies by team. Realistic enough for the ad filter and the eye.
_PRE_SALES_ASK = (
    "在吗？", "这个有现货吗", "多少钱？能便宜点吗", "什么时候发货？", "尺码怎么选，身高170体重65kg",
    "有优惠券吗", "包邮吗", "这款有黑色吗", "今天下单明天能到吗", "和另一款有什么区别",
    "是正品吗", "可以开发票吗", "双十一价格是多少", "买两件有优惠吗", "M码还有吗",
    "这个材质是纯棉的吗", "保修多久", "能送到新疆吗",
)  # fmt: skip
_AFTER_SALES_ASK = (
    "我要退货", "怎么换货？尺码小了", "快递到哪里了，三天了还没到", "收到的东西有破损",
    "退款什么时候到账", "少发了一件", "质量有问题，怎么处理", "七天无理由可以退吗",
    "发票怎么开", "退货运费谁出", "换货寄回的地址是哪里",
)  # fmt: skip
_FOLLOW_UP = (
    "好的谢谢", "那我拍了", "嗯嗯，知道了", "还有别的颜色吗", "可以再便宜点吗", "好的",
    "拍了，尽快发货哈", "那我再看看", "？", "人呢",
)  # fmt: skip
_PRE_SALES_REPLY = (
    "亲，在的，请问有什么可以帮您~", "亲，这款现货的哦，今天16点前下单当天发货",
    "亲，根据您的身高体重建议拿L码哦", "亲，现在下单可以领券立减20元",
    "亲，全国包邮（偏远地区除外）",
    "亲，我们是官方旗舰店，保证正品哦", "好的亲，已为您备注", "亲，两件9折，三件8折哦",
    "亲，支持开电子发票的", "亲，新疆可以发，大概5-7天到",
)  # fmt: skip
_AFTER_SALES_REPLY = (
    "亲，非常抱歉给您带来不便", "亲，您在订单页面申请退货就可以了，我这边马上审核",
    "亲，帮您查了物流，预计明天送达", "亲，麻烦提供一下破损的照片",
    "退款原路返回，1-3个工作日到账哦",
    "亲，七天无理由退换，运费险会补偿运费", "亲，已经为您登记补发了",
)  # fmt: skip
_BOT_REPLY = (
    "您好，欢迎光临{shop}，客服正在赶来，请稍候~",
    "亲，您好！智能助手为您服务，常见问题可以点击下方菜单哦",
    "亲，当前咨询人数较多，请您耐心等待，我们会尽快回复",
)
_AD_TEXTS = (
    "加微信{wx}领红包，日赚300", "兼职刷单，加微信{wx}，当天结算",
    "点击 https://t.cn/{code} 领取大额优惠券",
    "免费领手机，详情 http://bit.ly/{code}", "加微信{wx}进群，内部价拿货",
)  # fmt: skip
_OVERSIZE = "好评返现，五星好评截图发给客服返5元红包！"


def _choice(r: random.Random, items: tuple[T, ...]) -> T:
    return items[int(r.random() * len(items))]


def _lognormal_ms(r: random.Random, median_s: float, sigma: float) -> int:
    return max(300, int(1000 * median_s * math.exp(sigma * r.gauss(0.0, 1.0))))


class Simulator:
    """Deterministic traffic for `shops` shops; all randomness comes from `seed`."""

    def __init__(
        self,
        seed: int = 7,
        start_ms: int | None = None,
        shops: int = 3,
        agents_per_shop: int = 6,
        buyers_per_minute: float = 30.0,
    ) -> None:
        if shops < 1 or agents_per_shop < 2:
            raise ValueError("need at least 1 shop and 2 agents per shop (pre- and after-sales)")
        if not buyers_per_minute > 0 or not math.isfinite(buyers_per_minute):
            raise ValueError("buyers_per_minute must be a positive number")
        self.seed = seed
        self.start_ms = DEFAULT_START_MS if start_ms is None else int(start_ms)
        self.buyers_per_minute = float(buyers_per_minute)
        r = random.Random(f"kefu-roster:{seed}")
        shop_list: list[SimShop] = []
        agents: list[SimAgent] = []
        names = list(_NAMES)
        r.shuffle(names)
        for i in range(shops):
            sid, platform, cn, prefix, weight, lo, hi = _SHOP_TEMPLATES[i % 3]
            n = i // 3
            if n:
                sid, prefix, cn = f"{sid}-{n + 1}", f"{prefix}{n + 1}", f"{cn}{n + 1}号"
            shop_list.append(SimShop(sid, platform, cn, prefix, weight, lo, hi))
            pre = max(1, min(agents_per_shop - 1, round(agents_per_shop * 2 / 3)))
            for j in range(agents_per_shop):
                team: Literal["pre-sales", "after-sales"] = (
                    "pre-sales" if j < pre else "after-sales"
                )
                speed = _SPEED_CYCLE[(i + j) % len(_SPEED_CYCLE)]
                k = i * agents_per_shop + j
                name = names[k % len(names)] + (str(k // len(names) + 1) if k >= len(names) else "")
                target = None
                if team == "pre-sales":
                    target = int(hi * 200 * (1.5 if speed == "fast" else 1.0)) // 1000 * 1000
                agents.append(SimAgent(f"{prefix}-a{j + 1:02d}", name, sid, team, speed, target))
        self.shops: tuple[SimShop, ...] = tuple(shop_list)
        self.agents: tuple[SimAgent, ...] = tuple(agents)

    def messages(self, duration_s: float) -> Iterator[SimMessage]:
        """Records arriving in [start, start + duration_s), in arrival order (inf = endless)."""
        return _Run(self).messages(duration_s)

    def roster_toml(self) -> str:
        """The `[[agents]]` roster of the generated agents, for the demo config."""
        out = [f"# kefu-pulse simulator roster (seed {self.seed})\n"]
        for a in self.agents:
            out.append(
                f"\n[[agents]]  # {a.shop}, {a.speed} (~{SPEED_MEDIAN_S[a.speed]:.0f} s)\n"
                f"id = {_toml_str(a.id)}\nname = {_toml_str(a.name)}\nteam = {_toml_str(a.team)}\n"
            )
            if a.sales_target is not None:
                out.append(f"sales_target = {a.sales_target}\n")
        return "".join(out)

    def shops_toml(self) -> str:
        """`[shops.<id>]` tables selecting each shop's platform rule profile."""
        return "".join(
            f"\n[shops.{_toml_str(s.id)}]\nprofile = {_toml_str(s.platform)}\n" for s in self.shops
        )


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    n = abs(n)
    while True:
        n, d = divmod(n, 36)
        out = digits[d] + out
        if not n:
            return out


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, UTF-8 kept as is).
    return orjson.dumps(value).decode("utf-8")


# ---------------------------------------------------------------------------------------------
# One run: arrivals, sessions, the arrival-ordered heap


class _Run:
    """Mutable state of one `messages()` call, so the Simulator itself stays reusable."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.heap: list[tuple[int, int, SimMessage]] = []
        self.seq = 0
        # Recently seen buyers per shop, who may come back, and when each one's chat ended
        # (insertion-ordered and capped, so an endless live run does not grow without bound).
        self.returning: dict[str, deque[str]] = {s.id: deque(maxlen=200) for s in sim.shops}
        self.busy_until: dict[tuple[str, str], int] = {}
        # Message ids must differ between live runs (the worker drops repeated ids).
        self.tag = _base36(sim.start_ms)
        self.by_team: dict[tuple[str, str], tuple[SimAgent, ...]] = {}
        for s in sim.shops:
            for team in ("pre-sales", "after-sales"):
                self.by_team[(s.id, team)] = tuple(
                    a for a in sim.agents if a.shop == s.id and a.team == team
                )
        self.weights = [s.weight for s in sim.shops]

    def messages(self, duration_s: float) -> Iterator[SimMessage]:
        end = self.sim.start_ms + duration_s * 1000.0
        heap = self.heap
        for n, t in enumerate(self._arrivals()):
            if t >= end:
                break
            while heap and heap[0][0] <= t:
                yield heapq.heappop(heap)[2]
            self._session(n, t)
        while heap:
            msg = heapq.heappop(heap)[2]
            if msg.ts >= end:
                break
            yield msg

    def _arrivals(self) -> Iterator[int]:
        """Non-homogeneous Poisson arrivals (thinning): a 30-min wave plus promotion bursts."""
        sim = self.sim
        r = random.Random(f"kefu-arrivals:{sim.seed}")
        base = sim.buyers_per_minute / 60_000.0  # per ms
        peak = 1.35 * 2.5
        t = float(sim.start_ms)
        burst_start = t + r.expovariate(1 / 720_000)
        burst_end = burst_start + r.uniform(60_000, 180_000)
        while True:
            t += r.expovariate(base * peak)
            while t >= burst_end:
                burst_start = burst_end + r.expovariate(1 / 720_000)
                burst_end = burst_start + r.uniform(60_000, 180_000)
            wave = 1.0 + 0.35 * math.sin(2 * math.pi * (t - sim.start_ms) / 1_800_000)
            factor = wave * (2.5 if t >= burst_start else 1.0)
            if r.random() * peak < factor:
                yield int(t)

    # -- emission -------------------------------------------------------------------------

    def _push(self, arrival: int, msg: SimMessage) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (arrival, self.seq, msg))

    def _session(self, n: int, t0: int) -> None:
        r = random.Random(f"kefu-session:{self.sim.seed}:{self.sim.start_ms}:{n}")
        shop = r.choices(self.sim.shops, self.weights)[0]
        roll = r.random()
        is_ad = roll < AD_BUYER_RATE
        buyer = self._buyer(r, shop, t0, returning=not is_ad)
        s = _Session(self, r, shop, buyer, n)
        if is_ad:
            s.ad(t0)
        elif roll < AD_BUYER_RATE + SILENT_BUYER_RATE:
            s.order(t0)
        else:
            s.chat(t0)
        s.flush()
        busy = self.busy_until
        busy.pop((shop.id, buyer), None)
        busy[(shop.id, buyer)] = max(t0, s.last_chat_ts)
        if len(busy) > 250 * len(self.sim.shops):  # older buyers have left every pool
            del busy[next(iter(busy))]
        if not is_ad:  # an ad buyer stays one all day: never bring them back
            self.returning[shop.id].append(buyer)

    def _buyer(self, r: random.Random, shop: SimShop, t0: int, returning: bool) -> str:
        pool = self.returning[shop.id]
        if returning and pool and r.random() < 0.10:
            buyer = pool[int(r.random() * len(pool))]
            # Never interleave two generated sessions of one buyer.
            if self.busy_until.get((shop.id, buyer), t0) + 60_000 < t0:
                return buyer
        if shop.platform == "taobao":
            return f"tb{r.randrange(10**8, 10**10)}"
        if shop.platform == "jd":
            return f"jd_{r.randrange(16**10):010x}"
        return f"pdd{r.randrange(10**10):010d}"


class _Session:
    """One buyer's visit: builds chat, order and rating events and hands them to the run."""

    def __init__(self, run: _Run, r: random.Random, shop: SimShop, buyer: str, n: int) -> None:
        self.run = run
        self.r = r
        self.shop = shop
        self.buyer = buyer
        self.n = n
        self.key = f"{shop.id}:{buyer}".encode()
        self.msg_no = 0
        self.last_chat_ts = 0
        self.out: list[tuple[int, SimMessage]] = []

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
    ) -> None:
        r = self.r
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
        if self.shop.platform == "jd":
            obj["channel"] = "dongdong"  # unknown fields must be ignored by the worker
        self.last_chat_ts = max(self.last_chat_ts, ts)
        if late is None:
            late = r.randrange(50, 950) if r.random() < JITTER_RATE else 0
        arrival = ts + late
        key = self.buyer.encode() if r.random() < WRONG_KEY_RATE else self.key
        self._emit("chat", obj, arrival, key)
        if r.random() < DUPLICATE_RATE:  # a producer retry / redelivery: same bytes
            again = arrival + r.randrange(200, 20_000)
            self.out.append((again, replace(self.out[-1][1], ts=again)))
        if r.random() < BAD_RATE:
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
            self.run._push(arrival, msg)

    def _agent_of(self, team: str, avoid: SimAgent | None = None) -> SimAgent:
        agents = (
            self.run.by_team[(self.shop.id, team)] or self.run.by_team[(self.shop.id, "pre-sales")]
        )
        choices = tuple(a for a in agents if a is not avoid) or agents
        return _choice(self.r, choices)

    def _delay(self, agent: SimAgent) -> int:
        sigma = 0.55
        # Nobody types a reply in under 2 s (and the bot always answers first).
        ms = max(2_000, _lognormal_ms(self.r, SPEED_MEDIAN_S[agent.speed], sigma))
        return ms * 4 if self.r.random() < 0.03 else ms  # the odd distracted moment

    # -- session kinds --------------------------------------------------------------------

    def ad(self, t0: int) -> None:
        r = self.r
        agent = self._agent_of("pre-sales")
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

    def chat(self, t0: int) -> None:
        r = self.r
        team = "after-sales" if r.random() < 0.3 else "pre-sales"
        asks = _AFTER_SALES_ASK if team == "after-sales" else _PRE_SALES_ASK
        agent = self._agent_of(team)
        unanswered = r.random() < UNANSWERED_RATE
        transfer_at = 1 + int(r.random() * 3) if r.random() < TRANSFER_RATE else -1
        rounds = 1
        while rounds < 6 and r.random() < 0.55:
            rounds += 1
        # Who the buyer is assigned to, from when: buyer messages carry it (null while queued).
        holders: list[tuple[int, SimAgent | None]] = [(t0, agent)]
        if r.random() < QUEUED_RATE:  # queued first; a system transfer assigns an agent
            holders = [(t0, None), (t0 + r.randrange(3_000, 40_000), agent)]

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
                agent = self._agent_of(new_team, avoid=agent)
                holders.append((t + r.randrange(5_000, 40_000), agent))
                self._chat(holders[-1][0], "system", agent, "会话已转接", "transfer")
            assigned_at = holders[-1][0]
            reply_at = None
            if not (unanswered and i == 0):
                reply_at = max(round_start, assigned_at) + self._delay(agent)
            # The buyer keeps typing until the reply comes (a round does not restart).
            extra = int(r.random() < 0.45) + int(r.random() < 0.2) + int(r.random() < 0.1)
            tb = t
            for _ in range(extra):
                tb += r.randrange(2_000, 12_000)
                if reply_at is not None and tb >= reply_at - 500:
                    break
                self._chat(tb, "buyer", holder(tb), _choice(r, _FOLLOW_UP))
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
        if r.random() < 0.85:
            closer = "agent" if r.random() < 0.6 else "system"
            end = self.last_chat_ts + r.randrange(20_000, 120_000)
            self._chat(end, closer, agent, None, "close")
            if r.random() < 0.35:
                self._rating(end + r.randrange(5_000, 300_000), agent)
        if team == "pre-sales" and served:
            if r.random() < CONVERSION[served[-1][1].speed]:
                reply_ts = _choice(r, tuple(ts for ts, _ in served))
                self.order(reply_ts + _lognormal_ms(r, 90.0, 0.8))
        elif served and r.random() < 0.05:
            self.order(served[-1][0] + _lognormal_ms(r, 120.0, 0.8))

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


def _rfc3339(ts_ms: int, tz: timezone) -> str:
    dt = datetime.fromtimestamp(ts_ms // 1000, tz)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ms % 1000:03d}"
    return text + ("Z" if tz is UTC else dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:])


# ---------------------------------------------------------------------------------------------
# JSONL files


def write_jsonl(messages: Iterable[SimMessage], path: str | Path | IO[bytes]) -> int:
    """Write `{"topic","key","value"}` lines; `value` is the event object, or the bad bytes.

    Bad values are written as a string (or `value_base64` when not UTF-8) so that `run_replay`
    reproduces the exact bytes; objects are inlined only when re-encoding gives the same bytes.
    """
    if isinstance(path, str | Path):
        with open(path, "wb") as fh:
            return write_jsonl(messages, fh)
    count = 0
    for msg in messages:
        line: dict[str, Any] = {"topic": msg.topic}
        try:
            line["key"] = msg.key.decode("utf-8")
        except UnicodeDecodeError:
            line["key_base64"] = base64.b64encode(msg.key).decode("ascii")
        line.update(_value_field(msg.value))
        path.write(orjson.dumps(line))
        path.write(b"\n")
        count += 1
    return count


def _value_field(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is dict and orjson.dumps(obj) == value:
        return {"value": obj}
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def _infer_topic(obj: dict[str, Any]) -> TopicKind:
    if "order_id" in obj:
        return "orders"
    if "score" in obj:
        return "ratings"
    return "chat"


def _derived_key(obj: Any) -> bytes | None:
    if type(obj) is dict:
        shop, buyer = obj.get("shop_id"), obj.get("buyer_id")
        if type(shop) is str and type(buyer) is str:
            return f"{shop}:{buyer}".encode()
    return None


def _parse_line(line: bytes) -> tuple[TopicKind, bytes | None, bytes]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "chat", None, line  # garbage still goes in: the worker dead-letters it
    if type(obj) is not dict:
        return "chat", None, line
    topic = obj.get("topic")
    if topic in TOPIC_KINDS and ("value" in obj or "value_base64" in obj):
        if "value_base64" in obj:
            value = base64.b64decode(obj["value_base64"])
        elif type(obj["value"]) is str:
            value = obj["value"].encode("utf-8")
        else:
            value = orjson.dumps(obj["value"])
        key: bytes | None
        if type(obj.get("key")) is str:
            key = obj["key"].encode("utf-8")
        elif type(obj.get("key_base64")) is str:
            key = base64.b64decode(obj["key_base64"])
        else:
            key = _derived_key(obj["value"])
        return cast(TopicKind, topic), key, value
    return _infer_topic(obj), _derived_key(obj), line


def read_jsonl(path: str | Path | IO[bytes]) -> Iterator[tuple[TopicKind, bytes | None, bytes]]:
    """(topic kind, key, value) per non-blank line: envelopes as written, bare events inferred."""
    if isinstance(path, str | Path):
        if str(path) == "-":
            yield from read_jsonl(sys.stdin.buffer)
            return
        with open(path, "rb") as fh:
            yield from read_jsonl(fh)
        return
    for raw in path:
        line = raw.strip()
        if line:
            yield _parse_line(line)


# ---------------------------------------------------------------------------------------------
# Kafka


def _topics(settings: Settings) -> dict[TopicKind, str]:
    return {
        "chat": settings.topic_chat,
        "orders": settings.topic_orders,
        "ratings": settings.topic_ratings,
    }


def _producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from streams.broker import ensure_topics, kafka_client_kwargs

    topics = _topics(settings)
    ensure_topics(
        settings.bootstrap, {t: settings.partitions for t in topics.values()}, settings=settings
    )
    return KafkaProducer(**kafka_client_kwargs(settings), linger_ms=5, acks="all", retries=5)


class _Progress:
    """Prints a one-line status to stderr every few seconds, with the rate since the last one."""

    def __init__(self, label: str, enabled: bool, every_s: float = 5.0) -> None:
        self.label = label
        self.enabled = enabled
        self.every_s = every_s
        self.last_t = time.monotonic()
        self.last_total = 0
        self.next = self.last_t + every_s
        self.by_topic: Counter[str] = Counter()

    def tick(self, topic: str, extra: Callable[[], str] | None = None) -> None:
        self.by_topic[topic] += 1
        if self.enabled and time.monotonic() >= self.next:
            self.report(extra() if extra else "")

    def report(self, extra: str = "") -> None:
        now = time.monotonic()
        total = sum(self.by_topic.values())
        rate = (total - self.last_total) / max(now - self.last_t, 1e-9)
        self.last_t, self.last_total, self.next = now, total, now + self.every_s
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.by_topic.items()))
        print(
            f"{self.label}: {total} events ({parts}; {rate:.0f}/s){extra}",
            file=sys.stderr,
            flush=True,
        )


class _Errors:
    def __init__(self) -> None:
        self.count = 0
        self.first: BaseException | None = None

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = exc

    def check(self) -> None:
        if self.count:
            raise RuntimeError(f"{self.count} events could not be produced: {self.first!r}")


@lru_cache(maxsize=16)
def _events_per_buyer_minute(seed: int) -> float:
    """Records per minute per unit of buyers_per_minute, measured on an hour of this seed."""
    sim = Simulator(seed=seed, buyers_per_minute=10.0)
    count = sum(1 for _ in sim.messages(3600.0))
    return count / 60.0 / 10.0


def run_simulate(
    settings: Settings,
    *,
    rate: float | None,
    seed: int,
    duration: float | None,
    speedup: float = 1.0,
    progress: bool = True,
    warmup: float = 300.0,
    agents_per_shop: int = 6,
) -> int:
    """Produce live traffic paced on the wall clock until `duration` (wall seconds) or Ctrl-C.

    Event time is the wall clock; with `speedup` > 1 simulated time runs that much faster (event
    timestamps then run ahead of it: use `KEFU_CLOCK=event`). A support room is never empty
    when the monitor starts, and sessions take minutes to ramp up, so the last `warmup`
    simulated seconds before now are sent at once first: KPIs have data from the first scrape
    and `rate` (approximate events/s) holds from the start. Returns the number of records sent.
    """
    if speedup <= 0 or not math.isfinite(speedup):
        raise ValueError("speedup must be a positive number")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    bpm = 30.0
    if rate is not None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        bpm = rate * 60.0 / _events_per_buyer_minute(seed) / speedup
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - int(warmup * 1000)
    sim = Simulator(
        seed=seed, start_ms=start_ms, buyers_per_minute=bpm, agents_per_shop=agents_per_shop
    )
    topics = _topics(settings)
    producer = _producer(settings)
    errors = _Errors()
    report = _Progress("simulate", progress)
    t0 = time.monotonic()
    sim_seconds = math.inf if duration is None else warmup + duration * speedup
    sent = 0
    sim_now_ms = start_ms

    def sim_clock() -> str:
        when = datetime.fromtimestamp(sim_now_ms / 1000, CST).strftime("%H:%M:%S")
        return f", simulated {when} +08:00"

    try:
        for msg in sim.messages(sim_seconds):
            delay = t0 + (msg.ts - now_ms) / 1000.0 / speedup - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.send(
                topics[msg.topic], value=msg.value, key=msg.key, timestamp_ms=msg.ts
            ).add_errback(errors)
            sent += 1
            sim_now_ms = msg.ts
            report.tick(msg.topic, sim_clock)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(timeout=30)
        producer.close(timeout=5)
    if progress:
        report.report(" - done")
    errors.check()
    return sent


def run_replay(
    settings: Settings, path: str | Path, *, rate: float | None = None, progress: bool = True
) -> int:
    """Produce a JSONL file (`-` = stdin) into the topics, keeping event times as they are.

    Lines are envelopes as `write_jsonl` writes them or bare events (topic inferred, key
    `{shop_id}:{buyer_id}`); bad lines are produced too, for the worker to dead-letter. `rate`
    caps events/s (None = as fast as possible). Raises if any record could not be produced.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    topics = _topics(settings)
    producer = _producer(settings)
    errors = _Errors()
    report = _Progress("replay", progress)
    t0 = time.monotonic()
    sent = 0
    try:
        for topic, key, value in read_jsonl(path):
            if rate is not None:
                delay = t0 + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topics[topic], value=value, key=key).add_errback(errors)
            sent += 1
            report.tick(topic)
    finally:
        producer.flush(timeout=60)
        producer.close(timeout=5)
    if progress:
        report.report(" - done")
    errors.check()
    return sent
