"""Reading real plans: the five seed documents on their real fields, further fixtures in other styles, and
one test per warning kind."""

from __future__ import annotations

import unicodedata
from datetime import date
from pathlib import Path

import pytest

from shared.documents.encoding import LegacyEncodingError, decode, to_unicode
from shared.documents.plan_text import ParsedPlan, parse_plan_text

FIXTURES = Path(__file__).parent.parent / "fixtures"


def seed(name: str) -> ParsedPlan:
    path = next((FIXTURES / "seeds").glob(f"{name}_*.txt"))
    return parse_plan_text(path.read_text(encoding="utf-8"))


def codes(plan: ParsedPlan) -> list[str]:
    return [warning.code for warning in plan.warnings]


def test_long_bien_congress_plan_000() -> None:
    plan = seed("000")
    assert (plan.document_type, plan.number, plan.issuer) == ("KH", "19/KH-LĐLĐ", "LĐLĐ quận Long Biên")
    assert (plan.place, plan.issued_on) == ("Long Biên", date(2023, 3, 2))
    assert plan.title and plan.title.startswith("Phát động “Đợt thi đua cao điểm chào mừng Đại hội công đoàn")
    assert [(r.number, r.issued_on, r.issuer) for r in plan.implements] == [
        ("80/KH-LĐLĐ", date(2023, 2, 21), "LĐLĐ thành phố Hà Nội")
    ]
    assert plan.movements[:2] == ["Lao động giỏi", "Lao động sáng tạo"]
    assert any(m.startswith("01 triệu sáng kiến") for m in plan.movements)
    first, second = plan.phases
    assert (first.label, first.start, first.end, first.end_event) == (
        "Giai đoạn I",
        date(2023, 5, 1),
        None,
        "Đại hội Công đoàn quận Long Biên lần thứ V",
    )
    assert (second.start, second.start_event, second.end_event) == (
        None,
        "Đại hội Công đoàn quận Long Biên lần thứ V",
        "Đại hội Công đoàn thành phố Hà Nội lần thứ XVII",
    )
    assert [(t.comparator, t.value, t.unit) for t in plan.targets] == [("=", 100.0, "%")]
    assert [(d.kind, d.days) for d in plan.deadlines] == [("after_phase", 2)]
    assert [(q.collectives, q.individuals, q.to) for q in plan.award_quotas] == [(1, 1, "LĐLĐ Thành phố")]
    assert [(r.name, r.purpose) for r in plan.recipients] == [
        ("Ban CSPL & QHLD LĐLĐ Thành phố", "report"),
        ("CĐCS", "execute"),
        ("VP", "archive"),
    ]
    assert plan.signer and (plan.signer.authority, plan.signer.position, plan.signer.name) == (
        "TM.",
        "Chủ tịch",
        "Phan Thị Thu Hằng",
    )
    assert plan.report_emails == ["lldlqlongbien@gmail.com"]
    # LĐLD next to LĐLĐ, and the district congress numbered both V and IV.
    assert {"inconsistent_name", "inconsistent_ordinal"} <= set(codes(plan))
    ordinal = next(w for w in plan.warnings if w.code == "inconsistent_ordinal")
    assert "lần thứ V" in ordinal.message and "lần thứ IV" in ordinal.message


def test_bac_kan_year_plan_001() -> None:
    plan = seed("001")
    assert (plan.document_type, plan.number, plan.issued_on) == ("KH", None, None)
    assert plan.issuer == "LĐLĐ tỉnh Bắc Kạn"
    assert plan.title == "Tổ chức phong trào thi đua trong đoàn viên, CNVCLĐ và các cấp công đoàn năm 2023"
    assert plan.implements == []  # "theo Kế hoạch số 111/KH-LĐLĐ" in the body is a programme, not the parent
    assert "Giỏi việc nước, đảm việc nhà" in plan.movements
    assert (
        sum(m.startswith("01 triệu sáng kiến") for m in plan.movements) == 1
    )  # written three ways, one movement
    first, second = plan.phases
    assert (first.label, first.start, first.start_event, first.end) == (
        "Đợt 1",
        None,
        "phát động",
        date(2023, 5, 31),
    )
    assert (second.start, second.end) == (date(2023, 6, 1), date(2023, 12, 31))
    assert [(d.kind, d.days) for d in plan.deadlines] == [("after_phase", None)]
    electronic = [r for r in plan.recipients if r.channel == "electronic"]
    paper = [r for r in plan.recipients if r.channel == "paper"]
    assert ("Tổng LĐLĐ Việt Nam", "report") in [(r.name, r.purpose) for r in electronic]
    assert ("Các đơn vị không có iOffice", "execute") in [(r.name, r.purpose) for r in paper]
    assert plan.signer and (plan.signer.position, plan.signer.name) == ("Phó Chủ tịch", "Bùi Minh Thanh")
    assert codes(plan).count("missing_field") == 2 and "vague_deadline" in codes(plan)


def test_hoan_kiem_news_article_002_is_not_a_plan() -> None:
    plan = seed("002")
    assert "not_a_plan" in codes(plan) and "web_debris" in codes(plan)
    assert (plan.document_type, plan.number, plan.signer, plan.recipients) == (None, None, None, [])
    # What it reports of the plan is still read, for an officer who wants to write it down.
    assert [(p.start, p.end) for p in plan.phases] == [
        (date(2023, 1, 1), date(2023, 6, 30)),
        (date(2023, 7, 1), date(2023, 12, 31)),
    ]
    assert [(t.comparator, t.value, t.unit) for t in plan.targets] == [(">=", 20.0, "%")]


def test_cau_giay_plan_on_a_web_page_003() -> None:
    plan = seed("003")
    assert plan.document_type == "KH" and plan.issuer == "LĐLĐ quận Cầu Giấy"
    assert plan.issued_on is None  # the page's "Thursday, 27/02/2020 - 02:10" is not the plan's date
    debris = next(w for w in plan.warnings if w.code == "web_debris")
    assert "Thống kê truy cập" in debris.text and "Thursday, 27/02/2020" in debris.text
    assert [(p.label, p.start, p.end) for p in plan.phases] == [
        ("Đợt 1", date(2020, 1, 1), date(2020, 6, 30)),
        ("Đợt 2", date(2020, 7, 1), date(2020, 12, 31)),
    ]
    assert ("Các CĐCS trực thuộc", "execute") in [(r.name, r.purpose) for r in plan.recipients]
    assert plan.recipients[-1].purpose == "archive" and plan.recipients[-1].name == "VP, CS- PL"
    assert plan.signer and plan.signer.name == "Nguyễn Thị Thu Hà"  # past "(Đã ký, đóng dấu)"
    assert {w.text for w in plan.warnings if w.code == "spelling"} >= {"Coogn đoàn", "tập trugn"}


def test_long_bien_theme_plan_004() -> None:
    plan = seed("004")
    assert (plan.place, plan.issued_on, plan.issuer) == (
        "Long Biên",
        date(2023, 1, 18),
        "LĐLĐ quận Long Biên",
    )
    assert plan.title and plan.title.startswith("Thực hiện chủ đề công tác năm 2023")
    assert plan.implements == [] and plan.phases == []
    assert sorted((t.comparator, t.value, t.unit) for t in plan.targets) == [
        ("=", 100.0, "%"),
        (">", 55.0, "%"),
        (">=", 1.0, "count"),
    ]
    registration = next(d for d in plan.deadlines if d.kind == "fixed")
    assert (registration.purpose, registration.due_on) == ("registration", None)
    invalid = next(w for w in plan.warnings if w.code == "invalid_date")
    assert invalid.text == "30/02/2023"
    periodic = [(d.period, d.day_of_month) for d in plan.deadlines if d.kind == "periodic"]
    assert periodic == [("quarter", 15), ("half_year", 15), ("year", 15)]
    assert {"spelling", "inconsistent_name"} <= set(codes(plan))  # "Noi nhận", "LDLĐ"


def test_a_plan_in_the_decree_30_layout_written_decomposed() -> None:
    text = (FIXTURES / "documents" / "quang_ninh_2024.txt").read_text(encoding="utf-8")
    plan = parse_plan_text(unicodedata.normalize("NFD", text))
    assert (
        plan.issuer == "LĐLĐ thành phố Hạ Long"
    )  # the second line of the header: the body above comes first
    assert plan.title and unicodedata.is_normalized("NFC", plan.title)
    assert (plan.number, plan.place, plan.issued_on) == ("07/KH-LĐLĐ", "Hạ Long", date(2024, 1, 15))
    assert [(r.document_type, r.number, r.issued_on) for r in plan.implements] == [
        ("Kế hoạch", "12/KH-LĐLĐ", date(2024, 1, 5)),
        ("Quyết định", "999/QĐ-TLĐ", date(2024, 5, 20)),
    ]
    first, second = plan.phases
    assert (first.start_event, first.end) == ("phát động", date(2024, 6, 30))
    assert (second.start, second.end_event) == (date(2024, 7, 1), "kết thúc năm học 2024 - 2025")
    assert [(t.comparator, t.value) for t in plan.targets] == [(">=", 25.0), ("<=", 5.0)]
    assert [(d.kind, d.days) for d in plan.deadlines if d.kind == "after_phase"] == [("after_phase", 5)]
    assert [(q.collectives, q.individuals, q.to) for q in plan.award_quotas] == [(2, 3, "LĐLĐ tỉnh")]
    assert plan.signer and (plan.signer.authority, plan.signer.on_behalf_of, plan.signer.position) == (
        "KT.",
        "Chủ tịch",
        "Phó Chủ tịch",
    )
    assert {"invalid_date", "date_order"} <= set(codes(plan))  # 31/4; a decision dated after the plan


# ------------------------------------------------------------------ one test per warning kind

PLAN = """Số: 3/KH-LĐLĐ
Đông Anh, ngày 10 tháng 2 năm 2024

KẾ HOẠCH
Thi đua năm 2024

{body}

Nơi nhận:
- Các CĐCS (t/h);
- Lưu VP.

TM. BAN THƯỜNG VỤ
CHỦ TỊCH

Đỗ Văn An
"""


def warnings_of(body: str) -> dict[str, str]:
    return {w.code: w.text for w in parse_plan_text(PLAN.format(body=body)).warnings}


def test_a_well_formed_plan_has_no_warning() -> None:
    assert warnings_of("Đợt 1: từ 01/3/2024 đến 30/6/2024.") == {}


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        ("Đăng ký công trình chậm nhất ngày 29/02/2023.", "invalid_date", "29/02/2023"),
        ("Báo cáo về LDLĐ huyện.", "inconsistent_name", "LDLĐ"),
        (
            "Chào mừng Đại hội Công đoàn huyện Đông Anh lần thứ XX, "
            "Đại hội Công đoàn huyện Đông Anh lần thứ XXI.",
            "inconsistent_ordinal",
            "Đại hội Công đoàn huyện Đông Anh",
        ),
        ("Tin đọc nhiều\nHôm nay : 12", "web_debris", "Tin đọc nhiều | Hôm nay : 12"),
        (
            "Báo cáo kết quả sau khi kết thúc mỗi đợt thi đua.",
            "vague_deadline",
            "sau khi kết thúc mỗi đợt thi đua",
        ),
        ("Đợt 1: từ 01/7/2024 đến 30/6/2024.", "phase_order", "Đợt 1: từ 01/7/2024 đến 30/6/2024"),
        (
            "Căn cứ Kế hoạch số 5/KH-LĐLĐ ngày 01/3/2024 của LĐLĐ thành phố Hà Nội.",
            "date_order",
            "5/KH-LĐLĐ",
        ),
        ("Tổ chức các phòng trào thi đua.", "spelling", "phòng trào"),
        ("Báo cáo về LÐLÐ huyện.", "lookalike", "Ð"),
    ],
)
def test_each_doubt_is_a_warning_with_its_text(body: str, code: str, text: str) -> None:
    assert warnings_of(body).get(code) == text


def test_a_plan_without_number_date_or_signature_says_what_is_missing() -> None:
    plan = parse_plan_text("KẾ HOẠCH\nThi đua năm 2024\n\nNội dung.")
    assert [w.text for w in plan.warnings if w.code == "missing_field"] == [
        "number",
        "issued_on",
        "signer",
        "recipients",
    ]


def test_a_decision_is_not_a_plan() -> None:
    assert "not_a_plan" in codes(parse_plan_text("QUYẾT ĐỊNH\nVề việc khen thưởng\n\nĐiều 1."))


# ------------------------------------------------------------------ encodings

TCVN3_PLAN = "KÕ ho¹ch thi ®ua n¨m 2024 cña Liªn ®oµn Lao ®éng quËn"


def test_tcvn3_text_is_converted_and_said_so() -> None:
    text, encoding = to_unicode(TCVN3_PLAN)
    assert encoding == "TCVN3"
    assert text == "Kế hoạch thi đua năm 2024 của Liên đoàn Lao động quận"
    plan = parse_plan_text(TCVN3_PLAN)
    assert plan.legacy_encoding == "TCVN3" and "legacy_encoding" in codes(plan)


def test_tcvn3_bytes_decode_through_windows_1252() -> None:
    data = TCVN3_PLAN.encode("cp1252")
    assert to_unicode(decode(data))[0].startswith("Kế hoạch thi đua")


def test_vni_text_is_refused_with_what_to_do() -> None:
    with pytest.raises(LegacyEncodingError, match=r"VNI.*convert it to Unicode"):
        parse_plan_text("Keá hoaïch thi ñua naêm 2024 cuûa Lieân ñoaøn Lao ñoäng quaän")


def test_unicode_text_is_left_alone_and_composed() -> None:
    decomposed = unicodedata.normalize("NFD", "Kế hoạch thi đua")
    assert to_unicode(decomposed) == ("Kế hoạch thi đua", None)
