"""The consolidated report in the shape officers send upward: one row per unit below, a column per
indicator, the totals, and where each report stands (XLSX and CSV)."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from services.reporting.domain import COUNTERS, ratio_of

COUNTER_HEADINGS = {
    "expected": "Phải báo cáo",
    "received": "Đã báo cáo",
    "on_time": "Đúng hạn",
    "late": "Trễ hạn",
    "missing": "Chưa báo cáo",
}
STATUS_WORDS = {
    "on_time": "Đúng hạn",
    "late": "Trễ hạn",
    "missing": "Chưa báo cáo",
    "pending": "Chưa đến hạn",
}
REVIEW_WORDS = {
    "submitted": "Đã gửi",
    "approved": "Đã duyệt",
    "returned": "Trả lại",
    "accepted": "Đã tiếp nhận",
}


def _columns(table: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(heading, figure code, ratio code) for every indicator column."""
    columns = []
    for indicator in table["indicators"]:
        code, name = indicator["code"], indicator["name"]
        if indicator["kind"] == "ratio":
            columns += [
                (f"{name} — tử số", f"{code}.numerator", None),
                (f"{name} — mẫu số", f"{code}.denominator", None),
                (f"{name} — tỷ lệ (%)", "", code),
            ]
        elif indicator["kind"] != "text":
            columns.append((name, code, None))
    return columns


def rows(table: dict[str, Any]) -> list[list[Any]]:
    """The sheet as rows: heading, one row per unit below the issuer, then the total."""
    columns = _columns(table)
    heading = ["Đơn vị", *COUNTER_HEADINGS.values(), "Tình trạng", "Duyệt", *(c[0] for c in columns)]

    def line(row: dict[str, Any]) -> list[Any]:
        if "status" in row:  # a grassroots union's own report
            status = row["status"]
            counts = [
                1,
                int(status in ("on_time", "late")),
                int(status == "on_time"),
                int(status == "late"),
                int(status == "missing"),
            ]
            state = STATUS_WORDS[status]
        else:
            counts = [row[name] for name in COUNTERS]
            state = f"{row['received']}/{row['expected']}"
        figures = row.get("figures", {})
        cells = []
        for _heading, code, ratio in columns:
            if ratio:
                value = ratio_of(figures, ratio)
                cells.append(round(100 * value, 2) if value is not None else None)
            else:
                cells.append(
                    figures.get(code, 0) if ("status" not in row or row["status"] != "missing") else None
                )
        return [row["name"], *counts, state, REVIEW_WORDS.get(row.get("review") or "", ""), *cells]

    total = table["total"]
    return [heading, *(line(row) for row in table["units"]), ["Tổng cộng", *line(total)[1:]]]


def to_csv(table: dict[str, Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows(table))
    return out.getvalue()


def to_xlsx(table: dict[str, Any]) -> bytes:
    """A workbook: the title block, the table with its totals, and a sheet saying how figures add up."""
    book = Workbook()
    sheet = book.active
    sheet.title = f"Đợt {table['phase_seq']}"
    sheet.append([f"BÁO CÁO TỔNG HỢP — {table['total']['name']}"])
    sheet.append([f"Kế hoạch số {table['number']}: {table['title']}"])
    sheet.append([f"Đợt {table['phase_seq']}, hạn báo cáo {table['report_due']}"])
    sheet.append([])
    first = sheet.max_row + 1
    for row in rows(table):
        sheet.append(row)
    for cell in sheet[first]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    sheet[1][0].font = Font(bold=True, size=13)
    sheet.column_dimensions["A"].width = 40
    sheet.freeze_panes = sheet.cell(row=first + 1, column=2)
    rules = book.create_sheet("Cách tính")
    rules.append(["Chỉ tiêu", "Cách tổng hợp"])
    names = {indicator["code"]: indicator["name"] for indicator in table["indicators"]}
    for code, rule in table["rules"].items():
        rules.append([names.get(code, code), rule])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
