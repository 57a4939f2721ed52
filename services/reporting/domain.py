"""Rules of the reporting service, over plain data.

A unit's *contribution* to a phase is what it adds to every level above it: whether it reported, on
time or late, or is missing, and the figures of its latest report. Aggregates move by the difference
between a unit's new and old contribution — so the same reports give the same totals whatever order
they arrive in, however often they are redelivered, and however often a unit corrects itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.clock import LOCAL_TZ
from shared.errors import FieldError
from shared.events import Indicator, IndicatorKind

COUNTERS = ("expected", "received", "on_time", "late", "missing")


def check_values(indicators: Iterable[Indicator], values: Mapping[str, Any]) -> list[FieldError]:
    """Every problem with a report's figures, each naming the indicator, the value and what was expected."""
    by_code = {indicator.code: indicator for indicator in indicators}
    errors = []
    for code, value in values.items():
        indicator = by_code.get(code)
        field = f"values.{code}"
        if indicator is None:
            errors.append(
                FieldError(field, value, f"an indicator of this plan ({', '.join(sorted(by_code))})")
            )
            continue
        if indicator.kind == IndicatorKind.count:
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(FieldError(field, value, f"a whole number for {indicator.name}"))
            elif value < 0:
                errors.append(FieldError(field, value, f"zero or more for {indicator.name}"))
        elif indicator.kind == IndicatorKind.ratio:
            errors.extend(_check_ratio(field, indicator, value))
        elif indicator.kind == IndicatorKind.yes_no:
            if not isinstance(value, bool):
                errors.append(FieldError(field, value, f"yes or no (true / false) for {indicator.name}"))
        elif not isinstance(value, str):
            errors.append(FieldError(field, value, f"text for {indicator.name}"))
    for code, indicator in by_code.items():
        if code not in values and indicator.kind != IndicatorKind.text:
            errors.append(FieldError(f"values.{code}", None, f"a figure for {indicator.name}"))
    return errors


def _check_ratio(field: str, indicator: Indicator, value: Any) -> list[FieldError]:
    if not isinstance(value, dict) or set(value) != {"numerator", "denominator"}:
        return [FieldError(field, value, f"{{numerator, denominator}} for {indicator.name}")]
    numerator, denominator = value["numerator"], value["denominator"]
    for part, number in (("numerator", numerator), ("denominator", denominator)):
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or number != int(number)
            or number < 0
        ):
            return [FieldError(f"{field}.{part}", number, "a whole number, zero or more")]
    if numerator > denominator:
        return [FieldError(f"{field}.numerator", numerator, f"at most the denominator {denominator}")]
    return []


def figures(indicators: Iterable[Indicator], values: Mapping[str, Any]) -> dict[str, int]:
    """The numbers a report adds up the tree: counts, numerators and denominators, yeses."""
    out: dict[str, int] = {}
    for indicator in indicators:
        value = values.get(indicator.code)
        if value is None:
            continue
        if indicator.kind == IndicatorKind.count:
            out[indicator.code] = int(value)
        elif indicator.kind == IndicatorKind.ratio:
            out[f"{indicator.code}.numerator"] = int(value["numerator"])
            out[f"{indicator.code}.denominator"] = int(value["denominator"])
        elif indicator.kind == IndicatorKind.yes_no:
            out[indicator.code] = 1 if value else 0
    return out


@dataclass(frozen=True)
class Version:
    """One submitted version of a unit's report."""

    report_id: str
    submitted_at: datetime
    values: Mapping[str, Any]


@dataclass
class Contribution:
    expected: int = 0
    received: int = 0
    on_time: int = 0
    late: int = 0
    missing: int = 0
    figures: dict[str, int] = field(default_factory=dict)
    report_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "received": self.received,
            "on_time": self.on_time,
            "late": self.late,
            "missing": self.missing,
            "figures": dict(self.figures),
            "report_id": self.report_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Contribution:
        if not data:
            return cls()
        return cls(
            expected=data["expected"],
            received=data["received"],
            on_time=data["on_time"],
            late=data["late"],
            missing=data["missing"],
            figures=dict(data["figures"]),
            report_id=data.get("report_id"),
        )


def latest(versions: Iterable[Version]) -> Version | None:
    """The version that counts: the last submitted (report id breaks a tie, so any order agrees)."""
    return max(versions, key=lambda v: (v.submitted_at, v.report_id), default=None)


def is_on_time(submitted_at: datetime, due: date) -> bool:
    """On time when submitted by the end of the due day, Vietnam time."""
    return submitted_at.astimezone(LOCAL_TZ).date() <= due


def days_late(submitted_at: datetime, due: date) -> int:
    """How many days after the due day a report came (0 when on time)."""
    return max(0, (submitted_at.astimezone(LOCAL_TZ).date() - due).days)


def contribution(
    versions: list[Version], due: date, overdue: bool, indicators: Iterable[Indicator], expected: bool = True
) -> Contribution:
    """What one unit's report (or its absence) adds to every level above it.

    A unit adds to the levels of the plan it is expected to report on for that phase; on any other plan
    (it moved away before the phase began) its reports are kept but add nothing.
    Timeliness goes by the first version: a unit that reported on time and corrects later stays on time.
    A unit found missing at the deadline counts as missing until a (late) report arrives.
    """
    if not expected:
        return Contribution()
    counted = latest(versions)
    if counted is None:
        return Contribution(expected=1, missing=1 if overdue else 0)
    first = min(versions, key=lambda v: (v.submitted_at, v.report_id))
    on_time = is_on_time(first.submitted_at, due)
    return Contribution(
        expected=1,
        received=1,
        on_time=1 if on_time else 0,
        late=0 if on_time else 1,
        figures=figures(indicators, counted.values),
        report_id=counted.report_id,
    )


def status_of(applied: Contribution) -> str:
    """A unit's report as a word: on_time, late, missing (deadline passed, nothing in) or pending."""
    if applied.on_time:
        return "on_time"
    if applied.late:
        return "late"
    return "missing" if applied.missing else "pending"


def difference(new: Contribution, old: Contribution) -> dict[str, int]:
    """What to add to each aggregate above the unit; an empty dict when nothing changed."""
    delta = {name: getattr(new, name) - getattr(old, name) for name in COUNTERS}
    for code in set(new.figures) | set(old.figures):
        delta[f"figures.{code}"] = new.figures.get(code, 0) - old.figures.get(code, 0)
    return {name: change for name, change in delta.items() if change}


# What each review step may follow (DHIS2's data approval, in the federation's words).
REVIEW_STEPS = {
    "approve": ("submitted",),
    "return": ("submitted", "approved", "accepted"),
    "accept": ("submitted", "approved"),
}
REVIEW_STATE = {"approve": "approved", "return": "returned", "accept": "accepted"}
LOCKED = ("approved", "accepted")


def review_error(action: str, current: str | None, consolidated: bool) -> str | None:
    """Why a review step cannot be taken now (None when it can)."""
    if current is None:
        return "a report that has been submitted"
    if action == "accept" and not consolidated:
        return "a consolidated report (units' own reports are approved, not accepted)"
    if current not in REVIEW_STEPS[action]:
        return f"a report that is {' or '.join(REVIEW_STEPS[action])} (this one is {current})"
    return None


def ratio_of(figures_: Mapping[str, int], code: str) -> float | None:
    """A ratio indicator from summed numerator over summed denominator (None when nothing to divide)."""
    denominator = figures_.get(f"{code}.denominator", 0)
    return figures_.get(f"{code}.numerator", 0) / denominator if denominator else None
