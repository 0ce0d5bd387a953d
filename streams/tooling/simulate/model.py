"""What the simulator is made of: record, shop and agent types, rates, and text pools.

Apart from the generator so the JSONL and Kafka modules (and the tests) can name the types
without pulling in the day generator itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, TypeVar

import orjson

# "agents" (status events, `kefu.agents`) only comes from profiles with a status script.
TopicKind = Literal["chat", "orders", "ratings", "agents"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("chat", "orders", "ratings", "agents")
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



def _rfc3339(ts_ms: int, tz: timezone) -> str:
    dt = datetime.fromtimestamp(ts_ms // 1000, tz)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ms % 1000:03d}"
    return text + ("Z" if tz is UTC else dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:])

