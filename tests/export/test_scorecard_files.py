"""The 绩效考核表 document, CSV and XLSX (streams/export/scorecard_api.py, scorecard_files.py),
read back cell by cell and compared with the oracle's rows (tests/export/scorecard_day.py).

The CSV is read as Excel would need it: BOM first, then UTF-8, through the csv module. The
XLSX is opened with openpyxl: numbers must be numbers, the header frozen, columns sized.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook

from streams.domain import scorecard
from streams.domain.model import AgentSnapshot, WindowKpis
from streams.export import scorecard_files
from streams.export.scorecard_api import ScorecardError, document, parse_query
from tests.export.scorecard_day import (
    AGENTS,
    CONFIG,
    HEADERS_EN,
    HEADERS_ZH,
    NOW,
    Row,
    engine_snapshots,
    expected_rows,
)

PERIODS = ("today", "month")


@pytest.fixture(scope="module")
def snaps() -> dict[tuple[str, str], AgentSnapshot]:
    return engine_snapshots()


def _same(got: Any, want: Any, where: str, abs_tol: float = 1e-9) -> None:
    if want is None:
        assert got in (None, ""), where
    elif isinstance(want, str):
        assert got == want, where
    else:
        assert isinstance(got, int | float) and not isinstance(got, bool), (where, got)
        assert got == pytest.approx(want, rel=1e-9, abs=abs_tol), where


def test_the_day_has_what_the_table_is_about() -> None:
    rows = expected_rows("month") + expected_rows("today")
    assert {r.card.passed for r in rows} == {True, False}
    assert any(r.card.actual["execution"] is not None for r in rows)  # an entered one
    assert any(r.card.actual["target_completion"] is None for r in rows)  # no sales target
    assert any(0 < (r.card.actual["reply_rate"] or 0) < 1 for r in rows)
    assert any(0 < (r.card.actual["payment_success"] or 0) < 1 for r in rows)
    assert len({r.period for r in expected_rows("today")}) == 2  # Los Angeles is a day behind


@pytest.mark.parametrize("period", PERIODS)
def test_document_equals_the_oracle(snaps: dict[tuple[str, str], AgentSnapshot],
                                    period: str) -> None:
    doc = document(snaps.values(), CONFIG, period, NOW)
    want = expected_rows(period)
    assert [(r["shop"], r["agent"]) for r in doc["agents"]] == [(w.shop, w.agent) for w in want]
    assert sorted((w.shop, w.agent) for w in want) == AGENTS  # every agent, no shop queue
    for got, w in zip(doc["agents"], want, strict=True):
        where = f"{w.shop}/{w.agent}/{period}"
        assert (got["team"], got["name"], got["period"]) == (w.team, w.name, w.period), where
        for item, cell in got["items"].items():
            _same(cell["actual"], w.card.actual[item], f"{where} {item} actual")
            _same(cell["target"], w.card.target[item], f"{where} {item} target")
            _same(cell["points"], w.card.items[item], f"{where} {item} points", 1e-4)
            assert cell["weight"] == w.weights[item]
        _same(got["total"], w.card.total, f"{where} total", 1e-3)
        assert got["passed"] is w.card.passed and got["pass_score"] == w.pass_score


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_csv_reads_back_equal(snaps: dict[tuple[str, str], AgentSnapshot], period: str,
                              lang: str) -> None:
    data = scorecard_files.to_csv(document(snaps.values(), CONFIG, period, NOW), lang)
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes Chinese Excel read UTF-8
    assert b"\r\n" in data
    rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    assert rows[0] == (HEADERS_ZH if lang == "zh" else HEADERS_EN)
    _compare(rows[1:], expected_rows(period), lang, from_csv=True)


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_xlsx_reads_back_equal(snaps: dict[tuple[str, str], AgentSnapshot], period: str,
                               lang: str) -> None:
    data = scorecard_files.to_xlsx(document(snaps.values(), CONFIG, period, NOW), lang)
    wb = load_workbook(io.BytesIO(data))
    ws = wb.active
    assert ws is not None
    assert ws.title == ("绩效考核表 " if lang == "zh" else "Scorecard ") + period
    values = [list(r) for r in ws.iter_rows(values_only=True)]
    assert values[0] == (HEADERS_ZH if lang == "zh" else HEADERS_EN)
    _compare(values[1:], expected_rows(period), lang, from_csv=False)
    # layout: frozen header (and who-columns), bold header, formats, widths, filter
    assert ws.freeze_panes == "F2"
    assert all(c.font.bold for c in ws[1])
    assert ws.auto_filter.ref == ws.dimensions
    assert ws["I2"].number_format == "0.00%"  # conversion actual: a ratio
    assert ws["O2"].number_format == "#,##0.00"  # AOV actual: money
    assert ws["H2"].number_format == "0.00"  # points
    for col in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        assert 8 <= (ws.column_dimensions[col].width or 0) <= 40, col
    assert ws.column_dimensions["D"].width >= 8 and ws.column_dimensions["F"].width >= 16


def _compare(rows: list[list[Any]], want: list[Row], lang: str, *, from_csv: bool) -> None:
    assert len(rows) == len(want)
    for got_row, w in zip(rows, want, strict=True):
        expected = w.cells(lang)
        assert len(got_row) == len(expected)
        for col, (got, exp) in enumerate(zip(got_row, expected, strict=True)):
            where = f"{w.shop}/{w.agent} column {col}"
            # the engine rounds points to 4 decimals; the oracle does not
            points = col >= 5 and ((col - 5) % 3 == 2 or col >= 26)
            if from_csv and not isinstance(exp, str):
                got = None if got == "" else float(got)
                if exp is not None:  # CSV holds 6 decimals
                    assert got == pytest.approx(exp, abs=1e-4 if points else 1e-6), where
                    continue
            _same(got, exp, where, abs_tol=1e-4 if points else 1e-9)


def test_empty_table_still_has_its_header() -> None:
    doc = document([], CONFIG, "month", NOW)
    assert doc["agents"] == []
    data = scorecard_files.to_csv(doc, "zh")
    assert list(csv.reader(io.StringIO(data.decode("utf-8-sig")))) == [HEADERS_ZH]
    ws = load_workbook(io.BytesIO(scorecard_files.to_xlsx(doc, "en"))).active
    assert ws is not None and [c.value for c in ws[1]] == HEADERS_EN and ws.max_row == 1


def test_named_periods_pick_the_cards_that_score_them(
    snaps: dict[tuple[str, str], AgentSnapshot],
) -> None:
    month = document(snaps.values(), CONFIG, "month", NOW)["agents"]
    assert document(snaps.values(), CONFIG, "2024-03", NOW)["agents"] == month
    # Shanghai is on 15 March, Los Angeles still on the 14th: each named day has its own shops
    d15 = document(snaps.values(), CONFIG, "2024-03-15", NOW)
    assert {r["shop"] for r in d15["agents"]} == {"s1"} and d15["not_held_shops"] == ["s2"]
    d14 = document(snaps.values(), CONFIG, "2024-03-14", NOW)
    assert {r["shop"] for r in d14["agents"]} == {"s2"} and d14["not_held_shops"] == ["s1"]


@pytest.mark.parametrize("period", ["2024-02", "2024-03-13", "2024-04", "2024-03-16"])
def test_periods_not_held_are_a_404_listing_what_is(
    snaps: dict[tuple[str, str], AgentSnapshot], period: str,
) -> None:
    with pytest.raises(ScorecardError) as err:
        document(snaps.values(), CONFIG, period, NOW)
    assert err.value.status == 404 and err.value.field == "period"
    assert err.value.body()["held"] == ["2024-03", "2024-03-14", "2024-03-15"]


def test_a_named_current_period_with_no_agents_is_empty_not_404() -> None:
    assert document([], CONFIG, "2024-03-15", NOW)["agents"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"period": "2024-13"}, "period"),
        ({"period": "2024-02-30"}, "period"),
        ({"period": "yesterday"}, "period"),
        ({"period": "2024-3"}, "period"),
        ({"period": "２０２４-03"}, "period"),  # full-width digits match \d
        ({"format": "xls"}, "format"),
        ({"lang": "fr"}, "lang"),
        ({"shop": "s1"}, "shop"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(ScorecardError) as err:
        parse_query(query)
    assert err.value.status == 400 and err.value.field == field
    assert field in str(err.value)


def test_defaults_are_this_month_json_in_chinese() -> None:
    q = parse_query({})
    assert (q.period, q.format, q.lang) == ("month", "json", "zh")


def test_queue_and_unscored_snapshots_are_not_rows() -> None:
    queue = AgentSnapshot(shop="s1", agent="", team="unassigned")
    unscored = AgentSnapshot(shop="s1", agent="a9", team="unassigned")
    scored = AgentSnapshot(shop="s1", agent="a1", team="pre-sales",
                           windows={"today": WindowKpis()}, month=WindowKpis())
    rules = CONFIG.rules("s1")
    scorecard.fill(scored, {}, NOW, shop=rules, lines=rules.lines,
                   rules=CONFIG.scorecard("pre-sales"), sales_target=None,
                   day_start=rules.day_start_ms(NOW), month_start=rules.day_start_ms(NOW))
    rows = document([queue, unscored, scored], CONFIG, "today", NOW)["agents"]
    assert [r["agent"] for r in rows] == ["a1"]
