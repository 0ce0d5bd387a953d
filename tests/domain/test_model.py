"""WindowKpis.add sums every summable field (it is spelled out for speed, so a new field could
be forgotten there)."""

from __future__ import annotations

import dataclasses

from streams.domain.model import SUMMABLE, WindowKpis


def test_add_sums_every_summable_field_and_only_those() -> None:
    for index, name in enumerate(SUMMABLE):
        total = WindowKpis(**{n: 100 for n in SUMMABLE})
        other = WindowKpis(**{name: index + 1})
        total.add(other)
        assert {n: getattr(total, n) for n in SUMMABLE} == {
            n: 100 + (index + 1 if n == name else 0) for n in SUMMABLE
        }


def test_every_int_field_is_summable() -> None:
    ints = {f.name for f in dataclasses.fields(WindowKpis) if f.type in ("int", int)}
    assert ints == set(SUMMABLE)
