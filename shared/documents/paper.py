"""A plan on paper: the DOCX of an issued plan in the layout of Decree 30/2020/NĐ-CP, and the text of any DOCX
or PDF a plan arrives in.

The DOCX is the copy posted to units without iOffice and the attachment of every edXML package. It is written
so that reading it back (`document_text` then `parse_plan_text`) gives back the plan.
"""

from __future__ import annotations

import io
import re
from datetime import date

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Cm, Pt
from docx.table import _Cell
from pydantic import BaseModel

from shared.events import DeadlineRule, PlanIssued

DOCX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PURPOSE_MARKS = {"report": "(để b/c)", "execute": "(để t/h)"}
PERIOD_WORDS = {"quarter": "quý", "half_year": "6 tháng", "year": "năm"}
SECTOR_WORDS = {
    "enterprise": "Đối với khu vực doanh nghiệp",
    "administration": "Đối với khu vực hành chính, sự nghiệp",
    "school": "Đối với khối trường học",
}
COMPARATOR_WORDS = {">=": "ít nhất", ">": "trên", "=": "", "<=": "không quá", "<": "dưới"}


class ParentPlan(BaseModel):
    number: str
    issued_on: date
    issuer_name: str


class PlanDocument(BaseModel):
    """What the paper copy of a plan shows beyond the PlanIssued event: the names behind the ids."""

    plan: PlanIssued
    issuer_name: str  # LĐLĐ quận Long Biên
    superior_name: str | None = None  # the body above, first line of the header (LĐLĐ thành phố Hà Nội)
    parent: ParentPlan | None = None


def file_stem(text: str) -> str:
    """Text made safe as a file name: 19/KH-LĐLĐ → 19-KH-LĐLĐ."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "x"


def docx_name(number: str) -> str:
    """A file name for a plan's DOCX: 19/KH-LĐLĐ → 19-KH-LĐLĐ.docx."""
    return file_stem(number) + ".docx"


def day_month_year(day: date) -> str:
    return f"{day.day:02d}/{day.month}/{day.year}"


def deadline_sentence(rule: DeadlineRule) -> str:
    """A deadline in the words plans use, so that it reads back as the same rule."""
    if rule.text:
        return rule.text
    if rule.kind == "after_phase":
        return f"chậm nhất sau {rule.days} ngày kết thúc từng giai đoạn"
    if rule.kind == "periodic":
        period = PERIOD_WORDS[rule.period or "quarter"]
        return f"định kỳ hàng {period} trước ngày {rule.day_of_month} tháng cuối quý"
    return f"chậm nhất ngày {day_month_year(rule.due_on)}" if rule.due_on else ""


def _write(cell: _Cell, lines: list[tuple[str, bool, bool]], align: WD_ALIGN_PARAGRAPH) -> None:
    cell.paragraphs[0].text = ""
    for index, (text, bold, italic) in enumerate(lines):
        paragraph = cell.paragraphs[0] if index == 0 else cell.add_paragraph()
        paragraph.alignment = align
        run = paragraph.add_run(text)
        run.bold, run.italic = bold, italic


def render_plan_docx(document: PlanDocument) -> bytes:
    """The plan as a DOCX: header block, Số/ký hiệu, place and date, title, body, Nơi nhận, signature."""
    plan = document.plan
    doc = Document()
    style = doc.styles["Normal"]
    style.font.name = "Times New Roman"  # type: ignore[attr-defined]
    style.font.size = Pt(13)  # type: ignore[attr-defined]
    for page in doc.sections:
        page.left_margin, page.right_margin = Cm(3), Cm(2)

    header = doc.add_table(rows=1, cols=2)
    header.alignment = WD_TABLE_ALIGNMENT.CENTER
    left = [(document.superior_name.upper(), False, False)] if document.superior_name else []
    left += [(document.issuer_name.upper(), True, False), (f"Số: {plan.number}", False, False)]
    _write(header.rows[0].cells[0], left, WD_ALIGN_PARAGRAPH.CENTER)
    place = f"{plan.place}, " if plan.place else ""
    when = plan.issued_on
    right = [
        ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", True, False),
        ("Độc lập - Tự do - Hạnh phúc", True, False),
        (f"{place}ngày {when.day:02d} tháng {when.month} năm {when.year}", False, True),
    ]
    _write(header.rows[0].cells[1], right, WD_ALIGN_PARAGRAPH.CENTER)

    heading = doc.add_paragraph()
    heading.alignment = WD_ALIGN_PARAGRAPH.CENTER
    heading.add_run("KẾ HOẠCH").bold = True
    title = doc.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    title.add_run(plan.title).bold = True

    if document.parent:
        parent = document.parent
        doc.add_paragraph(
            f"Thực hiện Kế hoạch số {parent.number} ngày {day_month_year(parent.issued_on)} "
            f"của {parent.issuer_name}, {document.issuer_name} ban hành kế hoạch với các nội dung sau:"
        )

    sections = 0

    def section(name: str) -> None:
        nonlocal sections
        sections += 1
        doc.add_paragraph().add_run(
            f"{['I', 'II', 'III', 'IV', 'V', 'VI'][sections - 1]}. {name}"
        ).bold = True

    if plan.movements or plan.content:
        section("NỘI DUNG THI ĐUA")
        for movement in plan.movements:
            doc.add_paragraph(f"- Tổ chức phong trào thi đua “{movement}”.")
        for number, (sector, text) in enumerate(plan.content.items(), start=1):
            doc.add_paragraph(f"{number}. {SECTOR_WORDS.get(sector, sector)}.")
            doc.add_paragraph(text)
    if plan.phases:
        section("THỜI GIAN THỰC HIỆN")
        milestones = {milestone.id: milestone.name for milestone in plan.milestones}
        for phase in plan.phases:
            end = (
                f"đến {milestones.get(phase.end_milestone, phase.end_milestone)}"
                if phase.end_milestone and not phase.end
                else f"đến {day_month_year(phase.end)}"
                if phase.end
                else ""
            )
            doc.add_paragraph(f"{phase.label}: từ {day_month_year(phase.start)} {end}".rstrip())
    if plan.goals:
        section("CHỈ TIÊU")
        for goal in plan.goals:
            doc.add_paragraph(f"- {goal.text}.")
    section("TỔ CHỨC THỰC HIỆN")
    for rule in plan.deadlines:
        purpose = "Đăng ký công trình, phần việc" if rule.purpose == "registration" else "Báo cáo kết quả"
        doc.add_paragraph(f"- {purpose} về {document.issuer_name} {deadline_sentence(rule)}.")
    if plan.award_quota:
        quota = plan.award_quota
        whom = document.issuer_name
        doc.add_paragraph(
            f"- Tổng kết, lựa chọn {quota.collectives:02d} tập thể và {quota.individuals:02d} cá nhân "
            "có thành "
            f"tích xuất sắc nhất, đề nghị {whom} khen thưởng."
        )

    footer = doc.add_table(rows=1, cols=2)
    recipients = [("Nơi nhận:", True, True)]
    for recipient in plan.recipients:
        if recipient.purpose == "archive":
            recipients.append((f"- Lưu: {recipient.name}.", False, False))
        else:
            recipients.append((f"- {recipient.name} {PURPOSE_MARKS[recipient.purpose]};", False, False))
    _write(footer.rows[0].cells[0], recipients, WD_ALIGN_PARAGRAPH.LEFT)
    signature: list[tuple[str, bool, bool]] = []
    if plan.signer:
        if plan.signer.authority:
            signature.append((f"{plan.signer.authority} BAN THƯỜNG VỤ", True, False))
        signature += [
            (plan.signer.position.upper(), True, False),
            ("", False, False),
            (plan.signer.name, True, False),
        ]
    _write(footer.rows[0].cells[1], signature, WD_ALIGN_PARAGRAPH.CENTER)

    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def docx_text(data: bytes) -> str:
    """The text of a DOCX, paragraph by paragraph, tables cell by cell in reading order."""
    doc = Document(io.BytesIO(data))
    lines: list[str] = []
    body = doc.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append("".join(node.text or "" for node in child.iter() if node.tag.endswith("}t")))
            lines.append("")
        elif tag == "tbl":
            for row in child.iter():
                if not row.tag.endswith("}tc"):
                    continue
                for paragraph in row.iter():
                    if paragraph.tag.endswith("}p"):
                        lines.append("".join(n.text or "" for n in paragraph.iter() if n.tag.endswith("}t")))
                lines.append("")
    return "\n".join(lines)


def pdf_text(data: bytes) -> str:
    """The text layer of a PDF (a scanned PDF has none: that comes back empty)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)
