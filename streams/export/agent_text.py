"""One agent's samples in Prometheus text, family by family, as UTF-8 bytes ready to join.

Why a module of its own, and why written this way: at 1,000 agents `/metrics` carries ~216,000
series, and every agent whose snapshot changed since the last scrape is rendered again. Each
family's lines for one agent are built by one list comprehension over its windows and joined
once, then encoded once: per series that is one f-string, with no dictionary lookup or list
append in between (about half the cost of appending each sample to a per-family list). The 26
families of every window and the month are written without the comprehension when an agent
has all four windows (`_full_shape`; tests/export/test_agent_text.py holds it equal to
`_any_shape`). The text is kept as bytes, so a scrape joins bytes and never re-encodes ~22 MB
of mostly unchanged text (`prometheus.render`). Values are read from the snapshot; nothing is
computed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import attrgetter

from streams.domain.limits import label
from streams.domain.model import LEVELS, MONEY_SCALE, QUANTILES, STATUSES, WINDOWS, AgentSnapshot
from streams.domain.model import WindowKpis as W
from streams.domain.windows import HISTOGRAM_BUCKETS

_QLABEL = {q: repr(q) for q in QUANTILES}
_HIST = "kefu_response_time_histogram_seconds"

# Business counts of every window, month included: (family, value).
_COUNTS: tuple[tuple[str, Callable[[W], int]], ...] = tuple(
    (name, attrgetter(attr)) for name, attr in (
        ("kefu_inquiries", "inquiries"), ("kefu_converted_buyers", "converted"),
        ("kefu_ordered_buyers", "ordered_buyers"), ("kefu_paid_buyers", "paid_buyers"),
        ("kefu_paid_orders", "paid_orders"), ("kefu_refunded_orders", "refunded_orders"),
        ("kefu_assists", "assists"), ("kefu_ratings", "ratings"),
        ("kefu_ratings_good", "ratings_good"), ("kefu_rating_score_sum", "rating_sum"),
        ("kefu_marked_sessions", "marked_sessions"),
        ("kefu_resolved_sessions", "resolved_sessions"),
        ("kefu_rounds", "rounds"), ("kefu_received_buyers", "received"),
        ("kefu_replied_buyers", "replied"), ("kefu_missed_buyers", "missed"),
    )
)
# Counts of the sliding windows only (not month).
_WINDOW_COUNTS: tuple[tuple[str, Callable[[W], int]], ...] = tuple(
    (name, attrgetter(attr)) for name, attr in (
        ("kefu_first_rounds", "first_rounds"), ("kefu_agent_messages", "agent_messages"),
        ("kefu_buyer_messages", "buyer_messages"),
    )
)
# Ratios of every window, month included; a series only when the denominator is > 0 (None).
_RATIOS: tuple[tuple[str, Callable[[W], float | None]], ...] = tuple(
    (name, attrgetter(attr)) for name, attr in (
        ("kefu_conversion_rate", "conversion_rate"),
        ("kefu_payment_success_rate", "payment_success_rate"),
        ("kefu_average_order_value", "average_order_value"),
        ("kefu_refund_rate", "refund_rate"), ("kefu_csat_mean", "csat_mean"),
        ("kefu_csat_good_ratio", "csat_good_share"),
        ("kefu_resolution_rate", "resolution_rate"), ("kefu_reply_rate", "reply_rate"),
    )
)


def esc(value: str) -> str:
    """A label value escaped for the text format."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def num(v: float) -> str:
    """A sample value: repr is exact for ints and floats alike; v - v is 0 unless ±inf or nan."""
    if v - v == 0:
        return repr(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "NaN"


def _le(bound: float) -> str:
    text = _LE.get(bound)
    return num(float(bound)) if text is None else text


_LE = {bound: num(float(bound)) for bound in HISTOGRAM_BUCKETS}


def base_labels(s: AgentSnapshot) -> str:
    return f'shop="{esc(s.shop)}",team="{esc(s.team)}",agent="{esc(label(s.agent))}"'


def fragments(s: AgentSnapshot) -> dict[str, str]:
    """The agent's lines per family ("" or absent: none), each line ending in `\\n`."""
    base = base_labels(s)
    out = {"kefu_waiting_buyers": f"kefu_waiting_buyers{{{base}}} {s.waiting}\n"}
    if not s.agent:
        _silent(out, s)
    else:
        _windows(out, s, base)
        _agent(out, s, base)
    return out


def _windows(out: dict[str, str], s: AgentSnapshot, base: str) -> None:
    """The windowed KPIs. Their values are counts, or ratios, means and quantiles of finite
    counts and milliseconds: always finite, so `repr` is their exact text (as `num` would)."""
    wins = [(f'{base},window="{name}"', w) for name in WINDOWS
            if (w := s.windows.get(name)) is not None]
    every = wins if s.month is None else [*wins, (f'{base},window="month"', s.month)]
    if len(every) == 4:
        _full_shape(out, every)
    else:
        _any_shape(out, every)
    for name, get in _WINDOW_COUNTS:
        out[name] = "".join([f"{name}{{{wl}}} {get(w)}\n" for wl, w in wins])
    out["kefu_rounds_within_target"] = "".join(
        [f'kefu_rounds_within_target{{{wl},level="{level}"}} {w.within.get(level, 0)}\n'
         for wl, w in wins for level in LEVELS])
    out["kefu_rounds_within_target_ratio"] = "".join(
        [f'kefu_rounds_within_target_ratio{{{wl},level="{level}"}} '
         f"{w.within.get(level, 0) / w.rounds!r}\n"
         for wl, w in wins if w.rounds for level in LEVELS])
    out["kefu_response_time_seconds"] = "".join(
        [f'kefu_response_time_seconds{{{wl},quantile="{_QLABEL[q]}"}} {v!r}\n'
         for wl, w in wins for q, v in w.rt_quantiles.items()])
    out["kefu_first_response_time_seconds"] = "".join(
        [f'kefu_first_response_time_seconds{{{wl},quantile="{_QLABEL[q]}"}} {v!r}\n'
         for wl, w in wins for q, v in w.frt_quantiles.items()])
    means = [(wl, w.rt_mean) for wl, w in wins]
    if s.month is not None:
        means.append((f'{base},window="month"', s.month_rt_mean))
    out["kefu_response_time_mean_seconds"] = "".join(
        [f"kefu_response_time_mean_seconds{{{wl}}} {v!r}\n" for wl, v in means
         if v is not None])
    out["kefu_first_response_time_mean_seconds"] = "".join(
        [f"kefu_first_response_time_mean_seconds{{{wl}}} {w.frt_mean!r}\n" for wl, w in wins
         if w.frt_mean is not None])
    out["kefu_qa_ratio"] = "".join(
        [f"kefu_qa_ratio{{{wl}}} {v!r}\n" for wl, w in wins if (v := w.qa_ratio) is not None])


def _any_shape(out: dict[str, str], every: list[tuple[str, W]]) -> None:
    """The families of every window and the month, for any windows there are."""
    for name, get in _COUNTS:
        out[name] = "".join([f"{name}{{{wl}}} {get(w)}\n" for wl, w in every])
    out["kefu_sales_amount"] = "".join(
        [f"kefu_sales_amount{{{wl}}} {w.sales_units / MONEY_SCALE!r}\n" for wl, w in every])
    out["kefu_refund_amount"] = "".join(
        [f"kefu_refund_amount{{{wl}}} {w.refund_units / MONEY_SCALE!r}\n" for wl, w in every])
    for name, ratio in _RATIOS:
        out[name] = "".join([f"{name}{{{wl}}} {v!r}\n" for wl, w in every
                             if (v := ratio(w)) is not None])


def _full_shape(out: dict[str, str], every: list[tuple[str, W]]) -> None:
    """The families of every window and the month when all four are there (an agent with
    any reply this month): the same lines as the general case, written as one f-string a
    family instead of a list comprehension and a join. On Python 3.11 a comprehension is a
    function call; this saves ~10 % of a render with every agent changed (in-process, 1,000
    agents: fragments 86-88 -> 77-80 ms)."""
    (l0, w0), (l1, w1), (l2, w2), (l3, w3) = every
    for name, get in _COUNTS:
        out[name] = (f"{name}{{{l0}}} {get(w0)}\n{name}{{{l1}}} {get(w1)}\n"
                     f"{name}{{{l2}}} {get(w2)}\n{name}{{{l3}}} {get(w3)}\n")
    scale = MONEY_SCALE
    out["kefu_sales_amount"] = (
        f"kefu_sales_amount{{{l0}}} {w0.sales_units / scale!r}\n"
        f"kefu_sales_amount{{{l1}}} {w1.sales_units / scale!r}\n"
        f"kefu_sales_amount{{{l2}}} {w2.sales_units / scale!r}\n"
        f"kefu_sales_amount{{{l3}}} {w3.sales_units / scale!r}\n")
    out["kefu_refund_amount"] = (
        f"kefu_refund_amount{{{l0}}} {w0.refund_units / scale!r}\n"
        f"kefu_refund_amount{{{l1}}} {w1.refund_units / scale!r}\n"
        f"kefu_refund_amount{{{l2}}} {w2.refund_units / scale!r}\n"
        f"kefu_refund_amount{{{l3}}} {w3.refund_units / scale!r}\n")
    for name, ratio in _RATIOS:  # a line only where the ratio has a denominator
        r0, r1, r2, r3 = ratio(w0), ratio(w1), ratio(w2), ratio(w3)
        if r0 is not None and r1 is not None and r2 is not None and r3 is not None:
            out[name] = (f"{name}{{{l0}}} {r0!r}\n{name}{{{l1}}} {r1!r}\n"
                         f"{name}{{{l2}}} {r2!r}\n{name}{{{l3}}} {r3!r}\n")
        else:
            out[name] = "".join([f"{name}{{{wl}}} {v!r}\n" for wl, v in
                                 ((l0, r0), (l1, r1), (l2, r2), (l3, r3)) if v is not None])


def _agent(out: dict[str, str], s: AgentSnapshot, base: str) -> None:
    """Targets, scorecards, status and load, and the monotone counters."""
    if s.sales_target is not None:
        out["kefu_sales_target"] = f"kefu_sales_target{{{base}}} {num(s.sales_target)}\n"
    out["kefu_target_completion_ratio"] = "".join(
        [f'kefu_target_completion_ratio{{{base},window="{window}"}} {num(ratio)}\n'
         for window, ratio in s.target_completion.items()])
    cards = [(f'{base},period="{period}"', card) for period, card in s.score.items()]
    # The two families with most float series test finiteness inline and call `num` only for
    # NaN/±Inf: a Python call less per series, ~5 % of a render with every agent changed.
    out["kefu_score_points"] = "".join(
        [f'kefu_score_points{{{pl},item="{item}"}} '
         f"{repr(points) if points - points == 0 else num(points)}\n"
         for pl, card in cards for item, points in card.items.items()])
    out["kefu_score_total"] = "".join(
        [f"kefu_score_total{{{pl}}} {num(card.total)}\n" for pl, card in cards])
    out["kefu_score_passed"] = "".join(
        [f"kefu_score_passed{{{pl}}} {1 if card.passed else 0}\n" for pl, card in cards])
    # Every status always, 0 when not current: an agent without status events shows all zeros
    # and `sum by (shop)` counts agents by status.
    out["kefu_agent_status"] = "".join(
        [f'kefu_agent_status{{{base},status="{status}"}} {1 if s.status == status else 0}\n'
         for status in STATUSES])
    out["kefu_status_seconds"] = "".join(
        [f'kefu_status_seconds{{{base},status="{status}",window="{window}"}} '
         f"{repr(v) if v - v == 0 else num(v)}\n"
         for window, seconds in s.status_seconds.items() for status, v in seconds.items()])
    out["kefu_concurrent_buyers"] = f"kefu_concurrent_buyers{{{base}}} {s.concurrent}\n"
    out["kefu_max_concurrent"] = f"kefu_max_concurrent{{{base}}} {s.max_concurrent}\n"
    out["kefu_occupancy_ratio"] = f"kefu_occupancy_ratio{{{base}}} {num(s.occupancy)}\n"
    out["kefu_rounds_total"] = f"kefu_rounds_total{{{base}}} {s.rounds_total}\n"
    out["kefu_rounds_within_target_total"] = "".join(
        [f'kefu_rounds_within_target_total{{{base},level="{level}"}} '
         f"{s.within_total.get(level, 0)}\n" for level in LEVELS])
    out[_HIST] = "".join(
        [*[f'{_HIST}_bucket{{{base},le="{_le(le)}"}} {n}\n' for le, n in s.histogram.items()],
         f"{_HIST}_sum{{{base}}} {num(s.response_seconds_sum)}\n",
         f"{_HIST}_count{{{base}}} {s.rounds_total}\n"])


def _silent(out: dict[str, str], s: AgentSnapshot) -> None:
    """Shop-level orders no agent can be credited with (静默下单), kept under agent ""."""
    shop = f'shop="{esc(s.shop)}"'
    every = [(w, s.windows[w]) for w in WINDOWS if w in s.windows]
    if s.month is not None:
        every.append(("month", s.month))
    labels = [(f'{shop},window="{window}"', w) for window, w in every]
    out["kefu_silent_ordered_buyers"] = "".join(
        [f"kefu_silent_ordered_buyers{{{wl}}} {w.ordered_buyers}\n" for wl, w in labels])
    out["kefu_silent_paid_orders"] = "".join(
        [f"kefu_silent_paid_orders{{{wl}}} {w.paid_orders}\n" for wl, w in labels])
    out["kefu_silent_sales_amount"] = "".join(
        [f"kefu_silent_sales_amount{{{wl}}} {num(w.sales)}\n" for wl, w in labels])
