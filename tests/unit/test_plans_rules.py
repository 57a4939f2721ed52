"""Plans rules: the org file, the tree, phases, derivation and the phase schedule."""

from dataclasses import dataclass
from datetime import date, datetime

import pytest

from services.plans import domain
from shared.errors import FieldError
from shared.events import DeadlineRule, Goal, Indicator, IndicatorKind, Level, Phase

CSV = """id,name,level,parent_id,sector,email,has_ioffice,valid_from,valid_to
hn,LĐLĐ thành phố Hà Nội,province,,,,x,2020-01-01,
hn-lb,LĐLĐ quận Long Biên,district,hn,,,yes,2020-01-01,
hn-lb-01,CĐCS Trường THCS Gia Thụy,grassroots,hn-lb,school,cd@example.vn,0,2020-01-01,
"""


def phase(seq: int, start: str, end: str, due: str) -> Phase:
    return Phase(
        seq=seq,
        label=f"Đợt {seq}",
        start=date.fromisoformat(start),
        end=date.fromisoformat(end),
        report_due=date.fromisoformat(due),
    )


def test_a_csv_file_of_units_is_read() -> None:
    units = domain.read_org_file("units.csv", CSV)
    assert [u.id for u in units] == ["hn", "hn-lb", "hn-lb-01"]
    assert units[0].has_ioffice and not units[2].has_ioffice
    assert units[2].sector is not None and units[2].sector.value == "school"
    domain.check_tree(units, {})


def test_a_yaml_file_of_units_is_read() -> None:
    units = domain.read_org_file("units.yaml", "units:\n  - {id: hn, name: Hà Nội, level: province}\n")
    assert units[0].level == Level.province


def test_a_bad_row_is_named_by_number_and_field() -> None:
    with pytest.raises(FieldError) as error:
        domain.read_org_file("units.csv", CSV.replace("grassroots,hn-lb", "cơ sở,hn-lb"))
    assert error.value.field == "row 3: level"
    assert error.value.value == "cơ sở"


def test_an_unknown_file_type_is_refused() -> None:
    with pytest.raises(FieldError, match=r"a \.csv, \.yaml or \.yml file"):
        domain.read_org_file("units.xlsx", "")


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        ("hn-lb-01,CĐCS Trường THCS Gia Thụy,grassroots,hn-lb,", "hn-lb-01: parent_id", "a unit in the file"),
        ("hn-lb,LĐLĐ quận Long Biên,district,hn,", "hn-lb: parent_id", "a parent above district level"),
    ],
)
def test_the_tree_must_hang_together(edit: str, field: str, expected: str) -> None:
    text = CSV
    if field.startswith("hn-lb-01"):
        text = text.replace(edit, edit.replace("hn-lb,", "hn-cg,"))
    else:
        text = text.replace(edit, edit.replace(",hn,", ",hn-lb-01,"))
    with pytest.raises(FieldError) as error:
        domain.check_tree(domain.read_org_file("units.csv", text), {})
    assert error.value.field == field
    assert expected in error.value.expected


def test_phases_must_be_in_order_and_end_after_they_start() -> None:
    domain.check_phases([phase(1, "2023-03-01", "2023-05-31", "2023-06-07")])
    with pytest.raises(FieldError) as error:
        domain.check_phases([phase(1, "2023-06-01", "2023-05-31", "2023-06-07")])
    assert error.value.field == "phases[1].end"
    with pytest.raises(FieldError) as error:
        domain.check_phases([phase(1, "2023-03-01", "2023-05-31", "2023-05-30")])
    assert error.value.field == "phases[1].report_due"
    with pytest.raises(FieldError) as error:
        domain.check_phases([phase(2, "2023-03-01", "2023-05-31", "2023-06-07")])
    assert error.value.field == "phases[1].seq"


def test_derived_phases_report_earlier_but_never_before_the_end() -> None:
    parent = [
        phase(1, "2023-03-01", "2023-05-31", "2023-06-07"),
        phase(2, "2023-06-01", "2023-09-30", "2023-10-01"),
    ]
    derived = domain.derive_phases(parent, lead_days=2)
    assert [p.report_due for p in derived] == [date(2023, 6, 5), date(2023, 9, 30)]
    assert [(p.start, p.end) for p in derived] == [(p.start, p.end) for p in parent]


@dataclass
class Row:
    plan_id: str
    seq: int
    start: date
    end: date
    opened_at: datetime | None = None
    closed_at: datetime | None = None


def test_phases_open_on_their_first_day_and_close_the_day_after_their_last() -> None:
    rows = [
        Row("p", 1, date(2023, 3, 1), date(2023, 5, 31)),
        Row("p", 2, date(2023, 6, 1), date(2023, 9, 30)),
    ]
    assert domain.phase_events_due(rows, date(2023, 2, 28)) == []
    assert [(m.seq, m.kind) for m in domain.phase_events_due(rows, date(2023, 5, 31))] == [(1, "open")]
    assert [(m.seq, m.kind) for m in domain.phase_events_due(rows, date(2023, 6, 1))] == [
        (1, "open"),
        (1, "close"),
        (2, "open"),
    ]
    rows[0].opened_at = rows[0].closed_at = datetime(2023, 6, 1)
    assert [(m.seq, m.kind) for m in domain.phase_events_due(rows, date(2023, 6, 1))] == [(2, "open")]


def test_a_plan_number_reads_number_type_and_issuing_body() -> None:
    assert domain.parse_number("19/KH-LĐLĐ") == domain.DocumentNumber(19, "KH", "LĐLĐ")
    assert domain.parse_number(" 80 / KH - LĐLĐ ") == domain.DocumentNumber(80, "KH", "LĐLĐ")
    with pytest.raises(FieldError) as error:
        domain.parse_number("Kế hoạch 19")
    assert (error.value.field, error.value.value) == ("number", "Kế hoạch 19")
    assert "a number like 19/KH-LĐLĐ" in error.value.expected


def test_phases_may_not_overlap_and_follow_one_another_when_the_plan_says_so() -> None:
    first = phase(1, "2023-03-01", "2023-05-31", "2023-06-07")
    domain.check_sequence([first, phase(2, "2023-07-01", "2023-09-30", "2023-10-07")], consecutive=False)
    with pytest.raises(FieldError) as error:
        domain.check_sequence([first, phase(2, "2023-05-31", "2023-09-30", "2023-10-07")], consecutive=False)
    assert (error.value.field, error.value.value) == ("phases[2].start", "2023-05-31")
    assert error.value.expected == "a day after phase 1 ends (2023-05-31): phases do not overlap"
    with pytest.raises(FieldError) as error:
        domain.check_sequence([first, phase(2, "2023-07-01", "2023-09-30", "2023-10-07")], consecutive=True)
    assert (error.value.field, error.value.value) == ("phases[2].start", "2023-07-01")
    assert error.value.expected == "2023-06-01, the day after phase 1 ends: the phases follow one another"


@pytest.mark.parametrize(
    ("child", "field", "expected"),
    [
        (
            phase(1, "2023-02-20", "2023-05-31", "2023-06-05"),
            "phases[1].start",
            "a day within the parent plan's phase 1 (2023-03-01 – 2023-05-31)",
        ),
        (
            phase(1, "2023-03-01", "2023-06-02", "2023-06-05"),
            "phases[1].end",
            "a day within the parent plan's phase 1 (2023-03-01 – 2023-05-31)",
        ),
        (
            phase(1, "2023-03-01", "2023-05-31", "2023-06-07"),
            "phases[1].report_due",
            "2023-06-06 or earlier: 1 day(s) before the parent's deadline (2023-06-07), "
            "so the unit can consolidate its units' reports",
        ),
        (
            phase(2, "2023-03-01", "2023-05-31", "2023-06-05"),
            "phases[2].seq",
            "a phase of the parent plan (it has 1)",
        ),
    ],
)
def test_a_child_plan_keeps_within_its_parent(child: Phase, field: str, expected: str) -> None:
    parent = [phase(1, "2023-03-01", "2023-05-31", "2023-06-07")]
    with pytest.raises(FieldError) as error:
        domain.check_within_parent([child], parent, lead_days=1)
    assert (error.value.field, error.value.expected) == (field, expected)


def test_softer_problems_are_warnings() -> None:
    found = domain.warnings_for(
        domain.DocumentNumber(5, "QĐ", "LĐLĐ"),
        date(2023, 3, 5),
        [phase(1, "2023-03-01", "2023-05-31", "2023-05-31")],
    )
    assert [(w.code, w.field) for w in found] == [
        ("not_a_plan", "number"),
        ("no_time_to_report", "phases[1].report_due"),
        ("starts_before_issue", "phases[1].start"),
    ]


def test_deadline_rules_expand_to_dates() -> None:
    phases = [
        phase(1, "2023-03-01", "2023-05-31", "2023-06-07"),
        phase(2, "2023-06-01", "2023-12-31", "2024-01-05"),
    ]
    rules = [
        DeadlineRule(kind="after_phase", days=2, text="chậm nhất sau 2 ngày kết thúc từng giai đoạn"),
        DeadlineRule(kind="periodic", period="quarter", day_of_month=15, text="trước ngày 15 tháng cuối quý"),
        DeadlineRule(kind="fixed", purpose="registration", due_on=date(2023, 3, 20)),
    ]
    found = [
        (d.rule, d.due_on.isoformat(), d.phase_seq, d.period) for d in domain.expand_deadlines(rules, phases)
    ]
    assert found == [
        (2, "2023-03-14", None, "quý 1/2023"),
        (3, "2023-03-20", None, None),
        (1, "2023-06-02", 1, None),
        (2, "2023-06-14", None, "quý 2/2023"),
        (2, "2023-09-14", None, "quý 3/2023"),
        (2, "2023-12-14", None, "quý 4/2023"),
        (1, "2024-01-02", 2, None),
    ]
    assert domain.report_due_by_rule(rules, date(2023, 5, 31)) == date(2023, 6, 2)
    yearly = DeadlineRule(kind="periodic", period="half_year", day_of_month=10)
    assert [d.period for d in domain.expand_deadlines([yearly], phases)] == [
        "6 tháng 1/2023",
        "6 tháng 2/2023",
    ]


def test_a_rule_missing_what_its_kind_needs_is_refused() -> None:
    with pytest.raises(FieldError) as error:
        domain.check_rules([DeadlineRule(kind="fixed")])
    assert (error.value.field, error.value.expected) == (
        "deadlines[1].due_on",
        "a value: a fixed deadline needs due_on",
    )
    with pytest.raises(FieldError) as error:
        domain.check_rules([DeadlineRule(kind="periodic", period="quarter")])
    assert error.value.field == "deadlines[1].day_of_month"


def test_derived_rules_come_earlier() -> None:
    rules = [
        DeadlineRule(kind="after_phase", days=5),
        DeadlineRule(kind="periodic", period="quarter", day_of_month=15),
        DeadlineRule(kind="fixed", due_on=date(2023, 3, 20)),
    ]
    derived = domain.derive_rules(rules, lead_days=2)
    assert (derived[0].days, derived[1].day_of_month, derived[2].due_on) == (3, 13, date(2023, 3, 18))


INDICATORS = [
    Indicator(code="initiative_staff", name="CNVCLĐ có sáng kiến", kind=IndicatorKind.ratio),
    Indicator(code="works", name="Công trình", kind=IndicatorKind.count),
]


def test_goals_are_over_an_indicator_that_can_measure_them() -> None:
    goal = Goal(
        text="≥ 20% CNVCLĐ có sáng kiến", indicator="initiative_staff", comparator=">=", value=20, unit="%"
    )
    domain.check_goals(
        [goal, Goal(text="01 công trình", indicator="works", comparator=">=", value=1, unit="count")],
        INDICATORS,
    )
    for wrong, field, expected in (
        (
            goal.model_copy(update={"indicator": "staff"}),
            "goals[1].indicator",
            "an indicator of this plan (initiative_staff, works)",
        ),
        (
            goal.model_copy(update={"indicator": "works"}),
            "goals[1].unit",
            "count: indicator works is a count",
        ),
        (goal.model_copy(update={"value": 120}), "goals[1].value", "a percentage, at most 100"),
    ):
        with pytest.raises(FieldError) as error:
            domain.check_goals([wrong], INDICATORS)
        assert (error.value.field, error.value.expected) == (field, expected)
