"""Value types shared by every layer: validated input events and exported KPI snapshots.

Plain dataclasses with no Kafka or Faust imports, so the domain logic, the oracle in the tests
and the exporters all speak the same language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from streams.domain.keys import agent_key
from streams.domain.keys import conversation_key as state_key

Sender = Literal["buyer", "agent", "bot", "system"]
ChatKind = Literal["message", "transfer", "close"]
OrderStatus = Literal["created", "paid", "refunded", "cancelled"]

SENDERS: frozenset[str] = frozenset({"buyer", "agent", "bot", "system"})
CHAT_KINDS: frozenset[str] = frozenset({"message", "transfer", "close"})
ORDER_STATUSES: frozenset[str] = frozenset({"created", "paid", "refunded", "cancelled"})
# Each sender and chat kind mapped to one shared string. Why: a decoded event's words are new
# strings of their own, and a conversation keeps its recent events (the reorder tail; a quiet
# conversation its last one until it is swept): two such words cost ~110 bytes an event.
WORDS: dict[str, str] = {word: word for word in (*sorted(SENDERS), *sorted(CHAT_KINDS))}
AgentStatus = Literal["online", "busy", "away", "offline"]
# Agent statuses (kefu.agents), in export order; the index is the status code facts carry.
STATUSES: tuple[str, ...] = ("online", "busy", "away", "offline")
MAX_CONCURRENT_RANGE = (1, 200)  # buyers an agent may serve at once (event or roster)

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
WINDOWS: tuple[str, ...] = ("5m", "1h", "today")
LEVELS: tuple[str, ...] = ("warning", "critical", "slow")


class ConversationEvent:
    """The keys of the conversation an input event belongs to (chat, order and rating alike:
    orders and ratings meet their buyer's chat on one partition and in one state)."""

    __slots__ = ()
    shop_id: str
    buyer_id: str

    @property
    def conversation_key(self) -> str:
        """The Kafka key producers use, `"{shop}:{buyer}"`: it picks the partition only.

        Ids may hold `:`, so two conversations can share it; state is keyed by `state_key`.
        """
        return f"{self.shop_id}:{self.buyer_id}"

    @property
    def routing_key(self) -> bytes:
        return self.conversation_key.encode()

    @property
    def state_key(self) -> str:
        """The key of per-conversation state: unambiguous (see `keys`)."""
        return state_key(self.shop_id, self.buyer_id)


@dataclass(frozen=True, slots=True)
class ChatEvent(ConversationEvent):
    """One validated `kefu.chat` event (docs/interfaces.md). `ts` is epoch milliseconds (UTC)."""

    message_id: str
    shop_id: str
    buyer_id: str
    sender: Sender
    agent_id: str | None
    ts: int
    event: ChatKind = "message"
    text: str | None = None
    resolved: bool | None = None  # on a `close`: the agent's or the system's resolution mark


@dataclass(slots=True)
class WindowKpis:
    """Response KPIs of one agent in one window (`5m`, `1h`, `today`).

    Ratios and means are None when their denominator is zero: "no data" must not look like 0 %.
    """

    rounds: int = 0
    rt_sum_ms: int = 0
    rt_mean: float | None = None
    rt_quantiles: dict[float, float] = field(default_factory=dict)
    first_rounds: int = 0
    frt_mean: float | None = None
    frt_quantiles: dict[float, float] = field(default_factory=dict)
    within: dict[str, int] = field(default_factory=dict)  # level -> rounds answered within line
    received: int = 0
    replied: int = 0
    missed: int = 0  # 未回复人数: received buyers the agent has not replied to in the window
    agent_messages: int = 0
    buyer_messages: int = 0
    # business (docs/contract.md); money in 1/10000 units of the shop's currency, exact
    inquiries: int = 0  # 询单人数: distinct buyers who got a human reply
    converted: int = 0  # of those, buyers who paid an order credited to the agent (by now)
    ordered_buyers: int = 0
    paid_buyers: int = 0
    paid_orders: int = 0
    sales_units: int = 0
    refunded_orders: int = 0
    refund_units: int = 0
    assists: int = 0
    ratings: int = 0
    rating_sum: int = 0
    ratings_good: int = 0  # score >= 4
    marked_sessions: int = 0  # sessions with a resolution mark (by the mark's ts)
    resolved_sessions: int = 0  # of those, marked resolved (问题解决)

    def within_ratio(self, level: str) -> float | None:
        return self.within.get(level, 0) / self.rounds if self.rounds else None

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.received if self.received else None

    @property
    def qa_ratio(self) -> float | None:
        return self.agent_messages / self.buyer_messages if self.buyer_messages else None

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.inquiries if self.inquiries else None

    @property
    def payment_success_rate(self) -> float | None:
        return self.paid_buyers / self.ordered_buyers if self.ordered_buyers else None

    @property
    def sales(self) -> float:
        return self.sales_units / MONEY_SCALE

    @property
    def average_order_value(self) -> float | None:
        return self.sales_units / MONEY_SCALE / self.paid_buyers if self.paid_buyers else None

    @property
    def refund_rate(self) -> float | None:
        return self.refunded_orders / self.paid_orders if self.paid_orders else None

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved_sessions / self.marked_sessions if self.marked_sessions else None

    @property
    def csat_mean(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None

    @property
    def csat_good_share(self) -> float | None:
        return self.ratings_good / self.ratings if self.ratings else None

    def add(self, other: WindowKpis) -> None:
        """Sum the countable fields (month = Σ days); quantiles and means are not summable."""
        # Spelled out (not a loop over SUMMABLE): the month adds ~30 of these per agent snapshot.
        self.rounds += other.rounds
        self.rt_sum_ms += other.rt_sum_ms
        self.first_rounds += other.first_rounds
        self.received += other.received
        self.replied += other.replied
        self.missed += other.missed
        self.agent_messages += other.agent_messages
        self.buyer_messages += other.buyer_messages
        self.inquiries += other.inquiries
        self.converted += other.converted
        self.ordered_buyers += other.ordered_buyers
        self.paid_buyers += other.paid_buyers
        self.paid_orders += other.paid_orders
        self.sales_units += other.sales_units
        self.refunded_orders += other.refunded_orders
        self.refund_units += other.refund_units
        self.assists += other.assists
        self.ratings += other.ratings
        self.rating_sum += other.rating_sum
        self.ratings_good += other.ratings_good
        self.marked_sessions += other.marked_sessions
        self.resolved_sessions += other.resolved_sessions
        for level, n in other.within.items():
            self.within[level] = self.within.get(level, 0) + n


MONEY_SCALE = 10_000
SUMMABLE = (
    "rounds", "rt_sum_ms", "first_rounds", "received", "replied", "missed", "agent_messages",
    "buyer_messages", "inquiries", "converted", "ordered_buyers", "paid_buyers", "paid_orders",
    "sales_units", "refunded_orders", "refund_units", "assists", "ratings", "rating_sum",
    "ratings_good", "marked_sessions", "resolved_sessions",
)


@dataclass(slots=True)
class ScoreCard:
    """绩效考核表: points per item (docs/kpis.md), total out of 100, pass at the set score.

    `actual`, `target` and `weights` say how each item's points came about, so the exported
    table (GET /api/v1/scorecard) shows the figures a supervisor checks without recomputing
    them; `period` names the local day or month the card scores, so an export never labels
    yesterday's card as today's around midnight.
    """

    items: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    passed: bool = False
    actual: dict[str, float | None] = field(default_factory=dict)  # None = no data / not entered
    target: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    pass_score: float = 70.0
    period: str = ""  # "YYYY-MM-DD" (today) or "YYYY-MM" (month), shop time; "" = not set


@dataclass(slots=True)
class AgentSnapshot:
    """Everything exported for one (shop, agent). `agent == ""` is the shop's unassigned queue."""

    shop: str
    agent: str
    team: str
    windows: dict[str, WindowKpis] = field(default_factory=dict)
    waiting: int = 0
    oldest_wait_since_ms: int | None = None
    rounds_total: int = 0
    within_total: dict[str, int] = field(default_factory=dict)
    histogram: dict[float, int] = field(default_factory=dict)  # cumulative, le -> count
    response_seconds_sum: float = 0.0
    month: WindowKpis | None = None  # business KPIs since local month start (Σ days)
    month_rt_mean: float | None = None
    sales_target: float | None = None
    target_completion: dict[str, float] = field(default_factory=dict)  # "today"/"month"
    score: dict[str, ScoreCard] = field(default_factory=dict)  # "today"/"month"
    # Status and load (docs/kpis.md), filled by `streams.domain.status`; the queue has none.
    status: str | None = None  # current status; None = no status event yet
    status_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # window -> status
    concurrent: int = 0  # buyers with an open session assigned to the agent now
    max_concurrent: int = 10  # latest status event's, else the roster's, else 10
    occupancy: float = 0.0  # concurrent / max_concurrent

    def oldest_wait_seconds(self, now_ms: int) -> float:
        if self.oldest_wait_since_ms is None:
            return 0.0
        return max(0.0, (now_ms - self.oldest_wait_since_ms) / 1000.0)


@dataclass(frozen=True, slots=True)
class OrderEvent(ConversationEvent):
    """One validated `kefu.orders` lifecycle event (docs/interfaces.md).

    `amount` is a Decimal so sales add up to the cent; for `refunded` it is the refunded amount.
    """

    order_id: str
    shop_id: str
    buyer_id: str
    status: OrderStatus
    amount: Decimal
    ts: int


@dataclass(frozen=True, slots=True)
class RatingEvent(ConversationEvent):
    """One validated `kefu.ratings` event (docs/interfaces.md): a buyer's 1–5 score for an agent."""

    shop_id: str
    buyer_id: str
    agent_id: str
    score: int
    ts: int
    resolved: bool | None = None  # the buyer's "was your problem solved?" (问题是否解决)


@dataclass(frozen=True, slots=True)
class AgentStatusEvent:
    """One validated `kefu.agents` event (docs/interfaces.md): an agent's console status.

    Not a conversation event: it is keyed by the agent, and stage 1 turns it into a fact for
    the agent's aggregate without any per-conversation state.
    """

    shop_id: str
    agent_id: str
    status: AgentStatus
    ts: int
    max_concurrent: int | None = None

    @property
    def routing_key(self) -> bytes:
        """The Kafka key producers use, `"{shop}:{agent}"`: it picks the partition only."""
        return f"{self.shop_id}:{self.agent_id}".encode()

    @property
    def state_key(self) -> str:
        """The agent's aggregate key: groups a batch's events by owner (no stage-1 state)."""
        return agent_key(self.shop_id, self.agent_id)
