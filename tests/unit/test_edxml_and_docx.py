"""edXML packages and status messages (both namespaces, hardened parsing), the DOCX of a plan opened back
with python-docx, and a plan read back from its own DOCX and PDF."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from docx import Document

from shared.documents import attachment_text, plan_from_package, read_plan_document
from shared.documents.edxml import (
    NAMESPACE,
    OLD_NAMESPACE,
    Attachment,
    EdxmlError,
    Organ,
    Package,
    Status,
    read_package,
    read_status,
    write_package,
    write_status,
)
from shared.documents.errors import DocumentError
from shared.documents.paper import DOCX_MEDIA_TYPE, ParentPlan, PlanDocument, render_plan_docx
from shared.events import AwardQuota, DeadlineRule, Milestone, Phase, PlanIssued, Recipient, Signer, Target

PLAN = PlanIssued(
    plan_id="p-19",
    number="19/KH-LĐLĐ",
    issuer_unit_id="lb",
    title="Phát động đợt thi đua cao điểm chào mừng Đại hội Công đoàn quận Long Biên lần thứ V",
    issued_on=date(2023, 3, 2),
    place="Long Biên",
    phases=[
        Phase(seq=1, label="Giai đoạn I", start=date(2023, 5, 1), end_milestone="dai-hoi-v"),
        Phase(seq=2, label="Giai đoạn II", start=date(2023, 7, 1), end=date(2023, 9, 30)),
    ],
    milestones=[Milestone(id="dai-hoi-v", name="Đại hội Công đoàn quận Long Biên lần thứ V")],
    targets=[Target(unit_id="lb-1", name="CĐCS Long Biên 1", level="grassroots")],
    movements=["Lao động giỏi, Lao động sáng tạo"],
    deadlines=[
        DeadlineRule(kind="after_phase", days=2),
        DeadlineRule(kind="fixed", purpose="registration", due_on=date(2023, 4, 15)),
    ],
    award_quota=AwardQuota(collectives=1, individuals=1),
    recipients=[
        Recipient(name="LĐLĐ thành phố Hà Nội", purpose="report"),
        Recipient(name="Các CĐCS trực thuộc", purpose="execute"),
        Recipient(name="VP", purpose="archive"),
    ],
    signer=Signer(authority="TM.", position="Chủ tịch", name="Phan Thị Thu Hằng"),
)
DOCUMENT = PlanDocument(
    plan=PLAN,
    issuer_name="LĐLĐ quận Long Biên",
    superior_name="LĐLĐ thành phố Hà Nội",
    parent=ParentPlan(number="80/KH-LĐLĐ", issued_on=date(2023, 2, 21), issuer_name="LĐLĐ thành phố Hà Nội"),
)


def package(**changes: object) -> Package:
    fields = dict(
        sender=Organ(organ_id="lb", organ_name="LĐLĐ quận Long Biên", email="vp@ldld-longbien.vn"),
        receivers=[Organ(organ_id="lb-1", organ_name="CĐCS Long Biên 1")],
        code_number="19",
        code_notation="KH-LĐLĐ",
        place="Long Biên",
        promulgation_date=date(2023, 3, 2),
        subject=PLAN.title,
        signer_competence="TM. Ban Thường vụ",
        signer_position="Chủ tịch",
        signer_name="Phan Thị Thu Hằng",
        to_places=["CĐCS Long Biên 1"],
        response_for="hn,2023/02/21,80/KH-LĐLĐ",
        attachments=[
            Attachment(name="19-kh.docx", content_type=DOCX_MEDIA_TYPE, content=render_plan_docx(DOCUMENT))
        ],
    )
    fields.update(changes)
    return Package.model_validate(fields)


def test_the_docx_has_the_decree_30_layout() -> None:
    doc = Document(io.BytesIO(render_plan_docx(DOCUMENT)))
    header, footer = doc.tables
    left, right = (cell.text for cell in header.rows[0].cells)
    assert left.splitlines() == ["LĐLĐ THÀNH PHỐ HÀ NỘI", "LĐLĐ QUẬN LONG BIÊN", "Số: 19/KH-LĐLĐ"]
    assert right.splitlines() == [
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "Long Biên, ngày 02 tháng 3 năm 2023",
    ]
    paragraphs = [p.text for p in doc.paragraphs if p.text]
    assert paragraphs[:2] == ["KẾ HOẠCH", PLAN.title]
    assert paragraphs[2].startswith(
        "Thực hiện Kế hoạch số 80/KH-LĐLĐ ngày 21/2/2023 của LĐLĐ thành phố Hà Nội"
    )
    assert "Giai đoạn I: từ 01/5/2023 đến Đại hội Công đoàn quận Long Biên lần thứ V" in paragraphs
    recipients, signature = (cell.text.splitlines() for cell in footer.rows[0].cells)
    assert recipients == [
        "Nơi nhận:",
        "- LĐLĐ thành phố Hà Nội (để b/c);",
        "- Các CĐCS trực thuộc (để t/h);",
        "- Lưu: VP.",
    ]
    assert [line for line in signature if line] == ["TM. BAN THƯỜNG VỤ", "CHỦ TỊCH", "Phan Thị Thu Hằng"]


def test_a_plan_reads_back_from_its_docx() -> None:
    read = read_plan_document(render_plan_docx(DOCUMENT), "19.docx")
    plan = read.plan
    assert read.kind == "docx" and plan.warnings == []
    assert (plan.number, plan.issuer, plan.place, plan.issued_on, plan.title) == (
        PLAN.number,
        "LĐLĐ quận Long Biên",
        PLAN.place,
        PLAN.issued_on,
        PLAN.title,
    )
    assert [(r.number, r.issued_on) for r in plan.implements] == [("80/KH-LĐLĐ", date(2023, 2, 21))]
    assert [(p.label, p.start, p.end, p.end_event) for p in plan.phases] == [
        ("Giai đoạn I", date(2023, 5, 1), None, "Đại hội Công đoàn quận Long Biên lần thứ V"),
        ("Giai đoạn II", date(2023, 7, 1), date(2023, 9, 30), None),
    ]
    assert [(d.kind, d.days, d.due_on) for d in plan.deadlines] == [
        ("after_phase", 2, None),
        ("fixed", None, date(2023, 4, 15)),
    ]
    assert plan.movements == PLAN.movements
    assert [(q.collectives, q.individuals) for q in plan.award_quotas] == [(1, 1)]
    assert [(r.name, r.purpose) for r in plan.recipients] == [(r.name, r.purpose) for r in PLAN.recipients]
    assert plan.signer and (plan.signer.authority, plan.signer.name) == ("TM.", "Phan Thị Thu Hằng")


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose text layer holds `text` (ASCII), written by hand with a correct xref."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_the_text_layer_of_a_pdf_goes_through_the_reader() -> None:
    pdf = minimal_pdf("Phan dau it nhat 30% doan vien co sang kien")
    assert attachment_text(pdf, "plan.pdf").strip() == "Phan dau it nhat 30% doan vien co sang kien"
    read = read_plan_document(pdf, "plan.pdf")
    assert read.kind == "pdf" and read.media_type == "application/pdf"
    assert [(t.value, t.unit) for t in read.plan.targets] == [(30.0, "%")]


def test_a_package_round_trips_through_edxml() -> None:
    sent = package()
    data = write_package(sent)
    assert data.startswith(b"<?xml") and NAMESPACE.encode() in data
    received = read_package(data)
    assert received == sent
    assert received.document_id == "lb,2023/03/02,19/KH-LĐLĐ"


def test_the_package_header_wins_over_its_attachment_and_says_so() -> None:
    plan = plan_from_package(package(subject="Một tên khác", code_number="20"))
    assert (plan.number, plan.title) == ("20/KH-LĐLĐ", "Một tên khác")
    assert sorted(w.text for w in plan.warnings if w.code == "header_mismatch") == ["19/KH-LĐLĐ", PLAN.title]
    bare = plan_from_package(package(attachments=[]))
    assert "no_attachment" in [w.code for w in bare.warnings]
    assert bare.signer and bare.signer.authority == "TM." and bare.implements[0].number == "80/KH-LĐLĐ"


def old_style_package(date_text: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXMLEnvelope xmlns="{OLD_NAMESPACE}"><edXMLHeader><MessageHeader>
<From><OrganId>hn</OrganId><OrganName>LĐLĐ thành phố Hà Nội</OrganName></From>
<Code><CodeNumber>80</CodeNumber><CodeNotation>KH-LĐLĐ</CodeNotation></Code>
<PromulgationInfo><Place>Hà Nội</Place><PromulgationDate>{date_text}</PromulgationDate></PromulgationInfo>
<Subject>Đợt thi đua cao điểm</Subject>
</MessageHeader></edXMLHeader></edXMLEnvelope>""".encode()


def test_the_older_namespace_and_day_first_dates_are_read() -> None:
    received = read_package(old_style_package("21/02/2023"))
    assert (received.number, received.promulgation_date, received.sender.organ_id) == (
        "80/KH-LĐLĐ",
        date(2023, 2, 21),
        "hn",
    )


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (old_style_package("30/02/2023"), "PromulgationInfo.PromulgationDate", "is not a date"),
        (b'<edXMLEnvelope xmlns="urn:other"/>', "package", "unknown edXML namespace"),
        (b"<edXMLEnvelope", "package", "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<edXMLEnvelope xmlns="' + NAMESPACE.encode() + b'">&xxe;</edXMLEnvelope>',
            "package",
            "DTD or entities",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b'<edXMLEnvelope xmlns="' + NAMESPACE.encode() + b'">&b;</edXMLEnvelope>',
            "package",
            "DTD or entities",
        ),
        (
            f'<edXMLEnvelope xmlns="{NAMESPACE}"><edXMLHeader><MessageHeader/>'
            "</edXMLHeader></edXMLEnvelope>".encode(),
            "From.OrganId",
            "which organ sent it",
        ),
    ],
)
def test_a_bad_package_is_refused_naming_the_part(data: bytes, field: str, message: str) -> None:
    with pytest.raises(EdxmlError, match=message) as refused:
        read_package(data)
    assert refused.value.field == field


def test_a_package_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(EdxmlError, match="at most 1000 are accepted"):
        read_package(write_package(package()), max_bytes=1000)


def test_status_messages_round_trip_and_unknown_codes_are_refused() -> None:
    sent = Status(
        document_id="lb,2023/03/02,19/KH-LĐLĐ", sender=Organ(organ_id="lb-1"), code="03", status="accepted"
    )
    assert read_status(write_status(sent)) == sent
    with pytest.raises(EdxmlError, match="status code '09'") as refused:
        read_status(write_status(sent.model_copy(update={"code": "09"})))
    assert refused.value.field == "StatusCode"


SAMPLES = Path(__file__).parent.parent.parent / "docs" / "samples"


def test_the_committed_sample_pair_is_what_thidua_writes_and_reads() -> None:
    sample = read_package((SAMPLES / "plan-19-KH-LDLD.edxml.xml").read_bytes())
    assert sample.model_dump(exclude={"attachments"}) == package().model_dump(exclude={"attachments"})
    assert plan_from_package(sample).title == PLAN.title
    status = read_status((SAMPLES / "status-accepted.edxml.xml").read_bytes())
    assert (status.document_id, status.sender.organ_id, status.status) == (
        sample.document_id,
        "lb-1",
        "accepted",
    )


def test_a_damaged_docx_is_refused_saying_so() -> None:
    with pytest.raises(DocumentError, match="not a readable DOCX") as refused:
        read_plan_document(b"PK\x03\x04 not really a zip", "plan.docx")
    assert refused.value.field == "document"
