"""The 绩效考核表 as a CSV or XLSX file, from a scorecard document (`scorecard_api.document`).

One module for both the worker's endpoint and `kefu-pulse report`, so a file downloaded from
one worker and one merged from many have the same columns. Per agent: shop, team, agent id,
name, period; per item its actual value, target and points; the total, the pass score and
pass/fail. Headers are Chinese by default (`lang="en"` for English).

- CSV: UTF-8 *with* a BOM — without it Chinese Excel decodes the file as GBK and shows mojibake.
  Ratios are fractions (0.4 = 40 %), rounded to 6 decimals so no float noise reaches the sheet;
  a missing value (no data yet, execution not entered) is an empty cell, never 0.
- XLSX: built with openpyxl. Numbers stay numbers (exact, with a display format: ratios as
  percentages), a bold header row, frozen header and identity columns, an auto-filter, and
  column widths from the content (CJK characters count double).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOM = "\ufeff"

Cell = str | float | int | None

# item -> (中文, English, kind of its actual value and target)
ITEM_NAMES: dict[str, tuple[str, str, str]] = {
    "target_completion": ("指标完成率", "Target completion", "ratio"),
    "conversion": ("询单转化率", "Conversion", "ratio"),
    "payment_success": ("付款成功率", "Payment success", "ratio"),
    "aov": ("客单价", "AOV", "money"),
    "reply_rate": ("回复率", "Reply rate", "ratio"),
    "response_time": ("平均响应时间(秒)", "Mean response time (s)", "seconds"),
    "execution": ("执行力", "Execution", "points"),
}
PARTS: dict[str, tuple[str, str]] = {
    "actual": ("实际", "actual"), "target": ("目标", "target"), "points": ("得分", "points"),
}
IDENTITY: tuple[tuple[str, str, str], ...] = (
    ("shop", "店铺", "Shop"),
    ("team", "组别", "Team"),
    ("agent", "客服账号", "Agent ID"),
    ("name", "客服姓名", "Name"),
    ("period", "考核周期", "Period"),
)
TAIL: tuple[tuple[str, str, str], ...] = (
    ("total", "总分", "Total"),
    ("pass_score", "合格线", "Pass score"),
    ("passed", "考核结果", "Result"),
)
RESULT = {"zh": ("合格", "不合格"), "en": ("pass", "fail")}
NUMBER_FORMATS = {"ratio": "0.00%", "money": "#,##0.00", "seconds": "0.0", "points": "0.00"}
SHEET_TITLE = {"zh": "绩效考核表", "en": "Scorecard"}


@dataclass(frozen=True, slots=True)
class Table:
    """Header, rows and each column's kind ("text" or a key of NUMBER_FORMATS)."""

    headers: list[str]
    kinds: list[str]
    rows: list[list[Cell]]


def _pick(zh: str, en: str, lang: str) -> str:
    return zh if lang == "zh" else en


def _columns(items: Sequence[str], lang: str) -> tuple[list[str], list[str]]:
    headers = [_pick(zh, en, lang) for _, zh, en in IDENTITY]
    kinds = ["text"] * len(IDENTITY)
    for item in items:
        zh, en, kind = ITEM_NAMES[item]
        for part, (pzh, pen) in PARTS.items():
            headers.append(f"{zh} {pzh}" if lang == "zh" else f"{en} {pen}")
            kinds.append("points" if part == "points" else kind)
    headers += [_pick(zh, en, lang) for _, zh, en in TAIL]
    kinds += ["points", "points", "text"]
    return headers, kinds


def table(doc: Mapping[str, Any], lang: str = "zh") -> Table:
    """The document's agents as rows, in its order; every file format writes this."""
    items: list[str] = list(doc.get("items") or ITEM_NAMES)
    headers, kinds = _columns(items, lang)
    passed, failed = RESULT[lang]
    rows: list[list[Cell]] = []
    for agent in doc["agents"]:
        row: list[Cell] = [agent[key] for key, _, _ in IDENTITY]
        for item in items:
            cell = agent["items"][item]
            row += [cell["actual"], cell["target"], cell["points"]]
        row += [agent["total"], agent["pass_score"], passed if agent["passed"] else failed]
        rows.append(row)
    return Table(headers, kinds, rows)


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # not expected; never let True become "1.0"
        return str(value)
    if isinstance(value, int | float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return value


def to_csv(doc: Mapping[str, Any], lang: str = "zh") -> bytes:
    """UTF-8 with a BOM, CRLF line ends (what Excel writes and expects)."""
    t = table(doc, lang)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(t.headers)
    for row in t.rows:
        writer.writerow([_csv_cell(v) for v in row])
    return (BOM + out.getvalue()).encode("utf-8")


def _width(text: str) -> int:
    """Display width: East Asian wide characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def to_xlsx(doc: Mapping[str, Any], lang: str = "zh") -> bytes:
    """One sheet; numbers as numbers with display formats; frozen header; sized columns."""
    from openpyxl import Workbook  # imported here: only file exports need it
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    t = table(doc, lang)
    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook always has its first sheet
    ws.title = f"{SHEET_TITLE[lang]} {doc['period']}"[:31]
    ws.append(t.headers)
    bold = Font(bold=True)
    for cell in ws[1]:
        cell.font = bold
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    red = Font(color="C00000", bold=True)
    failed = RESULT[lang][1]
    for row in t.rows:
        ws.append(row)
        r = ws.max_row
        for col, kind in enumerate(t.kinds, start=1):
            if kind != "text":
                ws.cell(r, col).number_format = NUMBER_FORMATS[kind]
        if row[-1] == failed:
            ws.cell(r, len(row)).font = red
    # the header row and the who-columns stay in view while scrolling
    ws.freeze_panes = f"{get_column_letter(len(IDENTITY) + 1)}2"
    ws.auto_filter.ref = ws.dimensions
    for col, header in enumerate(t.headers, start=1):
        texts = [header] + [str(row[col - 1]) for row in t.rows if isinstance(row[col - 1], str)]
        numeric = 12 if t.kinds[col - 1] != "text" else 0
        width = max([numeric, *(_width(s) for s in texts)]) + 2
        ws.column_dimensions[get_column_letter(col)].width = min(40, max(8, width))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def file_name(period: str, fmt: str) -> str:
    """An ASCII name for downloads (`period` is validated: digits, dashes or a word)."""
    return f"kefu-scorecard-{period}.{fmt}"
