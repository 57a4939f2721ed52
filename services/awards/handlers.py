"""Commands and event handlers of the awards service: nominate, vote, forward, decide, revoke."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from services.awards import domain
from services.awards.models import AwardPlan, AwardUnit, Decision, Nomination, ReportRecord, Vote
from services.awards.rules import Facts, Failure, check, rules_for
from shared.clock import LOCAL_TZ
from shared.consumer import EventHandlers, reports_for_others
from shared.errors import EventRejected, FieldError
from shared.events import (
    LEVEL_RANK,
    MAX_PHASES,
    AwardDecided,
    AwardRevoked,
    Envelope,
    Level,
    NominationForwarded,
    NominationMade,
    NomineeKind,
    OrgUnitRegistered,
    PlanAmended,
    PlanIssued,
    ReportSubmitted,
)
from shared.ids import new_id
from shared.service import ServiceContext
from shared.storage import UnitOfWork, columns_in, insert_rows, rows_in, update_rows, utc


class NomineeFacts(BaseModel):
    """What the nominating unit declares about its nominee (checked against the year's rules)."""

    model_config = ConfigDict(extra="forbid")

    members: int | None = Field(default=None, ge=0)
    members_completing: int | None = Field(default=None, ge=0)
    lao_dong_tien_tien: int | None = Field(default=None, ge=0)
    chien_si_thi_dua: int | None = Field(default=None, ge=0)
    titles_held: list[str] = []
    nominating_unit_members: int | None = Field(default=None, ge=0)


class Nominate(BaseModel):
    """Put a collective or an individual forward for an award to the level that issued the plan."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str
    unit_id: str
    nominee_kind: NomineeKind
    nominee_name: str = Field(min_length=1, max_length=300)
    nominee_unit_id: str | None = None
    phase_seq: int | None = Field(
        default=None, ge=1, le=MAX_PHASES
    )  # the phase it rewards; none: the whole plan
    award: str = Field(min_length=1, max_length=100, examples=["tap_the_lao_dong_xuat_sac"])
    year: int | None = Field(default=None, ge=2000, le=2100)
    achievements: str = Field(default="", max_length=20_000)
    achievement_ids: list[str] = []
    facts: NomineeFacts = NomineeFacts()
    direct_production: bool = False
    small_collective: bool = False


class CouncilVote(BaseModel):
    """The council of the level holding the nomination votes (Hội đồng thi đua khen thưởng)."""

    model_config = ConfigDict(extra="forbid")

    by_unit_id: str
    members: int = Field(ge=1)
    yes: int = Field(ge=0)
    no: int = Field(ge=0)


class ByUnit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by_unit_id: str


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by_unit_id: str
    reason: str = Field(min_length=1, max_length=2000)


# ------------------------------------------------------------------ what awards knows


def reports_on_time(session: Session, plan: AwardPlan, unit_id: str | None, today: date) -> bool | None:
    """Whether the unit's reports in the plan's campaign are all in, and on time, for every phase whose
    deadline has passed (None when nothing was due yet, or no unit is named)."""
    if unit_id is None:
        return None
    due = [
        p["seq"] for p in plan.phases if p.get("report_due") and date.fromisoformat(p["report_due"]) < today
    ]
    if not due:
        return None
    records = {
        r.phase_seq: r.on_time
        for r in session.exec(
            select(ReportRecord).where(
                ReportRecord.campaign_id == plan.campaign_id, ReportRecord.unit_id == unit_id
            )
        )
    }
    return all(records.get(seq) is True for seq in due)


def facts_of(session: Session, nomination: Nomination, plan: AwardPlan, today: date) -> Facts:
    declared = NomineeFacts.model_validate(nomination.facts)
    used = session.exec(
        select(Nomination.achievement_ids).where(
            Nomination.id != nomination.id, col(Nomination.state).not_in(("failed", "revoked"))
        )
    ).all()
    already = sorted({a for ids in used for a in ids} & set(nomination.achievement_ids))
    same = session.scalar(
        select(sa.func.count())
        .select_from(Nomination)
        .where(
            Nomination.unit_id == nomination.unit_id,
            Nomination.award == nomination.award,
            Nomination.year == nomination.year,
            Nomination.id != nomination.id,
            col(Nomination.state).not_in(("failed", "revoked")),
        )
    )
    return Facts(
        members=declared.members,
        members_completing=declared.members_completing,
        lao_dong_tien_tien=declared.lao_dong_tien_tien,
        chien_si_thi_dua=declared.chien_si_thi_dua,
        titles_held=declared.titles_held,
        nominating_unit_members=declared.nominating_unit_members,
        reports_on_time=reports_on_time(session, plan, nomination.nominee_unit_id, today),
        same_award_from_unit=int(same or 0),
        achievements_already_rewarded=already,
    )


def eligibility(session: Session, nomination: Nomination, today: date) -> list[Failure]:
    """Every rule of the nomination's year it fails, with the facts that failed it."""
    plan = session.get(AwardPlan, nomination.plan_id)
    assert plan is not None
    rule = rules_for(nomination.year).award(nomination.award)
    return check(nomination.award, rule, nomination.nominee_kind, facts_of(session, nomination, plan, today))


def level_of(session: Session, unit_id: str) -> str:
    unit = session.get(AwardUnit, unit_id)
    if unit is None:
        raise FieldError("by_unit_id", unit_id, "a unit of the federation known to awards")
    return unit.level


# ------------------------------------------------------------------ commands


def nominate(uow: UnitOfWork, command: Nominate, nomination_id: str | None = None) -> NominationMade:
    """Check the plan, its quota and the award, record the nomination, publish NominationMade."""
    session = uow.session
    plan = session.get(AwardPlan, command.plan_id)
    if plan is None:
        raise FieldError("plan_id", command.plan_id, "a plan issued to this unit")
    if command.unit_id not in plan.target_unit_ids:
        raise FieldError("unit_id", command.unit_id, f"a unit plan {plan.plan_id} was sent to")
    year = command.year or uow.clock.today().year
    rules_for(year).award(command.award)
    if command.phase_seq is not None and command.phase_seq not in {p["seq"] for p in plan.phases}:
        raise FieldError("phase_seq", command.phase_seq, f"a phase of plan {plan.plan_id}")
    check_quota_of(session, plan, command.unit_id, command.nominee_kind, command.award)
    event = NominationMade(
        nomination_id=nomination_id or new_id(),
        to_unit_id=plan.issuer_unit_id,
        **{**command.model_dump(), "year": year},
    )
    session.add(
        Nomination(
            id=event.nomination_id,
            plan_id=event.plan_id,
            unit_id=event.unit_id,
            to_unit_id=event.to_unit_id,
            nominee_kind=event.nominee_kind.value,
            nominee_name=event.nominee_name,
            nominee_unit_id=event.nominee_unit_id,
            phase_seq=event.phase_seq,
            award=event.award,
            year=year,
            achievements=event.achievements,
            achievement_ids=event.achievement_ids,
            facts=command.facts.model_dump(),
            direct_production=event.direct_production,
            small_collective=event.small_collective,
            path=[event.unit_id, event.to_unit_id],
            created_at=uow.clock.now(),
        )
    )
    return event


def held_by(session: Session, nomination_id: str, unit_id: str, states: tuple[str, ...]) -> Nomination:
    """The nomination, if it stands with `unit_id`'s council in one of `states`."""
    nomination = session.get(Nomination, nomination_id)
    if nomination is None:
        raise FieldError("nomination_id", nomination_id, "a nomination")
    if nomination.to_unit_id != unit_id:
        raise FieldError(
            "by_unit_id", unit_id, f"{nomination.to_unit_id}, the level the nomination stands with"
        )
    if nomination.state not in states:
        raise FieldError(
            "nomination_id",
            nomination_id,
            f"a nomination that is {' or '.join(states)} (this one is {nomination.state})",
        )
    return nomination


def vote(uow: UnitOfWork, nomination_id: str, ballot: CouncilVote) -> Vote:
    """The council votes; the nomination passes with more than the year's majority of its members."""
    nomination = held_by(uow.session, nomination_id, ballot.by_unit_id, ("nominated",))
    if ballot.yes + ballot.no > ballot.members:
        raise FieldError("yes", ballot.yes, f"yes and no votes together at most the {ballot.members} members")
    majority = rules_for(nomination.year).council.majority
    passed = ballot.yes > ballot.members * majority
    row = Vote(
        nomination_id=nomination_id,
        unit_id=ballot.by_unit_id,
        members=ballot.members,
        yes=ballot.yes,
        no=ballot.no,
        passed=passed,
        at=uow.clock.now(),
    )
    uow.session.add(row)
    nomination.state = "passed" if passed else "failed"
    uow.session.add(nomination)
    return row


def plan_received_by(session: Session, campaign_id: str, unit_id: str) -> AwardPlan | None:
    """The plan of a campaign that was sent to a unit (the one it answers to its parent on)."""
    for plan in session.exec(select(AwardPlan).where(AwardPlan.campaign_id == campaign_id)):
        if unit_id in plan.target_unit_ids:
            return plan
    return None


def used_quota(
    session: Session, campaign_id: str, from_unit: str, to_unit: str, kind: NomineeKind
) -> Counter[str]:
    """Nominations of a kind that went from a unit to the level above in a campaign, per award — made
    there or forwarded there, wherever they are now; those a council refused do not count. The total
    is the sum."""
    campaigns: dict[str, str | None] = {}
    used: Counter[str] = Counter()
    for n in session.exec(select(Nomination).where(Nomination.nominee_kind == kind.value)):
        if n.state in ("revoked", "failed"):
            continue
        if n.plan_id not in campaigns:
            plan = session.get(AwardPlan, n.plan_id)
            campaigns[n.plan_id] = plan.campaign_id if plan else None
        if campaigns[n.plan_id] == campaign_id and (from_unit, to_unit) in zip(
            n.path, n.path[1:], strict=False
        ):
            used[n.award] += 1
    return used


def check_quota_of(session: Session, plan: AwardPlan, from_unit: str, kind: NomineeKind, award: str) -> None:
    """The plan's quota for what `from_unit` sends to the plan's issuer, in all and for the award."""
    used = used_quota(session, plan.campaign_id, from_unit, plan.issuer_unit_id, kind)
    domain.check_quota(plan.quota, kind, used.total(), award, used[award])


def quota_state(session: Session, plan: AwardPlan, unit_id: str) -> dict[str, Any]:
    """What a unit has used of a plan's quota, and what it may still send."""
    state: dict[str, Any] = {"plan_id": plan.plan_id, "unit_id": unit_id, "to_unit_id": plan.issuer_unit_id}
    codes = sorted((plan.quota or {}).get("by_award", {}))
    for kind in NomineeKind:
        used = used_quota(session, plan.campaign_id, unit_id, plan.issuer_unit_id, kind)
        state["collectives" if kind == NomineeKind.collective else "individuals"] = {
            "allowed": domain.allowed(plan.quota, kind),
            "used": used.total(),
            "by_award": {
                code: {"allowed": domain.allowed(plan.quota, kind, code), "used": used[code]}
                for code in codes
            },
        }
    return state


def forward(uow: UnitOfWork, nomination_id: str, by_unit_id: str) -> NominationForwarded:
    """A level that may not grant the award itself forwards it to the level above, within the quota of
    the plan it received from there."""
    session = uow.session
    nomination = held_by(session, nomination_id, by_unit_id, ("passed",))
    rule = rules_for(nomination.year).award(nomination.award)
    if LEVEL_RANK[Level(level_of(session, by_unit_id))] <= LEVEL_RANK[rule.granted_by]:
        raise FieldError(
            "by_unit_id", by_unit_id, f"a level below the one granting {rule.name}: decide it instead"
        )
    current = session.get(AwardPlan, nomination.plan_id)
    assert current is not None
    above = plan_received_by(session, current.campaign_id, by_unit_id)
    if above is None:
        raise FieldError(
            "by_unit_id", by_unit_id, "a unit that received this campaign's plan from the level above"
        )
    check_quota_of(session, above, by_unit_id, NomineeKind(nomination.nominee_kind), nomination.award)
    nomination.plan_id = above.plan_id
    nomination.to_unit_id = above.issuer_unit_id
    nomination.path = [*nomination.path, above.issuer_unit_id]
    nomination.state = "nominated"
    session.add(nomination)
    event = NominationForwarded(
        nomination_id=nomination_id,
        from_unit_id=by_unit_id,
        to_unit_id=above.issuer_unit_id,
        plan_id=above.plan_id,
    )
    uow.publish(event, unit=by_unit_id)
    return event


def decide(uow: UnitOfWork, nomination_id: str, by_unit_id: str) -> AwardDecided:
    """A level grants an award within its authority to a nomination its council passed and that meets
    the year's rules; the decision is numbered NN/QĐ-<unit>, restarting every year."""
    session = uow.session
    nomination = held_by(session, nomination_id, by_unit_id, ("passed",))
    rule = rules_for(nomination.year).award(nomination.award)
    level = level_of(session, by_unit_id)
    if level != rule.granted_by.value:
        raise FieldError(
            "by_unit_id", by_unit_id, f"a {rule.granted_by.value} unit: {rule.name} is granted at that level"
        )
    today = uow.clock.today()
    failures = eligibility(session, nomination, today)
    if failures:
        detail = "; ".join(f"{f.rule} ({f.message}; {f.facts})" for f in failures)
        raise FieldError(
            "nomination_id", nomination_id, f"a nomination meeting the {nomination.year} rules: {detail}"
        )
    seq = (
        int(
            session.scalar(
                select(sa.func.coalesce(sa.func.max(Decision.seq), 0)).where(
                    Decision.decided_by_unit_id == by_unit_id, Decision.year == today.year
                )
            )
            or 0
        )
        + 1
    )
    decision = Decision(
        nomination_id=nomination_id,
        number=f"{seq}/QĐ-{by_unit_id}",
        decided_by_unit_id=by_unit_id,
        year=today.year,
        seq=seq,
        decided_on=today,
    )
    session.add(decision)
    nomination.state = "decided"
    session.add(nomination)
    event = AwardDecided(
        nomination_id=nomination_id,
        decision_number=decision.number,
        decided_by_unit_id=by_unit_id,
        award=nomination.award,
        decided_on=today,
        unit_id=nomination.unit_id,
        nominee_name=nomination.nominee_name,
    )
    uow.publish(event, unit=by_unit_id)
    return event


def revoke(uow: UnitOfWork, nomination_id: str, body: Revoke) -> AwardRevoked:
    """The deciding level revokes an award (thu hồi), saying why."""
    session = uow.session
    decision = session.get(Decision, nomination_id)
    if decision is None or decision.revoked:
        raise FieldError("nomination_id", nomination_id, "an award decided and not yet revoked")
    if decision.decided_by_unit_id != body.by_unit_id:
        raise FieldError(
            "by_unit_id", body.by_unit_id, f"{decision.decided_by_unit_id}, the unit that decided it"
        )
    decision.revoked, decision.revoked_reason = True, body.reason
    session.add(decision)
    nomination = session.get(Nomination, nomination_id)
    assert nomination is not None
    nomination.state = "revoked"
    session.add(nomination)
    event = AwardRevoked(
        nomination_id=nomination_id,
        decision_number=decision.number,
        revoked_by_unit_id=body.by_unit_id,
        reason=body.reason,
        unit_id=nomination.unit_id,
    )
    uow.publish(event, unit=body.by_unit_id)
    return event


def statistics(session: Session, plan_id: str | None = None) -> dict[str, Any]:
    """Awards decided (and not revoked): per deciding level, per award, per plan; and the share that
    went to workers in direct production and to small collectives, which plans ask to favour."""
    decided = [
        (decision, session.get(Nomination, decision.nomination_id))
        for decision in session.exec(select(Decision).where(col(Decision.revoked).is_(False)))
    ]
    rows = [(d, n) for d, n in decided if n is not None and (plan_id is None or plan_id in (n.plan_id,))]
    levels = {u.unit_id: u.level for u in session.exec(select(AwardUnit))}
    individuals = [n for _, n in rows if n.nominee_kind == "individual"]
    collectives = [n for _, n in rows if n.nominee_kind == "collective"]

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    def shares(chosen: list[Nomination]) -> dict[str, float | None]:
        people = [n for n in chosen if n.nominee_kind == "individual"]
        groups = [n for n in chosen if n.nominee_kind == "collective"]
        return {
            "direct_production_share": share(sum(n.direct_production for n in people), len(people)),
            "small_collective_share": share(sum(n.small_collective for n in groups), len(groups)),
        }

    per_level: dict[str, list[Nomination]] = {}
    for decision, nomination in rows:
        per_level.setdefault(levels.get(decision.decided_by_unit_id, "unknown"), []).append(nomination)

    return {
        "decided": len(rows),
        "by_level": dict(Counter(levels.get(d.decided_by_unit_id, "unknown") for d, _ in rows)),
        "by_award": dict(Counter(n.award for _, n in rows)),
        "by_plan": dict(Counter(n.plan_id for _, n in rows)),
        "individuals": len(individuals),
        "direct_production": sum(n.direct_production for n in individuals),
        "direct_production_share": share(sum(n.direct_production for n in individuals), len(individuals)),
        "collectives": len(collectives),
        "small_collectives": sum(n.small_collective for n in collectives),
        "small_collective_share": share(sum(n.small_collective for n in collectives), len(collectives)),
        "shares_by_level": {level: shares(chosen) for level, chosen in sorted(per_level.items())},
    }


# ------------------------------------------------------------------ consumer


def build_handlers(ctx: ServiceContext) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on_many(OrgUnitRegistered)
    def record_units(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
        units = [envelope.data.unit for envelope in envelopes]  # type: ignore[attr-defined]
        known = {row.unit_id: row for row in rows_in(uow.session, AwardUnit.unit_id, [u.id for u in units])}
        for unit in units:
            row = known.get(unit.id) or AwardUnit(unit_id=unit.id, name=unit.name, level=unit.level.value)
            row.name, row.level, row.parent_id = unit.name, unit.level.value, unit.parent_id
            known[unit.id] = row
            uow.session.add(row)
        return {}

    @handlers.on(PlanIssued)
    def record_plan(uow: UnitOfWork, envelope: Envelope) -> None:
        plan = envelope.data
        assert isinstance(plan, PlanIssued)
        if uow.session.get(AwardPlan, plan.plan_id) is None:
            uow.session.add(
                AwardPlan(
                    plan_id=plan.plan_id,
                    campaign_id=plan.campaign_id,
                    issuer_unit_id=plan.issuer_unit_id,
                    target_unit_ids=[target.unit_id for target in plan.targets],
                    quota=plan.award_quota.model_dump() if plan.award_quota else None,
                    phases=[phase.model_dump(mode="json") for phase in plan.phases],
                )
            )

    @handlers.on(PlanAmended)
    def follow_amendment(uow: UnitOfWork, envelope: Envelope) -> None:
        amended = envelope.data
        assert isinstance(amended, PlanAmended)
        plan = uow.session.get(AwardPlan, amended.plan_id)
        if plan is not None:
            plan.quota = amended.award_quota.model_dump() if amended.award_quota else None
            plan.phases = [phase.model_dump(mode="json") for phase in amended.phases]
            uow.session.add(plan)

    @handlers.on_many(ReportSubmitted)
    def record_reports(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
        """The first report of a unit on a phase (by when it was sent) decides whether it was on time."""
        session = uow.session
        refused = reports_for_others(envelopes)
        reports = [envelope.data for envelope in envelopes if envelope.id not in refused]
        plan_ids = {report.plan_id for report in reports}  # type: ignore[attr-defined]
        # Each plan's campaign and phases, read as columns (not its list of target units), and each
        # phase's due date worked out once for the batch.
        plan_columns = (AwardPlan.plan_id, AwardPlan.campaign_id, AwardPlan.phases)
        campaign_of: dict[str, str] = {}
        due_of: dict[tuple[str, int], date | None] = {}
        for plan_id, campaign_id, phases in columns_in(session, plan_columns, AwardPlan.plan_id, plan_ids):
            campaign_of[plan_id] = campaign_id
            for phase in phases:
                due = phase.get("report_due")
                due_of[(plan_id, phase["seq"])] = date.fromisoformat(due) if due else None
        keys = {
            (campaign_of[r.plan_id], r.unit_id, r.phase_seq)  # type: ignore[attr-defined]
            for r in reports
            if r.plan_id in campaign_of  # type: ignore[attr-defined]
        }
        record_key = (ReportRecord.campaign_id, ReportRecord.unit_id, ReportRecord.phase_seq)
        first_sent = {
            (campaign_id, unit_id, phase_seq): utc(sent)
            for campaign_id, unit_id, phase_seq, sent in columns_in(
                session, (*record_key, ReportRecord.first_submitted_at), record_key, keys
            )
        }
        stored = set(first_sent)
        earlier: dict[tuple[str, str, int], dict[str, Any]] = {}  # what the batch changes, by key
        for report in reports:
            assert isinstance(report, ReportSubmitted)
            if report.plan_id not in campaign_of:
                continue
            key = (campaign_of[report.plan_id], report.unit_id, report.phase_seq)
            if key in first_sent and first_sent[key] <= report.submitted_at:
                continue
            due = due_of.get((report.plan_id, report.phase_seq))
            on_time = due is not None and report.submitted_at.astimezone(LOCAL_TZ).date() <= due
            earlier[key] = {"on_time": on_time, "first_submitted_at": report.submitted_at}
            first_sent[key] = report.submitted_at
        names = ("campaign_id", "unit_id", "phase_seq")
        rows = {key: dict(zip(names, key, strict=True)) | change for key, change in sorted(earlier.items())}
        insert_rows(session, ReportRecord, [row for key, row in rows.items() if key not in stored])
        update_rows(session, ReportRecord, names, [row for key, row in rows.items() if key in stored])
        return refused

    @handlers.on(NominationMade)
    def record_nomination(uow: UnitOfWork, envelope: Envelope) -> None:
        """Nominations from other producers are held to the same rules as those made here."""
        made = envelope.data
        assert isinstance(made, NominationMade)
        if uow.session.get(Nomination, made.nomination_id) is not None:
            return
        if envelope.unit != made.unit_id:
            raise EventRejected("unauthorized", f"unit {envelope.unit} nominated on behalf of {made.unit_id}")
        command = Nominate.model_validate(made.model_dump(exclude={"nomination_id", "to_unit_id"}))
        try:
            nominate(uow, command, nomination_id=made.nomination_id)
        except FieldError as error:
            raise EventRejected("rule_violation", str(error)) from error
        ctx.metrics.nominations.labels("nominated").inc()

    return handlers
