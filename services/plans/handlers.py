"""Commands and event handlers of the plans service (the service layer)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session, col, select

from services.plans import domain
from services.plans.models import (
    Amendment,
    Delivery,
    OrgUnitVersion,
    Plan,
    PlanDraft,
    PlanPhase,
    PlanTarget,
    Registration,
)
from shared.api import plain_error
from shared.clock import LOCAL_TZ, local_midnight
from shared.consumer import EventHandlers
from shared.documents import document_id_of
from shared.errors import EventRejected, FieldError
from shared.events import (
    LEVEL_RANK,
    MAX_PHASES,
    AwardQuota,
    DeadlineRule,
    Envelope,
    Goal,
    Indicator,
    Level,
    Milestone,
    OrgUnit,
    OrgUnitMoved,
    OrgUnitRegistered,
    Phase,
    PhaseClosed,
    PhaseOpened,
    PlanAcknowledged,
    PlanAmended,
    PlanClosed,
    PlanIssued,
    PlanRef,
    PlanRescheduled,
    PlanRevoked,
    Recipient,
    Sector,
    Signer,
    Target,
)
from shared.ids import new_id
from shared.service import ServiceContext
from shared.settings import Settings
from shared.storage import (
    Database,
    UnitOfWork,
    chunks,
    columns_in,
    insert_rows,
    rows_in,
    table_of,
    update_rows,
)


class PhaseDraft(BaseModel):
    """A phase as written in a plan. No start: from the day the plan is issued (từ khi phát động).
    No end: it ends at `end_milestone` (đến Đại hội …), dated when the milestone is scheduled. No report
    deadline: from the plan's after-phase rule."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    seq: int = Field(ge=1, le=MAX_PHASES)
    label: str
    start: date | None = None
    end: date | None = None
    end_milestone: str | None = None
    report_due: date | None = None


class IssuePlan(BaseModel):
    """Issue a plan (ban hành kế hoạch) to the units below the issuer."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=100, examples=["19/KH-LĐLĐ"])
    issuer_unit_id: str
    title: str = Field(min_length=1, max_length=1000)
    issued_on: date
    place: str = Field(default="", max_length=200, examples=["Long Biên"])
    parent_plan_id: str | None = None
    movements: list[str] = []
    # What each sector does (khối doanh nghiệp, hành chính sự nghiệp, trường học).
    content: dict[Sector, str] = {}
    phases: list[PhaseDraft]
    # Deadlines as the plan states them; expanded to dates at GET /plans/plans/{id}/deadlines.
    deadlines: list[DeadlineRule] = []
    # Events phases may end at, dated now or later (POST /plans/plans/{id}/milestones/{milestone}).
    milestones: list[Milestone] = []
    # Units to execute the plan; by default every unit directly below the issuer on the issue date.
    target_unit_ids: list[str] | None = None
    indicators: list[Indicator] = []
    goals: list[Goal] = []
    signer: Signer | None = None
    award_quota: AwardQuota | None = None
    # Nơi nhận: units above for report (b/c), units below for execution (t/h), the archive (Lưu).
    recipients: list[Recipient] = []
    # The text says the phases follow one another: no gap between them.
    consecutive_phases: bool = False
    # Units below cascade the plan at once with a derived plan of their own (needed at national scale).
    auto_derive: bool = False
    # Reports on a phase are accepted only once it has ended.
    report_after_phase_end: bool = False


# ------------------------------------------------------------------ org registry


def unit_on(session: Session, unit_id: str, on: date) -> OrgUnitVersion | None:
    """The version of a unit in force on a day."""
    return session.exec(
        select(OrgUnitVersion)
        .where(OrgUnitVersion.unit_id == unit_id, OrgUnitVersion.valid_from <= on)
        .where(sa.or_(col(OrgUnitVersion.valid_to).is_(None), col(OrgUnitVersion.valid_to) > on))
    ).first()


def in_force_on(on: date) -> tuple[Any, ...]:
    """Which versions of units are in force on a day."""
    ended_later = sa.or_(col(OrgUnitVersion.valid_to).is_(None), col(OrgUnitVersion.valid_to) > on)
    return col(OrgUnitVersion.valid_from) <= on, ended_later


def units_on(session: Session, unit_ids: list[str], on: date) -> dict[str, OrgUnitVersion]:
    """The versions of units in force on a day, by unit (units unknown that day are left out)."""
    rows = rows_in(session, OrgUnitVersion.unit_id, unit_ids, *in_force_on(on))
    return {row.unit_id: row for row in rows}


def parents_on(session: Session, unit_ids: list[str], on: date) -> dict[str, str | None]:
    """The parent of each unit on a day (units unknown that day are left out), read as plain columns."""
    columns = (OrgUnitVersion.unit_id, OrgUnitVersion.parent_id)
    return dict(columns_in(session, columns, OrgUnitVersion.unit_id, unit_ids, *in_force_on(on)))


CHILD_COLUMNS = (
    OrgUnitVersion.unit_id,
    OrgUnitVersion.name,
    OrgUnitVersion.level,
    OrgUnitVersion.has_ioffice,
)


def children_on(session: Session, unit_id: str, on: date) -> list[Any]:
    """The units directly below `unit_id` on a day, in id order, as rows of `CHILD_COLUMNS` (a cascade
    reads every unit of the federation this way: no ORM objects)."""
    query = (
        sa.select(*CHILD_COLUMNS)
        .where(OrgUnitVersion.parent_id == unit_id, *in_force_on(on))
        .order_by(col(OrgUnitVersion.unit_id))
    )
    return list(session.execute(query).all())


@dataclass(frozen=True)
class Issuer:
    """A unit about to issue a plan, as checking the plan needs it: its version in force on the day of
    issue, the units directly below it (`CHILD_COLUMNS` rows, by unit, in id order) and the plan numbers it
    has used in the year."""

    unit: OrgUnitVersion
    below: dict[str, Any]
    numbers: set[str]

    @classmethod
    def read(cls, session: Session, unit_id: str, on: date) -> Issuer | None:
        """The unit on the day (None when it is not registered then)."""
        unit = unit_on(session, unit_id, on)
        if unit is None:
            return None
        numbers = session.exec(
            select(Plan.number).where(Plan.issuer_unit_id == unit_id, Plan.year == on.year)
        )
        below = {child.unit_id: child for child in children_on(session, unit_id, on)}
        return cls(unit, below, set(numbers))

    @classmethod
    def read_all(
        cls, session: Session, unit_ids: list[str], on: date, numbers: dict[str, list[str]]
    ) -> dict[str, Issuer]:
        """The units registered on the day, by unit, read together (a province's districts in two queries),
        with the numbers each has used in the year (`numbers`, read already)."""
        below: dict[str, dict[str, Any]] = defaultdict(dict)
        columns = (OrgUnitVersion.parent_id, *CHILD_COLUMNS)
        rows = columns_in(session, columns, OrgUnitVersion.parent_id, unit_ids, *in_force_on(on))
        for child in sorted(rows, key=lambda row: row.unit_id):
            below[child.parent_id][child.unit_id] = child
        return {
            unit_id: cls(unit, below[unit_id], set(numbers.get(unit_id, ())))
            for unit_id, unit in units_on(session, unit_ids, on).items()
        }


def subtree(session: Session, unit_id: str, on: date) -> list[str]:
    """The unit and every unit below it on a day."""
    found, frontier = [unit_id], [unit_id]
    seen = {unit_id}
    while frontier:
        frontier = [child.unit_id for parent in frontier for child in children_on(session, parent, on)]
        frontier = [unit for unit in frontier if unit not in seen]
        seen.update(frontier)
        found += frontier
    return found


def current_levels(session: Session) -> dict[str, Level]:
    rows = session.exec(
        select(OrgUnitVersion.unit_id, OrgUnitVersion.level).where(col(OrgUnitVersion.valid_to).is_(None))
    )
    return {unit_id: Level(level) for unit_id, level in rows}


def register_units(uow: UnitOfWork, units: list[OrgUnit]) -> int:
    """Register new units (or new details of known ones); publishes OrgUnitRegistered for each."""
    domain.check_tree(units, current_levels(uow.session))
    open_ended = col(OrgUnitVersion.valid_to).is_(None)
    versions = {
        row.unit_id: row
        for row in rows_in(uow.session, OrgUnitVersion.unit_id, [u.id for u in units], open_ended)
    }
    for unit in units:
        current = versions.pop(unit.id, None)
        if current is not None:
            if current.parent_id != unit.parent_id:
                raise FieldError(
                    f"{unit.id}: parent_id", unit.parent_id, "the same parent (use move to change it)"
                )
            uow.session.delete(current)
        uow.session.add(
            OrgUnitVersion(
                unit_id=unit.id,
                name=unit.name,
                level=unit.level.value,
                parent_id=unit.parent_id,
                sector=unit.sector.value if unit.sector else None,
                email=unit.email,
                has_ioffice=unit.has_ioffice,
                valid_from=unit.valid_from,
                valid_to=unit.valid_to,
            )
        )
    uow.publish_many(
        [OrgUnitRegistered(unit=unit) for unit in units], units=[unit.parent_id or unit.id for unit in units]
    )
    return len(units)


def move_unit(uow: UnitOfWork, unit_id: str, new_parent_id: str, effective_on: date) -> None:
    """A unit moves under another parent from a day on; its history stays where it was."""
    session = uow.session
    current = unit_on(session, unit_id, effective_on)
    if current is None:
        raise FieldError("unit_id", unit_id, f"a unit registered on {effective_on}")
    parent = unit_on(session, new_parent_id, effective_on)
    if parent is None:
        raise FieldError("new_parent_id", new_parent_id, f"a unit registered on {effective_on}")
    if LEVEL_RANK[Level(parent.level)] >= LEVEL_RANK[Level(current.level)]:
        raise FieldError("new_parent_id", new_parent_id, f"a unit above {current.level} level")
    if current.valid_from >= effective_on:
        raise FieldError("effective_on", effective_on.isoformat(), f"a day after {current.valid_from}")
    old_parent = current.parent_id
    current.valid_to = effective_on
    session.add(current)
    session.add(
        OrgUnitVersion(
            unit_id=current.unit_id,
            name=current.name,
            level=current.level,
            parent_id=new_parent_id,
            sector=current.sector,
            email=current.email,
            has_ioffice=current.has_ioffice,
            valid_from=effective_on,
        )
    )
    uow.publish(
        OrgUnitMoved(
            unit_id=unit_id, old_parent_id=old_parent, new_parent_id=new_parent_id, effective_on=effective_on
        ),
        unit=new_parent_id,
    )


# ------------------------------------------------------------------ plans


class Register(BaseModel):
    """Register against a plan: a commitment, a pledge with other units, or a work (công trình)."""

    model_config = ConfigDict(extra="forbid")

    unit_id: str
    kind: Literal["commitment", "pledge", "work"]
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=20_000)


class IssuedPlan(PlanIssued):
    """A plan as issued, with the softer problems found in it."""

    warnings: list[dict[str, str]] = Field(default_factory=list)


def issue_plan(
    uow: UnitOfWork, command: IssuePlan, causation: Envelope | None = None, consolidation_days: int = 1
) -> IssuedPlan:
    """Validate and issue a plan; publishes PlanIssued. Raises FieldError naming what is wrong; returns
    the plan with warnings for what is only doubtful."""
    event, below = checked_plan(uow.session, command, consolidation_days)
    keep_issued(uow, [(event, below)], causation)
    warnings = domain.warnings_for(domain.parse_number(command.number), command.issued_on, event.phases)
    # The event is valid already: it is not validated again (a district's plan lists ~200 units).
    return IssuedPlan.model_construct(**dict(event), warnings=[vars(w) for w in warnings])


def checked_plan(
    session: Session,
    command: IssuePlan,
    consolidation_days: int = 1,
    parent_phases: list[Phase] | None = None,
    issuer: Issuer | None = None,
) -> tuple[PlanIssued, dict[str, Any]]:
    """The PlanIssued a valid command makes, with the issuer's children (as `CHILD_COLUMNS` rows, by unit);
    FieldError names what is wrong. `parent_phases` (the parent plan's) and `issuer` are given when read
    already, for many plans at once."""
    domain.parse_number(command.number)  # numbered as the rules on documents say, or refused
    domain.check_rules(command.deadlines)
    domain.check_goals(command.goals, command.indicators)
    phases = resolve_phases(command.phases, command.deadlines, command.issued_on, command.milestones)
    domain.check_phases(phases, [milestone.id for milestone in command.milestones])
    domain.check_sequence(phases, command.consecutive_phases)
    issuer = issuer or Issuer.read(session, command.issuer_unit_id, command.issued_on)
    if issuer is None:
        raise FieldError(
            "issuer_unit_id", command.issuer_unit_id, f"a unit registered on {command.issued_on}"
        )
    unit, below = issuer.unit, issuer.below
    if command.number in issuer.numbers:
        year = command.issued_on.year
        raise FieldError("number", command.number, f"a number not yet used by {unit.name} in {year}")

    lineage: list[PlanRef] = []
    if command.parent_plan_id:
        parent = session.get(Plan, command.parent_plan_id)
        if parent is None:
            raise FieldError("parent_plan_id", command.parent_plan_id, "a plan known to this federation")
        lineage = [PlanRef.model_validate(ref) for ref in parent.lineage]
        lineage.append(PlanRef(plan_id=parent.id, issuer_unit_id=parent.issuer_unit_id))
        if parent_phases is None:
            parent_phases = phases_of(session, parent.id)
        domain.check_within_parent(phases, parent_phases, consolidation_days)
    check_recipients(session, unit.unit_id, command.recipients, command.issued_on)

    target_ids = command.target_unit_ids if command.target_unit_ids is not None else list(below)
    if not target_ids:
        raise FieldError("target_unit_ids", [], f"at least one unit below {unit.name}")
    targets = []
    for unit_id in target_ids:
        child = below.get(unit_id)
        if child is None:
            raise FieldError("target_unit_ids", unit_id, f"a unit directly below {unit.name}")
        # a registered unit, valid as it was registered
        targets.append(
            Target.model_construct(unit_id=child.unit_id, name=child.name, level=Level(child.level))
        )

    plan_id = new_id()
    event = PlanIssued(
        plan_id=plan_id,
        number=command.number,
        issuer_unit_id=unit.unit_id,
        title=command.title,
        issued_on=command.issued_on,
        place=command.place,
        parent_plan_id=command.parent_plan_id,
        lineage=lineage,
        phases=phases,
        deadlines=command.deadlines,
        milestones=command.milestones,
        targets=targets,
        indicators=command.indicators,
        goals=command.goals,
        movements=command.movements,
        content=command.content,
        signer=command.signer,
        award_quota=command.award_quota,
        recipients=command.recipients,
        auto_derive=command.auto_derive,
        report_after_phase_end=command.report_after_phase_end,
    )
    return event, below


def keep_issued(
    uow: UnitOfWork, issued: list[tuple[PlanIssued, dict[str, Any]]], causation: Envelope | None = None
) -> None:
    """Keep plans issued here (checked, with their issuers' children) and publish PlanIssued for each, all
    in a few statements: a province's dozen district plans at once."""
    store_plans(uow, [(event, event.targets) for event, _ in issued], received=False)
    by_campaign: dict[str, list[PlanIssued]] = defaultdict(list)
    for event, below in issued:
        prepare_deliveries(uow, event, below)
        by_campaign[event.campaign_id].append(event)
    for campaign_id, events in by_campaign.items():
        units = [event.issuer_unit_id for event in events]
        uow.publish_many([*events], units=units, correlation_id=campaign_id, causation=causation)


def prepare_deliveries(uow: UnitOfWork, plan: PlanIssued, known: dict[str, Any]) -> int:
    """One delivery per unit the plan goes to that has iOffice: its package is sent through the exchange.
    `known` holds the units already read (the issuer's children, as `CHILD_COLUMNS` rows)."""
    count = 0
    units = {t.unit_id for t in plan.targets} | {r.unit_id for r in plan.recipients if r.unit_id}
    now = uow.clock.now()
    for unit_id in sorted(units):
        unit = known.get(unit_id) or unit_on(uow.session, unit_id, plan.issued_on)
        if unit is not None and unit.has_ioffice:
            uow.session.add(
                Delivery(
                    plan_id=plan.plan_id,
                    unit_id=unit_id,
                    document_id=document_id_of(plan.issuer_unit_id, plan.issued_on, plan.number),
                    updated_at=now,
                )
            )
            count += 1
    return count


DETAILS = ("place", "movements", "content", "goals", "signer", "recipients")


def plan_details(plan: IssuePlan | PlanIssued) -> dict[str, Any]:
    """The descriptive parts of a plan, as stored with it."""
    return {name: value for name, value in plan.model_dump(mode="json", include=set(DETAILS)).items()}


def store_plans(uow: UnitOfWork, plans: list[tuple[PlanIssued, list[Target]]], received: bool) -> None:
    """Keep plans — issued here, or received from another registry — with their phases and the targets
    each is kept for."""
    session = uow.session
    now = uow.clock.now()
    for plan, targets in plans:
        session.add(
            Plan(
                id=plan.plan_id,
                number=plan.number,
                year=plan.issued_on.year,
                issuer_unit_id=plan.issuer_unit_id,
                title=plan.title,
                issued_on=plan.issued_on,
                parent_plan_id=plan.parent_plan_id,
                campaign_id=plan.campaign_id,
                lineage=[ref.model_dump() for ref in plan.lineage],
                indicators=[indicator.model_dump() for indicator in plan.indicators],
                award_quota=plan.award_quota.model_dump() if plan.award_quota else None,
                deadlines=[rule.model_dump(mode="json") for rule in plan.deadlines],
                milestones=[milestone.model_dump(mode="json") for milestone in plan.milestones],
                details=plan_details(plan),
                auto_derive=plan.auto_derive,
                report_after_phase_end=plan.report_after_phase_end,
                received=received,
                created_at=now,
                grassroots_sent=sum(target.level == Level.grassroots for target in targets),
            )
        )
        for phase in plan.phases:
            session.add(PlanPhase(plan_id=plan.plan_id, **phase.model_dump()))
    session.flush()
    sent_to = [
        {
            "plan_id": plan.plan_id,
            "unit_id": t.unit_id,
            "name": t.name,
            "level": t.level.value,
            "acknowledged_at": None,
        }
        for plan, targets in plans
        for t in targets
    ]
    insert_rows(session, PlanTarget, sent_to)  # a district's plan goes to ~200 units: one statement


def resolve_phases(
    drafts: list[PhaseDraft], rules: list[DeadlineRule], issued_on: date, milestones: list[Milestone]
) -> list[Phase]:
    """Phases with their dates: an open start from the issue date, an end at a milestone when it is
    dated, a report deadline as written or from the after-phase rule."""
    dated = {milestone.id: milestone.on for milestone in milestones}
    phases = []
    for draft in drafts:
        end = draft.end or (dated.get(draft.end_milestone) if draft.end_milestone else None)
        due = draft.report_due or (domain.report_due_by_rule(rules, end) if end else None)
        phases.append(
            Phase(
                seq=draft.seq,
                label=draft.label,
                start=draft.start or issued_on,
                end=end,
                report_due=due,
                end_milestone=draft.end_milestone,
            )
        )
    return phases


def ancestors(session: Session, unit_id: str, on: date) -> list[str]:
    """The units above a unit on a day, nearest first."""
    found: list[str] = []
    unit = unit_on(session, unit_id, on)
    while unit is not None and unit.parent_id and unit.parent_id not in found:
        found.append(unit.parent_id)
        unit = unit_on(session, unit.parent_id, on)
    return found


def check_recipients(session: Session, issuer_id: str, recipients: list[Recipient], on: date) -> None:
    """Units a plan is executed by are below its issuer; units it is reported to are above it."""
    above = ancestors(session, issuer_id, on) if recipients else []
    for index, recipient in enumerate(recipients, start=1):
        field = f"recipients[{index}].unit_id"
        if recipient.unit_id is None or recipient.purpose == "archive":
            continue
        if unit_on(session, recipient.unit_id, on) is None:
            raise FieldError(field, recipient.unit_id, f"a unit registered on {on}")
        if recipient.purpose == "execute" and issuer_id not in ancestors(session, recipient.unit_id, on):
            raise FieldError(
                field, recipient.unit_id, f"a unit below {issuer_id}: a plan is executed by its own subtree"
            )
        if recipient.purpose == "report" and recipient.unit_id not in above:
            raise FieldError(field, recipient.unit_id, f"a unit above {issuer_id}: a plan is reported upward")


def acknowledgement_error(status: str | None, sent: bool, plan_id: str, unit_id: str) -> FieldError | None:
    """Why a unit may not acknowledge a plan (None when it may), from the plan's status (None: no such
    plan) and whether the plan was sent to the unit."""
    if status is None:
        return FieldError("plan_id", plan_id, "a plan known to this federation")
    if status not in LIVE:
        return FieldError("plan_id", plan_id, f"a plan in force (this one is {status})")
    if not sent:
        return FieldError("unit_id", unit_id, "a unit the plan was sent to")
    return None


def acknowledge(uow: UnitOfWork, plan_id: str, unit_id: str) -> bool:
    """A target unit acknowledges (deploys) a plan and PlanAcknowledged is published; returns False if it
    already had."""
    return bool(acknowledge_all(uow, plan_id, [unit_id]))


def acknowledge_all(uow: UnitOfWork, plan_id: str, unit_ids: list[str]) -> list[str]:
    """Units a plan was sent to acknowledge (deploy) it, in a few statements; PlanAcknowledged is published
    for each that had not yet, and those are returned. FieldError names a unit that may not."""
    if not unit_ids:
        return []
    keys = {(plan_id, unit_id) for unit_id in unit_ids}
    plans, targets = locked_for_acknowledgement(uow.session, keys)
    plan = plans.get(plan_id)
    for unit_id in unit_ids:
        error = acknowledgement_error(
            plan.status if plan else None, (plan_id, unit_id) in targets, plan_id, unit_id
        )
        if error:
            raise error
    assert plan is not None
    newly = sorted(key for key in keys if not targets[key][0])
    now = uow.clock.now()
    record_acknowledged(uow.session, plans, targets, newly, now)
    units = [unit_id for _, unit_id in newly]
    events = [PlanAcknowledged(plan_id=plan_id, unit_id=unit_id, acknowledged_at=now) for unit_id in units]
    uow.publish_many([*events], units=units, correlation_id=plan.campaign_id)
    return units


def locked_for_acknowledgement(
    session: Session, keys: set[tuple[str, str]]
) -> tuple[dict[str, Any], dict[tuple[str, str], tuple[bool, str]]]:
    """The plans of (plan, unit) `keys`, locked first and in id order (their counts of deployed units
    change: another instance acknowledging for the same plans waits, then sees these targets acknowledged),
    and those of the keys they were sent to: whether each has acknowledged, and its level."""
    query = (
        sa.select(Plan.id, Plan.status, Plan.grassroots_deployed, Plan.campaign_id)
        .where(col(Plan.id).in_(sorted({plan_id for plan_id, _ in keys})))
        .order_by(col(Plan.id))
        .with_for_update()
    )
    plans = {plan.id: plan for plan in session.execute(query)}
    target_key = (PlanTarget.plan_id, PlanTarget.unit_id)
    targets = {
        (plan_id, unit_id): (at is not None, level)
        for plan_id, unit_id, at, level in columns_in(
            session, (*target_key, PlanTarget.acknowledged_at, PlanTarget.level), target_key, keys
        )
    }
    return plans, targets


def record_acknowledged(
    session: Session,
    plans: dict[str, Any],
    targets: dict[tuple[str, str], tuple[bool, str]],
    newly: Iterable[tuple[str, str]],
    now: datetime,
) -> None:
    """Mark the targets `newly` acknowledged at `now`, and count the grassroots units among them on their
    plans (locked and read by `locked_for_acknowledgement`)."""
    rows = [{"plan_id": plan_id, "unit_id": unit_id, "acknowledged_at": now} for plan_id, unit_id in newly]
    update_rows(session, PlanTarget, ("plan_id", "unit_id"), rows, col(PlanTarget.acknowledged_at).is_(None))
    deployed = Counter(
        row["plan_id"]
        for row in rows
        if targets[(row["plan_id"], row["unit_id"])][1] == Level.grassroots.value
    )
    counts = [
        {"id": plan_id, "grassroots_deployed": plans[plan_id].grassroots_deployed + count}
        for plan_id, count in deployed.items()
    ]
    update_rows(session, Plan, ("id",), counts)


def next_number(used: Iterable[str], issuer_unit_id: str) -> str:
    """The next free plan number of a body, from the numbers it has used in the year (numbering restarts
    every 1 January)."""
    taken = [int(match.group(1)) for number in used if (match := re.match(r"\s*(\d+)", number))]
    return f"{max(taken, default=0) + 1}/KH-{issuer_unit_id}"


@dataclass
class Derivation:
    """What the units a plan was sent to need to derive their own plans from it, read once for all of
    them: the plan, its phases, its targets, the units that have derived it already and the numbers each
    unit has used in the plan's year."""

    parent: Plan
    phases: list[Phase]
    sent_to: dict[str, PlanTarget]
    derived: set[str]
    numbers: dict[str, list[str]]

    @classmethod
    def read(cls, session: Session, parent_id: str, unit_ids: list[str]) -> Derivation:
        parent = session.get(Plan, parent_id)
        if parent is None:
            raise FieldError("plan_id", parent_id, "a plan known to this registry")
        sent_to = {
            t.unit_id: t
            for t in rows_in(session, PlanTarget.unit_id, unit_ids, PlanTarget.plan_id == parent_id)
        }
        derived = columns_in(
            session, (Plan.issuer_unit_id,), Plan.issuer_unit_id, unit_ids, Plan.parent_plan_id == parent_id
        )
        numbers: dict[str, list[str]] = defaultdict(list)
        year_columns = (Plan.issuer_unit_id, Plan.number)
        for unit_id, number in columns_in(
            session, year_columns, Plan.issuer_unit_id, unit_ids, Plan.year == parent.year
        ):
            numbers[unit_id].append(number)
        return cls(parent, phases_of(session, parent_id), sent_to, {row[0] for row in derived}, numbers)

    def draft(self, unit_id: str, settings: Settings) -> IssuePlan:
        """A unit's draft of its own plan implementing the parent plan: same indicators, quota and rules of
        reporting, the parent's phases, its deadlines `derive_lead_days` earlier. The officer edits and
        issues it (or, with auto_derive, it is issued at once)."""
        parent = self.parent
        if unit_id not in self.sent_to:
            raise FieldError("unit_id", unit_id, f"a unit plan {parent.number} was sent to")
        rules = [DeadlineRule.model_validate(rule) for rule in parent.deadlines]
        return IssuePlan(
            number=next_number(self.numbers[unit_id], unit_id),
            issuer_unit_id=unit_id,
            title=parent.title,
            issued_on=parent.issued_on,
            parent_plan_id=parent.id,
            phases=[
                PhaseDraft.model_validate(p)
                for p in domain.derive_phases(self.phases, settings.derive_lead_days)
            ],
            deadlines=domain.derive_rules(rules, settings.derive_lead_days),
            milestones=[Milestone.model_validate(milestone) for milestone in parent.milestones],
            indicators=[Indicator.model_validate(item) for item in parent.indicators],
            movements=parent.details.get("movements", []),
            content=parent.details.get("content", {}),
            goals=[Goal.model_validate(goal) for goal in parent.details.get("goals", [])],
            award_quota=AwardQuota.model_validate(parent.award_quota) if parent.award_quota else None,
            auto_derive=parent.auto_derive,
            report_after_phase_end=parent.report_after_phase_end,
        )


def derived_draft(session: Session, parent_id: str, unit_id: str, settings: Settings) -> IssuePlan:
    """A unit's draft of its own plan implementing a parent plan (see `Derivation.draft`)."""
    return Derivation.read(session, parent_id, [unit_id]).draft(unit_id, settings)


def derive_and_issue(
    uow: UnitOfWork, parent_id: str, unit_ids: list[str], settings: Settings, cause: Envelope
) -> None:
    """The units below that a plan was sent to cascade it at once with their derived drafts, and so
    acknowledge it: a province's plan to its dozen districts in a few statements for each."""
    session = uow.session
    derivation = Derivation.read(session, parent_id, unit_ids)
    issuers = Issuer.read_all(session, unit_ids, derivation.parent.issued_on, derivation.numbers)
    issued = []
    for unit_id in unit_ids:
        issuer = issuers.get(unit_id)
        if unit_id in derivation.derived or issuer is None or not issuer.below:
            continue  # derived already, or nobody below it to cascade to
        try:
            draft = derivation.draft(unit_id, settings)
            days = settings.min_consolidation_days
            issued.append(checked_plan(session, draft, days, derivation.phases, issuer))
        except FieldError as error:
            raise EventRejected("rule_violation", f"{unit_id} cannot cascade it: {error}") from error
        derivation.derived.add(unit_id)
    keep_issued(uow, issued, cause)
    cascading = [event.issuer_unit_id for event, _ in issued]
    try:
        acknowledge_all(uow, parent_id, cascading)
    except FieldError as error:
        raise EventRejected("rule_violation", f"{', '.join(cascading)} cannot cascade it: {error}") from error


def register(uow: UnitOfWork, plan_id: str, command: Register) -> Registration:
    """Record a unit's registration against a plan, late if after the plan's registration deadline."""
    session = uow.session
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise FieldError("plan_id", plan_id, "a plan known to this registry")
    if session.get(PlanTarget, (plan_id, command.unit_id)) is None:
        raise FieldError("unit_id", command.unit_id, f"a unit plan {plan.number} was sent to")
    rules = [DeadlineRule.model_validate(rule) for rule in plan.deadlines]
    dues = [
        rule.due_on
        for rule in rules
        if rule.kind == "fixed" and rule.purpose == "registration" and rule.due_on
    ]
    due = min(dues, default=None)
    now = uow.clock.now()
    row = Registration(
        id=new_id(),
        plan_id=plan_id,
        unit_id=command.unit_id,
        kind=command.kind,
        title=command.title,
        description=command.description,
        registered_at=now,
        due_on=due,
        late=bool(due and now.astimezone(LOCAL_TZ).date() > due),
    )
    session.add(row)
    return row


def subtree_deployment(session: Session, plan_id: str) -> tuple[int, int]:
    """Grassroots units that have deployed the plan or a plan implementing it, of all those sent one:
    the "100 % of grassroots units deploy" target, live."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise FieldError("plan_id", plan_id, "a plan known to this registry")
    # The campaign's plans with their counts, as columns: an officer's dashboard polls this while it cascades.
    cascade = session.execute(
        sa.select(Plan.id, Plan.lineage, Plan.grassroots_sent, Plan.grassroots_deployed).where(
            Plan.campaign_id == plan.campaign_id
        )
    )
    sent = deployed = 0
    for other_id, lineage, other_sent, other_deployed in cascade:
        if other_id == plan_id or any(ref["plan_id"] == plan_id for ref in lineage):
            sent, deployed = sent + other_sent, deployed + other_deployed
    return sent, deployed


def check_issuer(session: Session, envelope: Envelope, plan: PlanIssued) -> None:
    """A plan comes from the unit that issued it, and goes only to the units directly below it: a forged
    PlanIssued (a grassroots unit "issuing" a city plan) is refused, whichever producer sent it."""
    if envelope.unit != plan.issuer_unit_id:
        raise EventRejected(
            "unauthorized", f"unit {envelope.unit} sent a plan issued by {plan.issuer_unit_id}"
        )
    parents = parents_on(session, [target.unit_id for target in plan.targets], plan.issued_on)
    for target in plan.targets:
        if target.unit_id in parents and parents[target.unit_id] != plan.issuer_unit_id:
            raise EventRejected(
                "unauthorized",
                f"{plan.issuer_unit_id} issued a plan to {target.unit_id}, which is not directly below it",
            )


def issued_here(session: Session, envelope: Envelope, plan: PlanIssued) -> bool:
    """Whether the event is of a plan this registry issued, as its issuer sent it: the plan was checked
    when it was issued (a national cascade's 135,000 targets are not looked up again). An event that
    reuses such a plan's id cascades only to the units the stored plan was sent to."""
    stored = session.get(Plan, plan.plan_id)
    return (
        stored is not None
        and not stored.received
        and envelope.unit == plan.issuer_unit_id == stored.issuer_unit_id
    )


def receive_plan(uow: UnitOfWork, plan: PlanIssued) -> bool:
    """Keep a plan issued by another stack's registry (a province stack receiving the national plan)
    when it is sent to units registered here, so they can acknowledge and cascade it. Returns whether
    the plan concerns this registry."""
    session = uow.session
    if session.get(Plan, plan.plan_id) is not None:
        return True
    in_force = units_on(session, [target.unit_id for target in plan.targets], plan.issued_on)
    known = [target for target in plan.targets if target.unit_id in in_force]
    if not known:
        return False
    store_plans(uow, [(plan, known)], received=True)
    return True


# ------------------------------------------------------------------ milestones and the plan's life

LIVE = ("issued", "amended")


def live_plan(session: Session, plan_id: str) -> Plan:
    """A plan issued here that is neither revoked nor closed."""
    plan = session.get(Plan, plan_id)
    if plan is None or plan.received:
        raise FieldError("plan_id", plan_id, "a plan issued through this registry")
    if plan.status not in LIVE:
        raise FieldError("plan_id", plan_id, f"a plan in force (this one is {plan.status})")
    return plan


def phases_of(session: Session, plan_id: str) -> list[Phase]:
    rows = session.exec(select(PlanPhase).where(PlanPhase.plan_id == plan_id).order_by(col(PlanPhase.seq)))
    return [Phase.model_validate(row.model_dump(include=set(Phase.model_fields))) for row in rows]


def store_phases(session: Session, plan_id: str, phases: list[Phase]) -> None:
    """Write a plan's phases, keeping when each was opened and closed."""
    for phase in phases:
        row = session.get(PlanPhase, (plan_id, phase.seq)) or PlanPhase(
            plan_id=plan_id, seq=phase.seq, start=phase.start
        )
        for name, value in phase.model_dump().items():
            setattr(row, name, value)
        session.add(row)
    for row in session.exec(select(PlanPhase).where(PlanPhase.plan_id == plan_id)):
        if row.seq > len(phases):
            session.delete(row)


def reschedule_plan(
    uow: UnitOfWork, plan: Plan, milestone_id: str, on: date, due_for: dict[int, date | None]
) -> None:
    """Date a milestone of a plan, re-plan the phases bound to it, and publish PlanRescheduled."""
    milestones = [dict(m, on=on.isoformat()) if m["id"] == milestone_id else m for m in plan.milestones]
    plan.milestones = milestones
    uow.session.add(plan)
    phases = domain.reschedule(phases_of(uow.session, plan.id), milestone_id, on, due_for)
    store_phases(uow.session, plan.id, phases)
    uow.publish(
        PlanRescheduled(plan_id=plan.id, milestone_id=milestone_id, on=on, phases=phases),
        unit=plan.issuer_unit_id,
        correlation_id=plan.campaign_id,
    )


def schedule_milestone(uow: UnitOfWork, plan_id: str, milestone_id: str, on: date) -> None:
    """The issuer dates (or moves) a milestone: its phases end then; the plans implementing it follow."""
    plan = live_plan(uow.session, plan_id)
    if milestone_id not in {m["id"] for m in plan.milestones}:
        raise FieldError("milestone_id", milestone_id, f"a milestone of plan {plan.number}")
    rules = [DeadlineRule.model_validate(rule) for rule in plan.deadlines]
    bound = [phase for phase in phases_of(uow.session, plan_id) if phase.end_milestone == milestone_id]
    reschedule_plan(uow, plan, milestone_id, on, {p.seq: domain.report_due_by_rule(rules, on) for p in bound})


def follow_reschedule(uow: UnitOfWork, event: PlanRescheduled, settings: Settings) -> None:
    """A parent plan's milestone was dated: the plans here implementing it re-plan the same phases,
    reporting `derive_lead_days` before the parent's new deadline."""
    session = uow.session
    received = session.get(Plan, event.plan_id)
    if received is not None and received.received:
        store_phases(session, event.plan_id, event.phases)
    parent_due = {phase.seq: phase.report_due for phase in event.phases}
    for child in session.exec(select(Plan).where(Plan.parent_plan_id == event.plan_id)).all():
        if child.status not in LIVE or event.milestone_id not in {m["id"] for m in child.milestones}:
            continue
        due_for = {
            seq: due - timedelta(days=settings.derive_lead_days) if due else None
            for seq, due in parent_due.items()
        }
        reschedule_plan(uow, child, event.milestone_id, event.on, due_for)


class Amend(BaseModel):
    """Change an issued plan: only the fields given change; the reason is recorded with the version."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    title: str | None = Field(default=None, min_length=1, max_length=1000)
    phases: list[PhaseDraft] | None = None
    indicators: list[Indicator] | None = None
    deadlines: list[DeadlineRule] | None = None
    award_quota: AwardQuota | None = None


def amend_plan(uow: UnitOfWork, plan_id: str, amend: Amend, consolidation_days: int = 1) -> PlanAmended:
    """A new version of an issued plan, checked like the first; publishes PlanAmended."""
    session = uow.session
    plan = live_plan(session, plan_id)
    changed = [
        name for name in ("title", "phases", "indicators", "deadlines", "award_quota") if getattr(amend, name)
    ]
    if not changed:
        raise FieldError(
            "body", None, "at least one of title, phases, indicators, deadlines, award_quota to change"
        )
    rules = (
        amend.deadlines
        if amend.deadlines is not None
        else [DeadlineRule.model_validate(r) for r in plan.deadlines]
    )
    domain.check_rules(rules)
    milestones = [Milestone.model_validate(m) for m in plan.milestones]
    if amend.phases is not None:
        phases = resolve_phases(amend.phases, rules, plan.issued_on, milestones)
        domain.check_phases(phases, [m.id for m in milestones])
        domain.check_sequence(phases, consecutive=False)
        if plan.parent_plan_id:
            domain.check_within_parent(phases, phases_of(session, plan.parent_plan_id), consolidation_days)
        store_phases(session, plan_id, phases)
    phases = phases_of(session, plan_id)
    if amend.title:
        plan.title = amend.title
    if amend.indicators is not None:
        plan.indicators = [indicator.model_dump(mode="json") for indicator in amend.indicators]
    if amend.deadlines is not None:
        plan.deadlines = [rule.model_dump(mode="json") for rule in amend.deadlines]
    if amend.award_quota is not None:
        plan.award_quota = amend.award_quota.model_dump()
    plan.version += 1
    plan.status = "amended"
    session.add(plan)
    session.add(
        Amendment(
            plan_id=plan_id, version=plan.version, changed=changed, reason=amend.reason, at=uow.clock.now()
        )
    )
    event = PlanAmended(
        plan_id=plan_id,
        version=plan.version,
        changed=changed,
        reason=amend.reason,
        title=plan.title,
        phases=phases,
        indicators=[Indicator.model_validate(item) for item in plan.indicators],
        deadlines=[DeadlineRule.model_validate(rule) for rule in plan.deadlines],
        award_quota=AwardQuota.model_validate(plan.award_quota) if plan.award_quota else None,
    )
    uow.publish(event, unit=plan.issuer_unit_id, correlation_id=plan.campaign_id)
    return event


def revoke_plan(uow: UnitOfWork, plan_id: str, reason: str, cause: Envelope | None = None) -> None:
    """Revoke a plan; the plans implementing it are revoked in turn (by the consumer)."""
    plan = uow.session.get(Plan, plan_id)
    if plan is None or plan.received or plan.status == "revoked":
        return
    plan.status = "revoked"
    uow.session.add(plan)
    uow.publish(
        PlanRevoked(plan_id=plan_id, reason=reason),
        unit=plan.issuer_unit_id,
        correlation_id=plan.campaign_id,
        causation=cause,
    )


def close_plan(uow: UnitOfWork, plan_id: str) -> None:
    plan = live_plan(uow.session, plan_id)
    plan.status = "closed"
    uow.session.add(plan)
    uow.publish(PlanClosed(plan_id=plan_id), unit=plan.issuer_unit_id, correlation_id=plan.campaign_id)


# ------------------------------------------------------------------ drafts


class SaveDraft(BaseModel):
    """A draft plan: the body of an IssuePlan as it stands, complete or not."""

    model_config = ConfigDict(extra="forbid")

    unit_id: str
    body: dict[str, Any]
    source: str = Field(default="", max_length=300)


def draft_problems(error: ValidationError) -> list[FieldError]:
    """A draft that does not even have the shape of a plan: each problem as a field error."""
    found = []
    for item in error.errors():
        plain = plain_error(dict(item))
        found.append(FieldError(plain["field"], plain["value"], plain["message"]))
    return found


def check_draft(
    db: Database, draft: PlanDraft, consolidation_days: int
) -> tuple[list[FieldError], list[dict[str, str]]]:
    """What issuing the draft would say: the problems that stop it, or the warnings it would carry.
    Nothing is kept."""
    try:
        command = IssuePlan.model_validate(draft.body)
    except ValidationError as error:
        return draft_problems(error), []
    with db.rehearsal() as uow:
        try:
            issued = issue_plan(uow, command, consolidation_days=consolidation_days)
        except FieldError as error:
            return [error], []
    return [], issued.warnings


def build_handlers(ctx: ServiceContext) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on(PlanIssued)
    def cascade(uow: UnitOfWork, envelope: Envelope) -> None:
        plan = envelope.data
        assert isinstance(plan, PlanIssued)
        if not issued_here(uow.session, envelope, plan):
            check_issuer(uow.session, envelope, plan)
            if not receive_plan(uow, plan):
                return  # a plan of another stack's subtree: none of its units are registered here
        if not plan.auto_derive:
            return
        below = [target.unit_id for target in plan.targets if target.level != Level.grassroots]
        if below:
            derive_and_issue(uow, plan.plan_id, below, ctx.settings, envelope)

    @handlers.on(PlanRescheduled)
    def on_rescheduled(uow: UnitOfWork, envelope: Envelope) -> None:
        assert isinstance(envelope.data, PlanRescheduled)
        try:
            follow_reschedule(uow, envelope.data, ctx.settings)
        except FieldError as error:
            raise EventRejected("rule_violation", str(error)) from error

    @handlers.on(PlanRevoked)
    def on_revoked(uow: UnitOfWork, envelope: Envelope) -> None:
        revoked = envelope.data
        assert isinstance(revoked, PlanRevoked)
        reason = f"the plan it implements was revoked: {revoked.reason}"
        for child in uow.session.exec(select(Plan.id).where(Plan.parent_plan_id == revoked.plan_id)).all():
            revoke_plan(uow, child, reason, cause=envelope)

    handlers.on_many(PlanAcknowledged)(record_acknowledgements)
    return handlers


def record_acknowledgements(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
    """Acknowledgements from the units' own systems, a whole batch in a few statements; returns the
    refused ones: for another unit, for a plan no longer in force, or from a unit it was not sent to."""
    acks = [envelope.data for envelope in envelopes]
    keys = {(ack.plan_id, ack.unit_id) for ack in acks}  # type: ignore[attr-defined]
    plans, targets = locked_for_acknowledgement(uow.session, keys)
    refused: dict[str, EventRejected] = {}
    newly: set[tuple[str, str]] = set()
    for envelope in envelopes:
        ack = envelope.data
        assert isinstance(ack, PlanAcknowledged)
        key = (ack.plan_id, ack.unit_id)
        if envelope.unit != ack.unit_id:
            refused[envelope.id] = EventRejected(
                "unauthorized", f"unit {envelope.unit} acknowledged for {ack.unit_id}"
            )
        elif ack.plan_id not in plans:
            continue  # a plan of another stack's subtree
        elif error := acknowledgement_error(
            plans[ack.plan_id].status, key in targets, ack.plan_id, ack.unit_id
        ):
            refused[envelope.id] = EventRejected("rule_violation", str(error))
        elif not targets[key][0]:
            newly.add(key)
    record_acknowledged(uow.session, plans, targets, sorted(newly), uow.clock.now())
    return refused


def claim_phases(
    session: Session, kind: str, wanted: list[tuple[str, int]], now: datetime
) -> set[tuple[str, int]]:
    """Mark the phases' events written (`now` in opened_at or closed_at), locking them in key order, and
    return those this transaction marked: a phase another instance has marked already is left out."""
    phases = table_of(PlanPhase)
    column = phases.c.opened_at if kind == "open" else phases.c.closed_at
    key = sa.tuple_(phases.c.plan_id, phases.c.seq)
    claimed: set[tuple[str, int]] = set()
    for part in chunks(wanted):
        unmarked = (
            sa.select(phases.c.plan_id, phases.c.seq)
            .where(key.in_(part), column.is_(None))
            .order_by(phases.c.plan_id, phases.c.seq)
            .with_for_update()
        )
        marked = (
            sa.update(phases)
            .where(key.in_(unmarked), column.is_(None))
            .values({column.key: now})
            .returning(phases.c.plan_id, phases.c.seq)
        )
        claimed.update((plan_id, seq) for plan_id, seq in session.connection().execute(marked))
    return claimed


PHASE_EVENTS_PER_TRANSACTION = 500


def run_phase_scheduler(ctx: ServiceContext) -> int:
    """Emit PhaseOpened / PhaseClosed for phases whose day has come, exactly once each.

    The conditional update (`… WHERE opened_at IS NULL`) is the guard: with several instances, or after
    downtime, each phase event is written by exactly one transaction, together with its outbox row. A few
    hundred phases are claimed in two statements and their events written in one more.
    """
    today = ctx.clock.today()
    with ctx.db.reading() as session:
        candidates = session.exec(
            select(PlanPhase)
            .join(Plan, col(Plan.id) == col(PlanPhase.plan_id))
            .where(col(Plan.received).is_(False))  # the issuing registry schedules a plan's phases
            .where(col(Plan.status).in_(LIVE))
            .where(
                sa.or_(
                    sa.and_(col(PlanPhase.opened_at).is_(None), col(PlanPhase.start) <= today),
                    sa.and_(col(PlanPhase.closed_at).is_(None), col(PlanPhase.end) < today),
                )
            )
            .order_by(col(PlanPhase.plan_id), col(PlanPhase.seq))  # every instance claims in one order
        ).all()
    emitted = 0
    lag = 0.0
    due_on = {(p.plan_id, p.seq): (p.start, (p.end or p.start) + timedelta(days=1)) for p in candidates}
    moments = domain.phase_events_due(candidates, today)
    with ctx.db.reading() as session:
        plan_columns = (Plan.id, Plan.issuer_unit_id, Plan.campaign_id)
        plan_ids = {plan_id for plan_id, _ in due_on}
        sent_by = {row[0]: row[1:] for row in columns_in(session, plan_columns, Plan.id, plan_ids)}
    # A few hundred events per transaction: the writer is never held up for long, and a cascade's thousands
    # of phase events do not wait for a commit each.
    for start in range(0, len(moments), PHASE_EVENTS_PER_TRANSACTION):
        part = moments[start : start + PHASE_EVENTS_PER_TRANSACTION]
        with ctx.db.transaction() as uow:
            now = uow.clock.now()
            claimed = {
                kind: claim_phases(
                    uow.session, kind, [(m.plan_id, m.seq) for m in part if m.kind == kind], now
                )
                for kind in ("open", "close")
            }
            by_campaign: dict[str | None, list[tuple[PhaseOpened | PhaseClosed, str]]] = defaultdict(list)
            for moment in part:  # in order: a phase that opens and closes at once is opened first
                if (moment.plan_id, moment.seq) not in claimed[moment.kind]:
                    continue  # another instance wrote it first
                issuer, campaign = sent_by[moment.plan_id]
                event_type = PhaseOpened if moment.kind == "open" else PhaseClosed
                by_campaign[campaign].append(
                    (event_type(plan_id=moment.plan_id, phase_seq=moment.seq, at=now), issuer)
                )
                emitted += 1
                opens, closes = due_on[(moment.plan_id, moment.seq)]
                late = now - local_midnight(opens if moment.kind == "open" else closes)
                lag = max(lag, late.total_seconds())
            for campaign, events in by_campaign.items():
                uow.publish_many(
                    [event for event, _ in events],
                    units=[unit for _, unit in events],
                    correlation_id=campaign,
                )
    ctx.metrics.scheduler_lag.labels(ctx.name).set(lag)
    return emitted
