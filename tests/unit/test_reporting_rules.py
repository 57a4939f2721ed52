"""Reporting rules: report checks, timeliness, and contributions that add up the same in any order."""

import itertools
from datetime import UTC, date, datetime

import pytest

from services.reporting import domain
from shared.events import Indicator, IndicatorKind

INDICATORS = [
    Indicator(code="new_members", name="Đoàn viên mới", kind=IndicatorKind.count),
    Indicator(code="initiative_staff", name="CNVCLĐ có sáng kiến", kind=IndicatorKind.ratio),
    Indicator(code="plan_deployed", name="Đã triển khai", kind=IndicatorKind.yes_no),
    Indicator(code="narrative", name="Tóm tắt", kind=IndicatorKind.text),
]
GOOD = {"new_members": 3, "initiative_staff": {"numerator": 5, "denominator": 20}, "plan_deployed": True}
DUE = date(2023, 6, 5)


def at(day: int, hour: int = 2) -> datetime:
    return datetime(2023, 6, day, hour, tzinfo=UTC)


def test_a_good_report_has_no_problems() -> None:
    assert domain.check_values(INDICATORS, GOOD) == []


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({**GOOD, "members_new": 3}, "values.members_new", "an indicator of this plan"),
        ({**GOOD, "new_members": -1}, "values.new_members", "zero or more"),
        ({**GOOD, "new_members": 2.5}, "values.new_members", "a whole number"),
        ({**GOOD, "new_members": True}, "values.new_members", "a whole number"),
        ({**GOOD, "plan_deployed": "có"}, "values.plan_deployed", "yes or no"),
        (
            {**GOOD, "initiative_staff": {"numerator": 21, "denominator": 20}},
            "values.initiative_staff.numerator",
            "at most the denominator 20",
        ),
        ({**GOOD, "initiative_staff": 0.25}, "values.initiative_staff", "{numerator, denominator}"),
        ({k: v for k, v in GOOD.items() if k != "new_members"}, "values.new_members", "a figure for"),
    ],
)
def test_each_bad_value_is_named_with_what_was_expected(values: dict, field: str, message: str) -> None:
    errors = domain.check_values(INDICATORS, values)
    assert [error.field for error in errors] == [field]
    assert message in errors[0].expected


def test_on_time_means_by_the_end_of_the_due_day_in_vietnam() -> None:
    assert domain.is_on_time(datetime(2023, 6, 5, 16, 59, tzinfo=UTC), DUE)  # 23:59 in Hà Nội
    assert not domain.is_on_time(datetime(2023, 6, 5, 17, 0, tzinfo=UTC), DUE)  # 00:00 next day


def test_timeliness_follows_the_first_version_and_figures_the_latest() -> None:
    first = domain.Version("a", at(3), GOOD)
    correction = domain.Version("b", at(7), {**GOOD, "new_members": 10})
    result = domain.contribution([correction, first], DUE, overdue=False, indicators=INDICATORS)
    assert (result.received, result.on_time, result.late, result.missing) == (1, 1, 0, 0)
    assert result.figures["new_members"] == 10
    assert result.figures["initiative_staff.denominator"] == 20
    assert result.report_id == "b"


def test_missing_until_a_late_report_arrives() -> None:
    missing = domain.contribution([], DUE, overdue=True, indicators=INDICATORS)
    assert (missing.received, missing.missing) == (0, 1)
    late = domain.contribution([domain.Version("a", at(7), GOOD)], DUE, overdue=True, indicators=INDICATORS)
    assert domain.difference(late, missing) == {
        "received": 1,
        "late": 1,
        "missing": -1,
        "figures.new_members": 3,
        "figures.initiative_staff.numerator": 5,
        "figures.initiative_staff.denominator": 20,
        "figures.plan_deployed": 1,
    }


def test_any_arrival_order_gives_the_same_totals() -> None:
    versions = [
        domain.Version("a", at(3), GOOD),
        domain.Version("b", at(4), {**GOOD, "new_members": 7}),
        domain.Version("c", at(6), {**GOOD, "new_members": 4, "plan_deployed": False}),
    ]
    finals = set()
    for order in itertools.permutations(versions):
        applied = domain.Contribution()
        total: dict[str, int] = {}
        seen: list[domain.Version] = []
        for version in order:
            seen.append(version)
            new = domain.contribution(seen, DUE, overdue=False, indicators=INDICATORS)
            for name, change in domain.difference(new, applied).items():
                total[name] = total.get(name, 0) + change
            applied = new
        finals.add(tuple(sorted((name, value) for name, value in total.items() if value)))
    assert len(finals) == 1
    (final,) = finals
    assert dict(final)["figures.new_members"] == 4
    assert dict(final)["on_time"] == 1
    assert "figures.plan_deployed" not in dict(final)  # the latest said no: adds 0


def test_ratio_is_computed_from_summed_parts() -> None:
    assert domain.ratio_of({"r.numerator": 3, "r.denominator": 12}, "r") == 0.25
    assert domain.ratio_of({}, "r") is None


def test_a_unit_that_moves_away_takes_its_expected_report_and_figures_along() -> None:
    here = domain.contribution([domain.Version("a", at(3), GOOD)], DUE, overdue=False, indicators=INDICATORS)
    gone = domain.contribution([domain.Version("a", at(3), GOOD)], DUE, False, INDICATORS, expected=False)
    assert gone == domain.Contribution()
    delta = domain.difference(gone, here)
    assert (delta["expected"], delta["received"], delta["on_time"]) == (-1, -1, -1)
    assert delta["figures.new_members"] == -3
    waiting = domain.contribution([], DUE, overdue=False, indicators=INDICATORS)
    assert domain.difference(waiting, domain.Contribution()) == {"expected": 1}
