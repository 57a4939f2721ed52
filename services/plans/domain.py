"""Rules of the plans service, over plain data: no database, no broker."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import yaml
from pydantic import ValidationError

from shared.errors import FieldError
from shared.events import LEVEL_RANK, DeadlineRule, Goal, Indicator, IndicatorKind, Level, OrgUnit, Phase

ORG_COLUMNS = ("id", "name", "level", "parent_id", "sector", "email", "has_ioffice", "valid_from", "valid_to")


def read_org_file(name: str, content: str) -> list[OrgUnit]:
    """Units from a CSV (header row with ORG_COLUMNS) or YAML (a list of mappings) file."""
    if name.lower().endswith((".yaml", ".yml")):
        loaded = yaml.safe_load(content) or []
        rows = loaded.get("units", []) if isinstance(loaded, dict) else loaded
        if not isinstance(rows, list):
            raise FieldError("units", type(rows).__name__, "a list of units")
    elif name.lower().endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(content)))
    else:
        raise FieldError("file", name, "a .csv, .yaml or .yml file")
    return parse_org_rows(rows)


def parse_org_rows(rows: Iterable[dict[str, Any]]) -> list[OrgUnit]:
    """Validate rows of units; the first bad one is named by its row number and field."""
    units = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise FieldError(f"row {number}", row, "a mapping of unit fields")
        cleaned = {key: (None if value in ("", None) else value) for key, value in row.items() if key}
        if isinstance(cleaned.get("has_ioffice"), str):
            cleaned["has_ioffice"] = cleaned["has_ioffice"].strip().lower() in ("1", "true", "yes", "có", "x")
        cleaned.setdefault("valid_from", date(2000, 1, 1).isoformat())
        try:
            units.append(OrgUnit.model_validate(cleaned))
        except ValidationError as error:
            item = error.errors()[0]
            field = ".".join(str(part) for part in item["loc"])
            raise FieldError(f"row {number}: {field}", item.get("input"), item["msg"]) from error
    return units


def check_tree(units: list[OrgUnit], known_levels: dict[str, Level]) -> None:
    """Every parent exists (in the file or already registered) and stands above its child."""
    levels = dict(known_levels)
    seen: set[str] = set()
    for unit in units:
        if unit.id in seen:
            raise FieldError("id", unit.id, "each unit only once in a file")
        seen.add(unit.id)
        levels[unit.id] = unit.level
    for unit in units:
        if unit.parent_id is None:
            if unit.level != Level.national and unit.level != Level.province:
                raise FieldError(f"{unit.id}: parent_id", None, "a parent for a district or grassroots unit")
            continue
        parent_level = levels.get(unit.parent_id)
        if parent_level is None:
            raise FieldError(
                f"{unit.id}: parent_id", unit.parent_id, "a unit in the file or already registered"
            )
        if LEVEL_RANK[parent_level] >= LEVEL_RANK[unit.level]:
            raise FieldError(
                f"{unit.id}: parent_id",
                unit.parent_id,
                f"a parent above {unit.level.value} level (it is {parent_level.value})",
            )


def check_phases(phases: list[Phase], milestones: list[str] | None = None) -> None:
    """Phases are numbered 1, 2 … in order, end after they start (or at a milestone of the plan), and
    reports fall due after the end."""
    if not phases:
        raise FieldError("phases", [], "at least one phase")
    for index, phase in enumerate(phases, start=1):
        where = f"phases[{index}]"
        if phase.seq != index:
            raise FieldError(f"{where}.seq", phase.seq, f"phase number {index}")
        if phase.end_milestone is not None and phase.end_milestone not in (milestones or []):
            raise FieldError(f"{where}.end_milestone", phase.end_milestone, "a milestone of this plan")
        if phase.end is None:
            if phase.end_milestone is None:
                raise FieldError(f"{where}.end", None, "a date, or a milestone the phase ends at")
            continue
        if phase.report_due is None:
            raise FieldError(
                f"{where}.report_due", None, "a due date, or a deadline rule of kind after_phase"
            )
        if phase.end < phase.start:
            raise FieldError(
                f"{where}.end", phase.end.isoformat(), f"a day on or after the start {phase.start}"
            )
        if phase.report_due < phase.end:
            raise FieldError(
                f"{where}.report_due", phase.report_due.isoformat(), f"a day on or after the end {phase.end}"
            )


def derive_phases(parent: list[Phase], lead_days: int) -> list[Phase]:
    """A unit's own phases from its parent's: the same periods, reports due `lead_days` earlier.

    The earlier deadline leaves the unit time to consolidate before reporting upward; it never falls
    before the phase's last day.
    """
    derived = []
    for phase in parent:
        if phase.end is None or phase.report_due is None:
            derived.append(phase)  # ends at a milestone not yet scheduled
            continue
        due = max(phase.end, phase.report_due - timedelta(days=lead_days))
        derived.append(phase.model_copy(update={"report_due": due}))
    return derived


@dataclass(frozen=True)
class PhaseMoment:
    """A phase that must now be opened or closed."""

    plan_id: str
    seq: int
    kind: str  # "open" | "close"


def phase_events_due(phases: Iterable[Any], today: date) -> list[PhaseMoment]:
    """Phases to open (started, not yet opened) and to close (ended before today, not yet closed)."""
    moments = []
    for phase in phases:
        if phase.opened_at is None and phase.start <= today:
            moments.append(PhaseMoment(phase.plan_id, phase.seq, "open"))
        if phase.closed_at is None and phase.end is not None and phase.end < today:
            moments.append(PhaseMoment(phase.plan_id, phase.seq, "close"))
    return moments


# ------------------------------------------------------------------ plan numbers (Decree 30/2020)

DOCUMENT_TYPES = {
    "KH": "Kế hoạch",
    "QĐ": "Quyết định",
    "BC": "Báo cáo",
    "TB": "Thông báo",
    "HD": "Hướng dẫn",
    "CT": "Chương trình",
    "CV": "Công văn",
}
NUMBER = re.compile(r"^\s*(\d{1,5})\s*/\s*([A-ZĐ]{1,6})\s*-\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class DocumentNumber:
    """Số: 19/KH-LĐLĐ — the number, the document type, the issuing body."""

    number: int
    type: str
    body: str


def parse_number(text: str) -> DocumentNumber:
    match = NUMBER.match(text)
    if match is None:
        raise FieldError(
            "number", text, "a number like 19/KH-LĐLĐ: number / type - issuing body (Decree 30/2020)"
        )
    return DocumentNumber(int(match.group(1)), match.group(2), match.group(3))


# ------------------------------------------------------------------ phases against each other and the parent


def check_sequence(phases: list[Phase], consecutive: bool) -> None:
    """Phases never overlap; when the plan says they follow one another, none leaves a gap."""
    for earlier, later in itertools.pairwise(phases):
        if earlier.end is None:
            continue  # ends at a milestone: checked when it is scheduled
        field = f"phases[{later.seq}].start"
        if later.start <= earlier.end:
            raise FieldError(
                field,
                later.start.isoformat(),
                f"a day after phase {earlier.seq} ends ({earlier.end}): phases do not overlap",
            )
        next_day = earlier.end + timedelta(days=1)
        if consecutive and later.start != next_day:
            raise FieldError(
                field,
                later.start.isoformat(),
                f"{next_day}, the day after phase {earlier.seq} ends: the phases follow one another",
            )


def check_within_parent(phases: list[Phase], parent: list[Phase], lead_days: int) -> None:
    """A plan implementing another keeps to its phases, and reports early enough for the unit to
    consolidate before the parent's deadline."""
    by_seq = {phase.seq: phase for phase in parent}
    for phase in phases:
        where = f"phases[{phase.seq}]"
        above = by_seq.get(phase.seq)
        if above is None:
            raise FieldError(f"{where}.seq", phase.seq, f"a phase of the parent plan (it has {len(parent)})")
        span = f"within the parent plan's phase {above.seq} ({above.start} – {above.end})"
        if phase.start < above.start:
            raise FieldError(f"{where}.start", phase.start.isoformat(), f"a day {span}")
        if phase.end is None or above.end is None or phase.report_due is None or above.report_due is None:
            continue  # bounded by a milestone: its dates follow the parent's when it is scheduled
        if phase.end > above.end:
            raise FieldError(f"{where}.end", phase.end.isoformat(), f"a day {span}")
        latest = above.report_due - timedelta(days=lead_days)
        if phase.report_due > latest:
            raise FieldError(
                f"{where}.report_due",
                phase.report_due.isoformat(),
                f"{latest} or earlier: {lead_days} day(s) before the parent's deadline ({above.report_due}), "
                "so the unit can consolidate its units' reports",
            )


@dataclass(frozen=True)
class PlanWarning:
    """Something to look at again, that does not stop the plan being issued."""

    code: str
    field: str
    message: str


def warnings_for(number: DocumentNumber, issued_on: date, phases: list[Phase]) -> list[PlanWarning]:
    """Softer problems: the plan is issued anyway."""
    found = []
    if number.type != "KH":
        kind = DOCUMENT_TYPES.get(number.type, number.type)
        found.append(
            PlanWarning(
                "not_a_plan", "number", f"the number is of a {kind} ({number.type}), not a Kế hoạch (KH)"
            )
        )
    for phase in phases:
        if phase.end is not None and phase.report_due == phase.end:
            found.append(
                PlanWarning(
                    "no_time_to_report",
                    f"phases[{phase.seq}].report_due",
                    f"reports on phase {phase.seq} are due the day it ends ({phase.end}): "
                    "units below cannot consolidate in time",
                )
            )
        if phase.start < issued_on:
            found.append(
                PlanWarning(
                    "starts_before_issue",
                    f"phases[{phase.seq}].start",
                    f"phase {phase.seq} starts ({phase.start}) before the plan is issued ({issued_on})",
                )
            )
    return found


# ------------------------------------------------------------------ deadlines as rules

PERIOD_LAST_MONTHS = {"quarter": (3, 6, 9, 12), "half_year": (6, 12), "year": (12,)}
PERIOD_NAMES = {"quarter": "quý", "half_year": "6 tháng", "year": "năm"}


@dataclass(frozen=True)
class Deadline:
    """A concrete due date a rule gives, for a phase or a period."""

    rule: int  # the rule's position in the plan, from 1
    kind: str
    purpose: str
    due_on: date
    phase_seq: int | None = None
    period: str | None = None


def check_rules(rules: list[DeadlineRule]) -> None:
    """Each rule carries what its kind needs."""
    needs = {"after_phase": "days", "periodic": "period", "fixed": "due_on"}
    for index, rule in enumerate(rules, start=1):
        needed = needs[rule.kind]
        if getattr(rule, needed) is None:
            raise FieldError(
                f"deadlines[{index}].{needed}", None, f"a value: a {rule.kind} deadline needs {needed}"
            )
        if rule.kind == "periodic" and rule.day_of_month is None:
            raise FieldError(
                f"deadlines[{index}].day_of_month",
                None,
                "the day of the period's last month reports come before",
            )


def expand_deadlines(rules: list[DeadlineRule], phases: list[Phase]) -> list[Deadline]:
    """Every due date the rules give over the plan's phases, in date order."""
    ends = [phase.end for phase in phases if phase.end is not None]
    if not ends:
        return []
    first, last = phases[0].start, max(ends)
    found: list[Deadline] = []
    for index, rule in enumerate(rules, start=1):
        if rule.kind == "after_phase" and rule.days is not None:
            found += [
                Deadline(
                    index, rule.kind, rule.purpose, phase.end + timedelta(days=rule.days), phase_seq=phase.seq
                )
                for phase in phases
                if phase.end is not None
            ]
        elif rule.kind == "periodic" and rule.period and rule.day_of_month:
            for year in range(first.year, last.year + 1):
                for number, month in enumerate(PERIOD_LAST_MONTHS[rule.period], start=1):
                    period_end = (date(year, month, 28) + timedelta(days=4)).replace(day=1) - timedelta(
                        days=1
                    )
                    months = 12 // len(PERIOD_LAST_MONTHS[rule.period])
                    period_start = date(year, month - months + 1, 1)
                    if period_end < first or period_start > last:
                        continue
                    label = (
                        f"{PERIOD_NAMES[rule.period]} {number}/{year}"
                        if rule.period != "year"
                        else f"năm {year}"
                    )
                    due = date(year, month, rule.day_of_month) - timedelta(
                        days=1
                    )  # "trước ngày 15": by the 14th
                    found.append(Deadline(index, rule.kind, rule.purpose, due, period=label))
        elif rule.kind == "fixed" and rule.due_on:
            found.append(Deadline(index, rule.kind, rule.purpose, rule.due_on))
    return sorted(found, key=lambda d: (d.due_on, d.rule))


def report_due_by_rule(rules: list[DeadlineRule], phase_end: date) -> date | None:
    """A phase's report deadline from the plan's after-phase rule, if it has one."""
    for rule in rules:
        if rule.kind == "after_phase" and rule.purpose == "report" and rule.days is not None:
            return phase_end + timedelta(days=rule.days)
    return None


def derive_rules(rules: list[DeadlineRule], lead_days: int) -> list[DeadlineRule]:
    """A derived plan's deadline rules: each `lead_days` earlier than its parent's, so the unit can
    consolidate before reporting upward."""
    derived = []
    for rule in rules:
        if rule.kind == "after_phase" and rule.days is not None:
            derived.append(rule.model_copy(update={"days": max(0, rule.days - lead_days)}))
        elif rule.kind == "periodic" and rule.day_of_month is not None:
            derived.append(rule.model_copy(update={"day_of_month": max(2, rule.day_of_month - lead_days)}))
        elif rule.kind == "fixed" and rule.due_on is not None:
            derived.append(rule.model_copy(update={"due_on": rule.due_on - timedelta(days=lead_days)}))
    return derived


def reschedule(
    phases: list[Phase], milestone_id: str, on: date, due_for: dict[int, date | None]
) -> list[Phase]:
    """The phases once a milestone is dated: those bound to it end then, and fall due as `due_for` says
    (from the plan's rule, or its parent's new deadline); a milestone before a phase starts is refused."""
    updated = []
    for phase in phases:
        if phase.end_milestone != milestone_id:
            updated.append(phase)
            continue
        if on < phase.start:
            raise FieldError(
                "on", on.isoformat(), f"a day on or after phase {phase.seq} starts ({phase.start})"
            )
        due = due_for.get(phase.seq) or on
        updated.append(phase.model_copy(update={"end": on, "report_due": max(due, on)}))
    return updated


def check_goals(goals: list[Goal], indicators: list[Indicator]) -> None:
    """Each goal is over an indicator of the plan that can measure it: a percentage over a ratio (its
    numerator and denominator) or a yes/no (the share of units saying yes), a count over a count."""
    kinds = {indicator.code: indicator.kind for indicator in indicators}
    for index, goal in enumerate(goals, start=1):
        where = f"goals[{index}]"
        kind = kinds.get(goal.indicator)
        if kind is None:
            known = ", ".join(sorted(kinds)) or "none yet"
            raise FieldError(f"{where}.indicator", goal.indicator, f"an indicator of this plan ({known})")
        if goal.unit == "%" and kind not in (IndicatorKind.ratio, IndicatorKind.yes_no):
            raise FieldError(
                f"{where}.unit", goal.unit, f"count: indicator {goal.indicator} is a {kind.value}"
            )
        if goal.unit == "count" and kind != IndicatorKind.count:
            raise FieldError(f"{where}.unit", goal.unit, f"%: indicator {goal.indicator} is a {kind.value}")
        if goal.unit == "%" and goal.value > 100:
            raise FieldError(f"{where}.value", goal.value, "a percentage, at most 100")
