"""`streams.export.agent_text`: the render's unrolled path writes exactly what the general one
writes.

An agent with all three sliding windows and the month (every agent with a reply this month)
takes `_full_shape`, one hand-written f-string a family; any other shape takes `_any_shape`, the
comprehensions. A slip in the unrolled text (a window label swapped, a ratio kept without its
denominator) would show only for busy agents, so both are compared on random windows, and the
whole agent's text is read back against the values it was given.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.model import MONEY_SCALE, WINDOWS, AgentSnapshot
from streams.domain.model import WindowKpis as W
from streams.export import agent_text

# Zero is drawn often: a zero denominator must drop the ratio's line in both paths.
_count = st.one_of(st.just(0), st.integers(min_value=0, max_value=10**12))
_window = st.builds(
    W, rounds=_count, received=_count, replied=_count, inquiries=_count, converted=_count,
    ordered_buyers=_count, paid_buyers=_count, paid_orders=_count, sales_units=_count,
    refunded_orders=_count, refund_units=_count, assists=_count, ratings=_count,
    rating_sum=_count, ratings_good=_count, marked_sessions=_count, resolved_sessions=_count,
    missed=_count,
)
_LABELS = [f'shop="s",window="{name}"' for name in (*WINDOWS, "month")]


@settings(max_examples=300, deadline=None)
@given(st.lists(_window, min_size=4, max_size=4))
def test_the_unrolled_families_equal_the_general_ones(windows: list[W]) -> None:
    every = list(zip(_LABELS, windows, strict=True))
    fast: dict[str, str] = {}
    general: dict[str, str] = {}
    agent_text._full_shape(fast, every)
    agent_text._any_shape(general, every)
    assert fast == general


@given(st.lists(_window, min_size=4, max_size=4))
def test_a_busy_agents_text_reads_back_as_its_values(windows: list[W]) -> None:
    """Independent of both paths: every window's sales and conversion, parsed from the text."""
    snap = AgentSnapshot(shop="s1", agent="a1", team="t",
                         windows=dict(zip(WINDOWS, windows[:3], strict=True)), month=windows[3])
    text = agent_text.fragments(snap)
    names = (*WINDOWS, "month")
    sales = dict(re.findall(r'window="(\w+)"\} (\S+)', text["kefu_sales_amount"]))
    assert {k: float(v) for k, v in sales.items()} == {
        name: w.sales_units / MONEY_SCALE for name, w in zip(names, windows, strict=True)}
    rates = dict(re.findall(r'window="(\w+)"\} (\S+)', text["kefu_conversion_rate"]))
    assert {k: float(v) for k, v in rates.items()} == {
        name: w.converted / w.inquiries
        for name, w in zip(names, windows, strict=True) if w.inquiries}
    counts = dict(re.findall(r'window="(\w+)"\} (\S+)', text["kefu_rounds"]))
    assert counts == {name: str(w.rounds) for name, w in zip(names, windows, strict=True)}
