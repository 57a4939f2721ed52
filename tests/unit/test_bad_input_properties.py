"""Bad input never wins: whatever arrives, the readers and the rules answer with a result or a clear error
naming the field — never a crash (property-based, with hypothesis)."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.plans import domain as plans_domain
from services.reporting import domain as reporting_domain
from shared.documents import read_plan_document
from shared.documents.edxml import NAMESPACE, read_package, read_status
from shared.documents.errors import DocumentError
from shared.documents.plan_text import ParsedPlan, parse_plan_text
from shared.errors import FieldError
from shared.events import Indicator, IndicatorKind

# Text shaped like plans: their words, dates (possible or not), numbers, bullets, quotes, Unicode forms.
WORDS = st.sampled_from(
    [
        "KẾ HOẠCH",
        "Số:",
        "19/KH-LĐLĐ",
        "LĐLD",
        "LÐLÐ",
        "ngày",
        "tháng",
        "năm",
        "Đợt 1",
        "Giai đoạn II",
        "từ",
        "đến",
        "khi phát động",
        "Đại hội Công đoàn quận Long Biên lần thứ V",
        "Thực hiện Kế hoạch số",
        "Căn cứ",
        "chậm nhất sau 2 ngày kết thúc từng giai đoạn",
        "trước ngày 15 tháng cuối quý",
        "hàng quý",
        "Nơi nhận:",
        "- CĐCS (t/h);",
        "- Lưu VP.",
        "TM. BAN THƯỜNG VỤ",
        "CHỦ TỊCH",
        "Phan Thị Thu Hằng",
        "lựa chọn 01 tập thể và 01 cá nhân",
        "đề nghị LĐLĐ Thành phố khen thưởng",
        "tối thiểu",
        "20%",
        "30/02/2023",
        "01/5/2023",
        "“Lao động giỏi”",
        "phong trào",
        "\n",
        "\n\n",
        "•",
        ":",
        "(",
        ")",
        "µ¸",
    ]
)
PLANLIKE = st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=60).map(" ".join)


def all_text(plan: ParsedPlan) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(plan.model_dump(mode="json"))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PLANLIKE, st.sampled_from(["NFC", "NFD"]))
def test_any_text_reads_as_a_plan_with_warnings_or_a_clear_refusal(text: str, form: str) -> None:
    try:
        plan = parse_plan_text(unicodedata.normalize(form, text))
    except DocumentError as error:
        assert error.field == "document" and str(error)
        return
    assert all(unicodedata.is_normalized("NFC", value) for value in all_text(plan))
    assert all(warning.code and warning.message for warning in plan.warnings)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda data: b"PK\x03\x04" + data),
        st.binary(max_size=300).map(lambda data: b"%PDF-1.4\n" + data),
        st.text(max_size=200).map(
            lambda t: f'<edXMLEnvelope xmlns="{NAMESPACE}">{t}</edXMLEnvelope>'.encode()
        ),
    )
)
def test_any_file_is_read_or_refused_naming_the_part(data: bytes) -> None:
    try:
        read_plan_document(data, "file")
    except DocumentError as error:
        assert error.field and str(error)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_edxml_are_a_package_or_a_clear_refusal(data: bytes) -> None:
    for reader in (read_package, read_status):
        try:
            reader(data)
        except DocumentError as error:
            assert error.field and str(error)


INDICATORS = [
    Indicator(code="works", name="Công trình", kind=IndicatorKind.count),
    Indicator(code="share", name="Sáng kiến", kind=IndicatorKind.ratio),
    Indicator(code="deployed", name="Triển khai", kind=IndicatorKind.yes_no),
    Indicator(code="story", name="Thuyết minh", kind=IndicatorKind.text),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["works", "share", "deployed", "story", "other"]), JSON, max_size=5))
def test_any_report_values_are_checked_field_by_field(values: dict[str, Any]) -> None:
    problems = reporting_domain.check_values(INDICATORS, values)
    assert all(isinstance(p, FieldError) and p.field.startswith("values.") for p in problems)
    if not problems:
        figures = reporting_domain.figures(INDICATORS, values)
        assert all(isinstance(number, int) and number >= 0 for number in figures.values())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"\d{1,4}/[A-ZĐ]{1,4}-[A-ZĐa-z]{1,8}", fullmatch=True)))
def test_any_plan_number_is_read_or_refused_naming_the_field(text: str) -> None:
    try:
        number = plans_domain.parse_number(text)
    except FieldError as error:
        assert error.field == "number"
        return
    assert number.number >= 0
