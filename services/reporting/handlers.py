"""Event handlers, commands and periodic steps of the reporting service."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.reporting import domain
from services.reporting.models import (
    Aggregate,
    Consolidation,
    DeadlineCheck,
    PlanRecipient,
    PlanView,
    ReportingUnit,
    ReportTarget,
    ReportVersion,
    Review,
    UnitContribution,
    UnitParent,
)
from shared.clock import LOCAL_TZ, local_midnight
from shared.consumer import EventHandlers, Record, reports_for_others
from shared.errors import EventRejected, FieldError
from shared.events import (
    Envelope,
    Indicator,
    Level,
    OrgUnitMoved,
    OrgUnitRegistered,
    PlanAmended,
    PlanIssued,
    PlanRescheduled,
    PlanRevoked,
    ReportAccepted,
    ReportApproved,
    ReportConsolidated,
    ReportOverdue,
    ReportReturned,
    ReportSubmitted,
)
from shared.metrics import Metrics
from shared.service import ServiceContext
from shared.storage import (
    UnitOfWork,
    chunks,
    columns_in,
    delete_rows,
    insert_rows,
    rows_in,
    update_rows,
    utc,
)

ReportKey = tuple[str, int, str]  # plan, phase, unit
AggregateKey = tuple[str, int, str]  # campaign, phase, unit
REVIEW_EVENTS = {"approve": ReportApproved, "return": ReportReturned, "accept": ReportAccepted}


def phase_of(plan: PlanView, phase_seq: int) -> dict[str, Any] | None:
    return next((phase for phase in plan.phases if phase["seq"] == phase_seq), None)


def due_of(plan: PlanView, phase_seq: int) -> date | None:
    """The phase's report deadline; None for no such phase, or one that ends at an undated milestone."""
    phase = phase_of(plan, phase_seq)
    return date.fromisoformat(phase["report_due"]) if phase and phase.get("report_due") else None


def indicators_of(plan: PlanView) -> tuple[Indicator, ...]:
    """A plan's indicators (checked when the plan was issued), made once for each distinct set."""
    return _indicators(tuple((item["code"], item["name"], item["kind"]) for item in plan.indicators))


@lru_cache(maxsize=1024)
def _indicators(items: tuple[tuple[str, str, str], ...]) -> tuple[Indicator, ...]:
    return tuple(Indicator(code=code, name=name, kind=kind) for code, name, kind in items)


REPORT_KEY = ("plan_id", "phase_seq", "unit_id")  # the key columns of reviews and contributions
TARGET_KEY = (ReportTarget.plan_id, ReportTarget.phase_seq, ReportTarget.unit_id)
VERSION_KEY = (ReportVersion.plan_id, ReportVersion.phase_seq, ReportVersion.unit_id)
CONTRIBUTION_KEY = (UnitContribution.plan_id, UnitContribution.phase_seq, UnitContribution.unit_id)
RECIPIENT_COLUMNS = (PlanRecipient.plan_id, PlanRecipient.unit_id)
PARENT_COLUMNS = (UnitParent.unit_id, UnitParent.valid_from, UnitParent.parent_id)
AGGREGATE_KEY = ("campaign_id", "phase_seq", "unit_id")
AGGREGATE_COLUMNS = tuple(
    getattr(Aggregate, name) for name in (*AGGREGATE_KEY, "parent_unit_id", *domain.COUNTERS, "figures")
)


def plans_by_id(session: Session, plan_ids: Iterable[str]) -> dict[str, PlanView]:
    return {plan.plan_id: plan for plan in rows_in(session, PlanView.plan_id, plan_ids)}


KEPT_PLANS = 20_000  # plans kept between batches at most (a national campaign has about 800)


def batch_plans(uow: UnitOfWork, plan_ids: Iterable[str]) -> dict[str, PlanView]:
    """The plans a batch's reports are on, as they stand now (for reading only). A copy kept from an earlier
    batch is used while it holds the revision the database holds: only the plans that changed (in this
    batch, or on another instance) or were never read are read whole."""
    kept: dict[str, PlanView] = uow.memory.setdefault("reporting.plans", {})
    revision_columns = (PlanView.plan_id, PlanView.revision)
    revisions = dict(columns_in(uow.session, revision_columns, PlanView.plan_id, set(plan_ids)))
    stale = [p for p, revision in revisions.items() if p not in kept or kept[p].revision != revision]
    if len(kept) + len(stale) > KEPT_PLANS:
        kept.clear()
    for plan in plans_by_id(uow.session, stale).values():
        uow.session.expunge(plan)  # kept apart from the session: what it changes or rolls back stays its own
        kept[plan.plan_id] = plan
    return {plan_id: kept[plan_id] for plan_id in revisions}


def dirty_keys(uow: UnitOfWork) -> set[ReportKey]:
    keys: set[ReportKey] = uow.batch.setdefault("reporting.dirty", set())
    return keys


def batch_targets(uow: UnitOfWork) -> dict[ReportKey, bool]:
    """Whether each report key the batch has looked up is expected (a target): the end-of-batch refresh
    does not read them again. `retarget` keeps it as the targets it changes now stand; anything else that
    changes targets forgets it."""
    targets: dict[ReportKey, bool] = uow.cache.setdefault("reporting.targets", {})
    return targets


def forget_targets(uow: UnitOfWork) -> None:
    uow.cache.pop("reporting.targets", None)


VERSION_COLUMNS = (*VERSION_KEY, ReportVersion.report_id, ReportVersion.submitted_at, ReportVersion.values)


def stored_versions(
    session: Session, column: Any, values: Iterable[Any]
) -> dict[ReportKey, list[domain.Version]]:
    """The versions kept of each report key, found by `column` in `values`."""
    found: dict[ReportKey, list[domain.Version]] = defaultdict(list)
    for plan_id, phase_seq, unit_id, report_id, sent, values_sent in columns_in(
        session, VERSION_COLUMNS, column, values
    ):
        found[(plan_id, phase_seq, unit_id)].append(domain.Version(report_id, utc(sent), values_sent))
    return found


def batch_versions(uow: UnitOfWork) -> dict[ReportKey, list[domain.Version]]:
    """Every version of the report keys that had none before this batch: the end-of-batch refresh counts
    them without reading back what the batch has just written."""
    versions: dict[ReportKey, list[domain.Version]] = uow.cache.setdefault("reporting.versions", {})
    return versions


# ------------------------------------------------------------------ who reports where


def parent_from(history: list[Any], day: date) -> str | None:
    """The unit's parent on a day, from its known parents by the day each took effect (None when reporting
    has not heard of it yet)."""
    known = [row for row in history if row.valid_from <= day]
    return max(known, key=lambda row: row.valid_from).parent_id if known else None


def retarget(uow: UnitOfWork, units: set[str]) -> set[ReportKey]:
    """Decide, for each unit and phase, which plan of its cascade level it reports on: the plan of its
    parent when the phase starts, or else the plan it was sent. Changed targets are refreshed; returns
    the targets added. Whatever the number of units, this reads in a few set-based queries."""
    session = uow.session
    sent_to: dict[str, list[str]] = defaultdict(list)
    for plan_id, unit_id in columns_in(session, RECIPIENT_COLUMNS, PlanRecipient.unit_id, units):
        sent_to[unit_id].append(plan_id)
    if not sent_to:
        return set()
    plans = plans_by_id(session, {plan_id for sent in sent_to.values() for plan_id in sent})
    level: dict[tuple[str, str | None], dict[str, PlanView]] = {}
    for campaign_id, parent_plan_id in sorted(
        {(p.campaign_id, p.parent_plan_id) for p in plans.values()}, key=str
    ):
        siblings = session.exec(
            select(PlanView).where(
                PlanView.campaign_id == campaign_id, PlanView.parent_plan_id == parent_plan_id
            )
        ).all()
        level[(campaign_id, parent_plan_id)] = {s.issuer_unit_id: s for s in siblings if not s.revoked}
    history: dict[str, list[Any]] = defaultdict(list)  # (unit_id, valid_from, parent_id) rows
    for row in columns_in(session, PARENT_COLUMNS, UnitParent.unit_id, sent_to):
        history[row.unit_id].append(row)
    level_plans = {s.plan_id for siblings in level.values() for s in siblings.values()}
    # Found by unit (a few targets each) and kept to the level's plans here: asked for both at once, a
    # database may walk every target of the level's plans instead.
    stored: dict[str, set[ReportKey]] = defaultdict(set)
    for key in columns_in(session, TARGET_KEY, ReportTarget.unit_id, sent_to):
        if key[0] in level_plans:
            stored[key[2]].add(tuple(key))
    added: set[ReportKey] = set()
    dropped: set[ReportKey] = set()
    for unit_id in sorted(sent_to):
        wanted: set[ReportKey] = set()
        siblings_seen: set[str] = set()
        for plan_id in sent_to[unit_id]:
            plan = plans.get(plan_id)
            if plan is None:
                continue
            by_issuer = level[(plan.campaign_id, plan.parent_plan_id)]
            siblings_seen.update(sibling.plan_id for sibling in by_issuer.values())
            for phase in plan.phases:
                parent = parent_from(history[unit_id], date.fromisoformat(phase["start"]))
                host = by_issuer.get(parent or "") or (None if plan.revoked else plan)
                if host is not None:
                    wanted.add((host.plan_id, phase["seq"], unit_id))
        current = {key for key in stored[unit_id] if key[0] in siblings_seen}
        dropped |= current - wanted
        added |= wanted - current
    delete_rows(
        session, ReportTarget, REPORT_KEY, [dict(zip(REPORT_KEY, k, strict=True)) for k in sorted(dropped)]
    )
    insert_rows(session, ReportTarget, [dict(zip(REPORT_KEY, k, strict=True)) for k in sorted(added)])
    dirty_keys(uow).update(added | dropped)
    looked_up = batch_targets(uow)  # kept as the database now holds them: the refresh need not read them
    looked_up.update(dict.fromkeys(added, True) | dict.fromkeys(dropped, False))
    return added


def record_units(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
    """Learn units (a whole import in a few statements): their names, and their parents from the day
    each version is valid. Units with a new parent are placed again on the plans they report on."""
    session = uow.session
    units = [envelope.data.unit for envelope in envelopes]  # type: ignore[attr-defined]
    ids = [unit.id for unit in units]
    known = {row.unit_id: row for row in rows_in(session, ReportingUnit.unit_id, ids)}
    parents = {(row.unit_id, row.valid_from) for row in rows_in(session, UnitParent.unit_id, ids)}
    moved = set()
    for unit in units:
        row = known.get(unit.id)
        if row is None:
            row = known[unit.id] = ReportingUnit(unit_id=unit.id, name=unit.name, level=unit.level.value)
        row.name, row.level = unit.name, unit.level.value
        session.add(row)
        if (unit.id, unit.valid_from) not in parents:
            parents.add((unit.id, unit.valid_from))
            session.add(UnitParent(unit_id=unit.id, valid_from=unit.valid_from, parent_id=unit.parent_id))
            moved.add(unit.id)
    session.flush()
    retarget(uow, moved)
    return {}


def record_move(uow: UnitOfWork, envelope: Envelope) -> None:
    """A unit moved: phases starting from the move on are reported to the new parent's plan."""
    move = envelope.data
    assert isinstance(move, OrgUnitMoved)
    session = uow.session
    row = session.get(UnitParent, (move.unit_id, move.effective_on))
    if row is None:
        session.add(
            UnitParent(unit_id=move.unit_id, valid_from=move.effective_on, parent_id=move.new_parent_id)
        )
    else:
        row.parent_id = move.new_parent_id
        session.add(row)
    session.flush()
    retarget(uow, {move.unit_id})


def plan_view(plan: PlanIssued) -> PlanView:
    return PlanView(
        plan_id=plan.plan_id,
        campaign_id=plan.campaign_id,
        parent_plan_id=plan.parent_plan_id,
        issuer_unit_id=plan.issuer_unit_id,
        number=plan.number,
        title=plan.title,
        report_after_phase_end=plan.report_after_phase_end,
        chain=[ref.issuer_unit_id for ref in plan.lineage] + [plan.issuer_unit_id],
        phases=[phase.model_dump(mode="json") for phase in plan.phases],
        indicators=[indicator.model_dump(mode="json") for indicator in plan.indicators],
    )


def record_plans(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
    """Learn plans (a cascade's hundreds in a few statements): their grassroots recipients, and the units
    of their cascade levels now reporting on them."""
    session = uow.session
    issued: dict[str, PlanIssued] = {}
    for envelope in envelopes:
        assert isinstance(envelope.data, PlanIssued)
        issued.setdefault(envelope.data.plan_id, envelope.data)
    known = {row[0] for row in columns_in(session, (PlanView.plan_id,), PlanView.plan_id, issued)}
    new = {plan_id: plan for plan_id, plan in issued.items() if plan_id not in known}
    if not new:
        return {}
    session.add_all(plan_view(plan) for plan in new.values())
    session.flush()
    recipients = sorted(
        {
            (plan.plan_id, target.unit_id)
            for plan in new.values()
            for target in plan.targets
            if target.level == Level.grassroots
        }
    )
    insert_rows(session, PlanRecipient, [{"plan_id": p, "unit_id": u} for p, u in recipients])
    # A new plan of the level changes where its recipients report, and where units that were (or will be)
    # below its issuer report: the units whose parent on a phase's start is the issuer.
    issuers = {plan.issuer_unit_id for plan in new.values()}
    below = {row[0] for row in columns_in(session, (UnitParent.unit_id,), UnitParent.parent_id, issuers)}
    added = retarget(uow, {unit_id for _, unit_id in recipients} | below)
    # Reports that arrived before their plan now count. Every version on the new plans is read here, so
    # the refresh knows them all, and knows these plans have no contributions yet.
    pending = stored_versions(session, ReportVersion.plan_id, new)
    dirty_keys(uow).update(pending)
    complete = batch_versions(uow)
    complete.update({key: [] for key in added if key[0] in new} | pending)
    uow.cache.setdefault("reporting.new_plans", set()).update(new)
    return {}


def replan(uow: UnitOfWork, event: PlanRescheduled | PlanAmended) -> None:
    """A plan's phases (and, amended, its indicators and title) changed: reports are timed again
    against the new deadlines, and units placed again by the new phase starts."""
    session = uow.session
    plan = session.get(PlanView, event.plan_id)
    if plan is None:
        return
    plan.phases = [phase.model_dump(mode="json") for phase in event.phases]
    plan.revision += 1
    if isinstance(event, PlanAmended):
        plan.indicators = [indicator.model_dump(mode="json") for indicator in event.indicators]
        plan.title = event.title
    session.add(plan)
    session.flush()
    units = set(
        session.exec(select(PlanRecipient.unit_id).where(PlanRecipient.plan_id == plan.plan_id)).all()
    )
    retarget(uow, units)
    targets = session.exec(select(ReportTarget).where(ReportTarget.plan_id == plan.plan_id)).all()
    dirty_keys(uow).update((t.plan_id, t.phase_seq, t.unit_id) for t in targets)


def revoke(uow: UnitOfWork, plan_id: str) -> None:
    """A revoked plan expects nothing more: its units' expected reports and figures leave every
    aggregate above, exactly; the reports themselves are kept."""
    session = uow.session
    plan = session.get(PlanView, plan_id)
    if plan is None or plan.revoked:
        return
    plan.revoked = True
    plan.revision += 1
    session.add(plan)
    forget_targets(uow)
    for target in session.exec(select(ReportTarget).where(ReportTarget.plan_id == plan_id)).all():
        dirty_keys(uow).add((target.plan_id, target.phase_seq, target.unit_id))
        session.delete(target)
    session.flush()


# ------------------------------------------------------------------ reports


@dataclass(frozen=True)
class Standing:
    """Where a report stands with the level above (what a Review row says, read without the ORM)."""

    state: str
    by_unit_id: str | None


REVIEW_KEY = (Review.plan_id, Review.phase_seq, Review.unit_id)


@dataclass(frozen=True)
class Terms:
    """A plan's phases by number, the day each ends, each one's report deadline (as `due_of`) and the
    plan's indicators: worked out once for all the reports on the plan that are checked or counted
    together, not once for each."""

    phases: dict[int, dict[str, Any]]
    ends: dict[int, date | None]
    dues: dict[int, date | None]
    indicators: tuple[Indicator, ...]

    @classmethod
    def of(cls, plan: PlanView) -> Terms:
        phases = {phase["seq"]: phase for phase in reversed(plan.phases)}  # the first of a number wins
        ends = {seq: date.fromisoformat(p["end"]) if p.get("end") else None for seq, p in phases.items()}
        dues = {
            seq: date.fromisoformat(p["report_due"]) if p.get("report_due") else None
            for seq, p in phases.items()
        }
        return cls(phases, ends, dues, indicators_of(plan))


@dataclass
class Known:
    """What checking and keeping a set of reports needs, read in a few queries: the plans, who reports
    on which plan and phase, where reports stand with the level above, and the versions already kept."""

    plans: dict[str, PlanView] = field(default_factory=dict)
    targets: set[ReportKey] = field(default_factory=set)
    reviews: dict[ReportKey, Standing | Review] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    terms: dict[str, Terms] = field(default_factory=dict)

    def terms_of(self, plan: PlanView) -> Terms:
        found = self.terms.get(plan.plan_id)
        if found is None:
            found = self.terms[plan.plan_id] = Terms.of(plan)
        return found

    @classmethod
    def read(
        cls, session: Session, reports: list[ReportSubmitted], plans: dict[str, PlanView] | None = None
    ) -> Known:
        known = cls()
        plan_ids = sorted({report.plan_id for report in reports})
        known.plans = plans_by_id(session, plan_ids) if plans is None else plans
        keys = {(report.plan_id, report.phase_seq, report.unit_id) for report in reports}
        known.targets = set(columns_in(session, TARGET_KEY, TARGET_KEY, keys))
        above = {
            (plan.parent_plan_id, seq, plan.issuer_unit_id)
            for plan_id, seq, _ in keys
            if (plan := known.plans.get(plan_id)) is not None and plan.parent_plan_id
        }
        review_columns = (*REVIEW_KEY, Review.state, Review.by_unit_id)
        for plan_id, phase_seq, unit_id, state, by in columns_in(
            session, review_columns, REVIEW_KEY, keys | above
        ):
            known.reviews[(plan_id, phase_seq, unit_id)] = Standing(state, by)
        report_ids = [report.report_id for report in reports]
        known.kept = {
            row[0]
            for row in columns_in(session, (ReportVersion.report_id,), ReportVersion.report_id, report_ids)
        }
        return known

    def lock_reason(self, plan: PlanView, phase_seq: int, unit_id: str) -> str | None:
        """Why a unit's report may not change now: approved, or consolidated above and accepted."""
        review = self.reviews.get((plan.plan_id, phase_seq, unit_id))
        if review and review.state in domain.LOCKED:
            return f"{review.state} by {review.by_unit_id}; ask them to return it for correction first"
        if plan.parent_plan_id:
            above = self.reviews.get((plan.parent_plan_id, phase_seq, plan.issuer_unit_id))
            if above and above.state == "accepted":
                return f"consolidated by {plan.issuer_unit_id} and accepted by {above.by_unit_id}"
        return None


def lock_reason(session: Session, plan: PlanView, phase_seq: int, unit_id: str) -> str | None:
    """Why a unit's report may not change now: approved, or consolidated above and accepted."""
    known = Known(plans={plan.plan_id: plan})
    for key in ((plan.plan_id, phase_seq, unit_id), (plan.parent_plan_id, phase_seq, plan.issuer_unit_id)):
        review = session.get(Review, key) if key[0] else None
        if review is not None:
            known.reviews[key] = review  # type: ignore[index]
    return known.lock_reason(plan, phase_seq, unit_id)


def report_problems(
    session: Session, plan: PlanView, report: ReportSubmitted, known: Known | None = None
) -> list[FieldError]:
    """Why a report cannot count for its plan (empty when it can)."""
    known = known or Known.read(session, [report])
    if plan.revoked:
        return [FieldError("plan_id", plan.plan_id, "a plan in force (this one was revoked)")]
    terms = known.terms_of(plan)
    if report.phase_seq not in terms.phases:
        return [FieldError("phase_seq", report.phase_seq, f"a phase of plan {plan.plan_id}")]
    end = terms.ends[report.phase_seq]
    if end is None:
        return [
            FieldError(
                "phase_seq",
                report.phase_seq,
                f"a phase with its end set: phase {report.phase_seq} ends at a milestone not yet dated",
            )
        ]
    if (plan.plan_id, report.phase_seq, report.unit_id) not in known.targets:
        return [
            FieldError("unit_id", report.unit_id, f"a unit reporting on plan {plan.plan_id} in this phase")
        ]
    if plan.report_after_phase_end and report.submitted_at.astimezone(LOCAL_TZ).date() <= end:
        return [FieldError("phase_seq", report.phase_seq, f"a phase that has ended: this one ends on {end}")]
    locked = known.lock_reason(plan, report.phase_seq, report.unit_id)
    if locked:
        return [
            FieldError("unit_id", report.unit_id, f"a report that is open for correction: it was {locked}")
        ]
    return domain.check_values(terms.indicators, report.values)


def keep_version(uow: UnitOfWork, report: ReportSubmitted) -> None:
    """Keep one report version (once), mark it submitted, and note its unit for the end-of-batch refresh."""
    keep_versions(uow, [report], Known.read(uow.session, [report]))


def keep_versions(uow: UnitOfWork, reports: list[ReportSubmitted], known: Known) -> None:
    """Keep the versions not kept yet (in one insert), mark each unit's report submitted (in one insert
    and one update), and note the units for the end-of-batch refresh."""
    session, now = uow.session, uow.clock.now()
    dirty = dirty_keys(uow)
    versions: list[dict[str, Any]] = []
    first: dict[ReportKey, dict[str, Any]] = {}  # reports the level above sees for the first time
    again: set[ReportKey] = set()
    complete = batch_versions(uow)
    for report in reports:
        key = (report.plan_id, report.phase_seq, report.unit_id)
        dirty.add(key)
        if report.report_id in known.kept:
            continue
        known.kept.add(report.report_id)
        sent = utc(report.submitted_at)  # a database without time zones keeps the moment, not the offset
        values = dict(report.values)
        versions.append(
            {
                "report_id": report.report_id,
                "plan_id": report.plan_id,
                "phase_seq": report.phase_seq,
                "unit_id": report.unit_id,
                "values": values,
                "narrative": report.narrative,
                "submitted_at": sent,
                "received_at": now,
            }
        )
        # A key with no review yet has no version kept before: its versions are all in this batch.
        if key in complete:
            complete[key].append(domain.Version(report.report_id, sent, values))
        elif key not in known.reviews:
            complete[key] = [domain.Version(report.report_id, sent, values)]
        if key in known.reviews:
            again.add(key)
        else:
            first[key] = {"plan_id": key[0], "phase_seq": key[1], "unit_id": key[2], "state": "submitted"}
            first[key] |= {"reason": "", "by_unit_id": None, "at": now}
        known.reviews[key] = Standing("submitted", None)
    insert_rows(session, ReportVersion, versions)
    insert_rows(session, Review, list(first.values()))
    resubmitted = {"state": "submitted", "reason": "", "by_unit_id": None, "at": now}
    update_rows(
        session,
        Review,
        REPORT_KEY,
        [dict(zip(REPORT_KEY, key, strict=True)) | resubmitted for key in sorted(again)],
    )


def set_review(
    session: Session,
    plan_id: str,
    phase_seq: int,
    unit_id: str,
    state: str,
    at: Any,
    by: str | None = None,
    reason: str = "",
) -> None:
    row = session.get(Review, (plan_id, phase_seq, unit_id)) or Review(
        plan_id=plan_id, phase_seq=phase_seq, unit_id=unit_id, state=state, at=at
    )
    row.state, row.at, row.by_unit_id, row.reason = state, at, by, reason
    session.add(row)


def record_reports(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
    """Reports from any producer: checked against their plan (when known), kept, counted at batch end;
    the refused ones are returned with why. A whole batch takes a few queries and one insert.

    Reports submitted through this service's API are already kept (in the transaction that published
    them, so a deadline check never misses a report in flight); here they are only counted.
    """
    session = uow.session
    reports = [envelope.data for envelope in envelopes]
    plans = batch_plans(uow, {report.plan_id for report in reports})  # type: ignore[attr-defined]
    known = Known.read(session, reports, plans)  # type: ignore[arg-type]
    looked_up = batch_targets(uow)
    for report in reports:
        key = (report.plan_id, report.phase_seq, report.unit_id)  # type: ignore[attr-defined]
        looked_up[key] = key in known.targets
    refused = reports_for_others(envelopes)
    accepted: list[ReportSubmitted] = []
    for envelope in envelopes:
        report = envelope.data
        assert isinstance(report, ReportSubmitted)
        if envelope.id in refused:
            continue
        plan = known.plans.get(report.plan_id)
        if (
            plan is not None
            and report.report_id not in known.kept
            and (problems := report_problems(session, plan, report, known))
        ):
            refused[envelope.id] = EventRejected("rule_violation", "; ".join(str(p) for p in problems))
        else:
            accepted.append(report)
    keep_versions(uow, accepted, known)
    return refused


def record_rejection(uow: UnitOfWork, record: Record, rejection: EventRejected) -> None:
    """Keep a refused report with its reasons, so the unit can see why (GET /reporting/rejections)."""
    from services.reporting.models import Rejection

    if record.headers.get("ce_type") != ReportSubmitted.type_name():
        return
    try:
        report = ReportSubmitted.model_validate_json(record.value or b"")
        plan_id, phase_seq, unit_id, report_id = (
            report.plan_id,
            report.phase_seq,
            report.unit_id,
            report.report_id,
        )
    except ValueError:
        plan_id, phase_seq, unit_id, report_id = None, None, record.headers.get("ce_unit"), record.event_id
    if uow.session.get(Rejection, report_id) is None:
        uow.session.add(
            Rejection(
                report_id=report_id,
                plan_id=plan_id,
                phase_seq=phase_seq,
                unit_id=unit_id,
                reasons=str(rejection),
                at=uow.clock.now(),
            )
        )


# ------------------------------------------------------------------ aggregation


class Totals:
    """Changes to aggregates, summed in memory, then written in one pass in key order (no deadlocks)."""

    def __init__(self) -> None:
        self.changes: dict[AggregateKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.parents: dict[AggregateKey, str | None] = {}
        # Changes summed per line of issuers first: the reports of a batch share a few hundred lines.
        self.by_chain: dict[tuple[str, int, tuple[str, ...]], Counter[str]] = defaultdict(Counter)

    def add(self, campaign_id: str, phase_seq: int, chain: list[str], delta: dict[str, int]) -> None:
        self.by_chain[(campaign_id, phase_seq, tuple(chain))].update(delta)

    def _spread(self) -> None:
        """Add each line's summed changes to every level on it."""
        for (campaign_id, phase_seq, chain), delta in self.by_chain.items():
            for depth, unit_id in enumerate(chain):
                key = (campaign_id, phase_seq, unit_id)
                self.parents[key] = chain[depth - 1] if depth else None
                for name, change in delta.items():
                    self.changes[key][name] += change
        self.by_chain.clear()

    def apply(self, session: Session) -> dict[AggregateKey, dict[str, Any]]:
        """Move the aggregates by the summed changes, below the ORM: each changed aggregate is read once
        (locked, in key order) and written with the others in one update and one insert. Returns each
        changed aggregate as it now stands."""
        self._spread()
        changed = sorted(key for key, change in self.changes.items() if any(change.values()))
        stored: dict[AggregateKey, dict[str, Any]] = {}
        for campaign_id in sorted({key[0] for key in changed}):
            phases = sorted({key[1] for key in changed if key[0] == campaign_id})
            for part in chunks(sorted({key[2] for key in changed if key[0] == campaign_id})):
                query = (
                    sa.select(*AGGREGATE_COLUMNS)
                    .where(Aggregate.campaign_id == campaign_id, col(Aggregate.phase_seq).in_(phases))
                    .where(col(Aggregate.unit_id).in_(part))
                    .order_by(col(Aggregate.phase_seq), col(Aggregate.unit_id))
                    .with_for_update()
                )
                for row in session.execute(query):
                    stored[(row.campaign_id, row.phase_seq, row.unit_id)] = row._asdict()
        now: dict[AggregateKey, dict[str, Any]] = {}
        added: list[dict[str, Any]] = []
        for key in changed:
            row = stored.get(key)
            if row is None:
                row = dict(zip(AGGREGATE_KEY, key, strict=True)) | {"parent_unit_id": self.parents[key]}
                row |= dict.fromkeys(domain.COUNTERS, 0) | {"figures": {}}
                added.append(row)
            figures = dict(row["figures"])
            for name, change in self.changes[key].items():
                if name.startswith("figures."):
                    code = name.removeprefix("figures.")
                    figures[code] = figures.get(code, 0) + change
                else:
                    row[name] += change
            row["figures"] = figures
            now[key] = row
        moved = [
            {name: row[name] for name in (*AGGREGATE_KEY, *domain.COUNTERS, "figures")}
            for key, row in now.items()
            if key in stored
        ]
        update_rows(session, Aggregate, AGGREGATE_KEY, moved)
        insert_rows(session, Aggregate, added)
        # Aggregates this session read as objects before are read again when next asked for.
        moved_keys = set(changed)
        for identity in list(session.identity_map.keys()):
            if identity[0] is Aggregate and identity[1] in moved_keys:
                session.expire(session.identity_map[identity])
        self.changes.clear()
        return now


def refresh_contributions(uow: UnitOfWork, keys: set[ReportKey], metrics: Metrics | None = None) -> None:
    """Recompute the contribution of every unit whose reports or targets changed, and move the
    aggregates by the difference. Reports whose plan is not known yet wait for it."""
    session = uow.session
    plans = batch_plans(uow, {plan_id for plan_id, _, _ in keys})
    looked_up = batch_targets(uow)
    targets = {key for key in keys if looked_up.get(key)}
    targets.update(tuple(row) for row in columns_in(session, TARGET_KEY, TARGET_KEY, keys - looked_up.keys()))
    complete = batch_versions(uow)
    versions_of = stored_versions(session, VERSION_KEY, keys - complete.keys())
    versions_of.update((key, complete[key]) for key in keys & complete.keys())
    new_plans = uow.cache.pop("reporting.new_plans", set())  # plans with no contributions before this batch
    contribution_columns = (*CONTRIBUTION_KEY, UnitContribution.overdue, UnitContribution.applied)
    contributions = {
        (plan_id, phase_seq, unit_id): (overdue, applied)
        for plan_id, phase_seq, unit_id, overdue, applied in columns_in(
            session, contribution_columns, CONTRIBUTION_KEY, {key for key in keys if key[0] not in new_plans}
        )
    }
    totals = Totals()
    terms = {plan_id: Terms.of(plan) for plan_id, plan in plans.items()}
    first: list[dict[str, Any]] = []  # units contributing for the first time
    moved: list[dict[str, Any]] = []  # units whose contribution changed
    received: Counter[str] = Counter()  # reports counted for the first time, on time or late
    for plan_id, phase_seq, unit_id in sorted(keys):
        plan = plans.get(plan_id)
        if plan is None or phase_seq not in terms[plan_id].phases:
            continue
        # An undated phase has no reports yet, only expectations.
        due = terms[plan_id].dues[phase_seq] or date.max
        versions = versions_of.get((plan_id, phase_seq, unit_id), [])
        expected = (plan_id, phase_seq, unit_id) in targets
        stored = contributions.get((plan_id, phase_seq, unit_id))
        old = domain.Contribution.from_dict(stored[1] if stored else None)
        new = domain.contribution(
            versions, due, bool(stored and stored[0]), terms[plan_id].indicators, expected
        )
        delta = domain.difference(new, old)
        if not delta:
            continue
        totals.add(plan.campaign_id, phase_seq, plan.chain, delta)
        if stored is None:
            first.append(
                {
                    "plan_id": plan_id,
                    "phase_seq": phase_seq,
                    "unit_id": unit_id,
                    "overdue": False,
                    "applied": new.as_dict(),
                }
            )
        else:
            moved.append(
                {"plan_id": plan_id, "phase_seq": phase_seq, "unit_id": unit_id, "applied": new.as_dict()}
            )
        if new.received and not old.received:
            received["on_time" if new.on_time else "late"] += 1
    if metrics is not None:
        for timing, count in received.items():
            metrics.reports_received.labels(timing).inc(count)
    insert_rows(session, UnitContribution, first)
    update_rows(session, UnitContribution, REPORT_KEY, moved)
    changed = totals.apply(session)
    keys.clear()
    consolidate_complete(uow, changed)


# ------------------------------------------------------------------ review and consolidation


def review(
    uow: UnitOfWork, plan_id: str, phase_seq: int, unit_id: str, action: str, by: str, reason: str
) -> None:
    """The level above approves, returns (with a reason) or accepts a report sent to it."""
    session = uow.session
    plan = session.get(PlanView, plan_id)
    if plan is None:
        raise FieldError("plan_id", plan_id, "a plan known to reporting")
    if by != plan.issuer_unit_id:
        raise FieldError("by_unit_id", by, f"{plan.issuer_unit_id}, the unit that issued the plan")
    if action == "return" and not reason.strip():
        raise FieldError("reason", reason, "why the report goes back, for the unit to correct it")
    current = session.get(Review, (plan_id, phase_seq, unit_id))
    consolidated = session.get(Consolidation, (plan_id, phase_seq, unit_id)) is not None
    problem = domain.review_error(action, current.state if current else None, consolidated)
    if problem:
        raise FieldError("action", action, problem)
    now = uow.clock.now()
    set_review(session, plan_id, phase_seq, unit_id, domain.REVIEW_STATE[action], now, by, reason.strip())
    event_type = REVIEW_EVENTS[action]
    fields: dict[str, Any] = {
        "plan_id": plan_id,
        "phase_seq": phase_seq,
        "unit_id": unit_id,
        "by_unit_id": by,
    }
    if action == "return":
        fields["reason"] = reason.strip()
    uow.publish(event_type(**fields), unit=by, correlation_id=plan.campaign_id)


def consolidate(uow: UnitOfWork, plan: PlanView, phase_seq: int, automatic: bool) -> Consolidation:
    """The issuer of `plan` sends the consolidated report of its subtree up, on the plan it received."""
    session = uow.session
    if plan.parent_plan_id is None:
        raise FieldError("plan_id", plan.plan_id, "a plan implementing one from the level above")
    above = session.get(PlanView, plan.parent_plan_id)
    locked = lock_reason(session, above, phase_seq, plan.issuer_unit_id) if above else None
    if locked:
        raise FieldError(
            "plan_id", plan.plan_id, f"a consolidated report open for correction: it was {locked}"
        )
    aggregate = session.get(Aggregate, (plan.campaign_id, phase_seq, plan.issuer_unit_id))
    counts = {name: getattr(aggregate, name) if aggregate else 0 for name in domain.COUNTERS}
    figures = dict(aggregate.figures) if aggregate else {}
    key = (plan.parent_plan_id, phase_seq, plan.issuer_unit_id)
    row = session.get(Consolidation, key)
    now = uow.clock.now()
    if row is None:
        row = Consolidation(
            plan_id=key[0], phase_seq=phase_seq, unit_id=key[2], counts=counts, figures=figures, at=now
        )
    else:
        row.version += 1
    row.counts, row.figures, row.automatic, row.at = counts, figures, automatic, now
    session.add(row)
    set_review(session, *key, "submitted", now)
    uow.publish(
        ReportConsolidated(
            plan_id=key[0],
            phase_seq=phase_seq,
            unit_id=key[2],
            expected=counts["expected"],
            received=counts["received"],
            on_time=counts["on_time"],
            late=counts["late"],
            values={code: float(value) for code, value in figures.items()},
        ),
        unit=key[2],
        correlation_id=plan.campaign_id,
    )
    return row


def consolidate_complete(uow: UnitOfWork, changed: dict[AggregateKey, dict[str, Any]]) -> None:
    """Consolidate automatically for every unit whose subtree has just become complete (or, complete
    already, changed): every expected report in, and nothing locked above."""
    session = uow.session
    for (campaign_id, phase_seq, unit_id), aggregate in changed.items():
        if not aggregate["expected"] or aggregate["received"] != aggregate["expected"]:
            continue
        plan = session.exec(
            select(PlanView).where(PlanView.campaign_id == campaign_id, PlanView.issuer_unit_id == unit_id)
        ).first()
        if plan is None or plan.parent_plan_id is None:
            continue
        sent = session.get(Consolidation, (plan.parent_plan_id, phase_seq, unit_id))
        current = {name: aggregate[name] for name in domain.COUNTERS}
        if sent and sent.counts == current and sent.figures == aggregate["figures"]:
            continue
        above = session.get(PlanView, plan.parent_plan_id)
        if above and lock_reason(session, above, phase_seq, unit_id):
            continue
        consolidate(uow, plan, phase_seq, automatic=True)


# ------------------------------------------------------------------ consumer


def build_handlers(ctx: ServiceContext) -> EventHandlers:
    handlers = EventHandlers()
    handlers.on_many(OrgUnitRegistered)(record_units)
    handlers.on(OrgUnitMoved)(record_move)
    handlers.on_many(ReportSubmitted)(record_reports)
    handlers.on_rejected(record_rejection)

    handlers.on_many(PlanIssued)(record_plans)

    @handlers.on(PlanRescheduled, PlanAmended)
    def on_replanned(uow: UnitOfWork, envelope: Envelope) -> None:
        replan(uow, envelope.data)  # type: ignore[arg-type]

    @handlers.on(PlanRevoked)
    def on_revoked(uow: UnitOfWork, envelope: Envelope) -> None:
        revoked = envelope.data
        assert isinstance(revoked, PlanRevoked)
        revoke(uow, revoked.plan_id)

    @handlers.after_batch
    def refresh(uow: UnitOfWork) -> None:
        keys = dirty_keys(uow)
        if keys:
            refresh_contributions(uow, keys, ctx.metrics)

    return handlers


# ------------------------------------------------------------------ periodic steps


def run_deadline_check(ctx: ServiceContext) -> int:
    """When a phase's report deadline has passed, mark the units that did not report as missing and
    send ReportOverdue for each — once, whatever the number of instances.

    The check waits a grace period after the due day ends, so reports sent by other producers just
    before midnight are in before it runs; they count as on time either way.
    """
    grace = timedelta(hours=ctx.settings.deadline_grace_hours)
    today = (ctx.clock.now() - grace).astimezone(LOCAL_TZ).date()
    with ctx.db.reading() as session:
        checked = set(session.exec(select(DeadlineCheck.plan_id, DeadlineCheck.phase_seq)).all())
        due: list[tuple[str, int, date]] = []
        in_force = select(PlanView.plan_id, PlanView.phases).where(col(PlanView.revoked).is_(False))
        for plan_id, phases in session.exec(in_force):
            for phase in phases:
                if not phase.get("report_due"):
                    continue
                day = date.fromisoformat(phase["report_due"])
                if (plan_id, phase["seq"]) not in checked and day < today:
                    due.append((plan_id, phase["seq"], day))
    overdue = 0
    lag = 0.0
    for plan_id, phase_seq, due_day in due:
        try:
            with ctx.db.transaction() as uow:
                overdue += _mark_missing(uow, plan_id, phase_seq, ctx.metrics)
        except sa.exc.IntegrityError:
            continue  # another instance checked this deadline first
        checked_from = local_midnight(due_day + timedelta(days=1)) + grace
        lag = max(lag, (ctx.clock.now() - checked_from).total_seconds())
    ctx.metrics.scheduler_lag.labels(ctx.name).set(lag)
    return overdue


def _mark_missing(uow: UnitOfWork, plan_id: str, phase_seq: int, metrics: Metrics) -> int:
    session = uow.session
    session.add(DeadlineCheck(plan_id=plan_id, phase_seq=phase_seq, checked_at=uow.clock.now()))
    session.flush()
    plan = session.get(PlanView, plan_id)
    assert plan is not None
    reported = set(
        session.exec(
            select(ReportVersion.unit_id).where(
                ReportVersion.plan_id == plan_id, ReportVersion.phase_seq == phase_seq
            )
        )
    )
    targets = session.exec(
        select(ReportTarget.unit_id).where(
            ReportTarget.plan_id == plan_id, ReportTarget.phase_seq == phase_seq
        )
    ).all()
    due = due_of(plan, phase_seq)
    assert due is not None
    keys: set[ReportKey] = set()
    missing = sorted(set(targets) - reported)
    for unit_id in missing:
        row = session.get(UnitContribution, (plan_id, phase_seq, unit_id)) or UnitContribution(
            plan_id=plan_id, phase_seq=phase_seq, unit_id=unit_id
        )
        row.overdue = True
        session.add(row)
        keys.add((plan_id, phase_seq, unit_id))
    uow.publish_many(
        [
            ReportOverdue(
                plan_id=plan_id,
                phase_seq=phase_seq,
                unit_id=unit_id,
                parent_unit_id=plan.issuer_unit_id,
                due_on=due,
            )
            for unit_id in missing
        ],
        units=[plan.issuer_unit_id] * len(missing),
        correlation_id=plan.campaign_id,
    )
    session.flush()
    refresh_contributions(uow, keys, metrics)
    return len(keys)


def measure_completeness(ctx: ServiceContext) -> None:
    """Completeness per level over the phases whose reporting window is open (started, deadline not
    passed), and the time to the nearest deadline: what ops watch as a deadline nears."""
    now, today = ctx.clock.now(), ctx.clock.today()
    windows: dict[tuple[str, int], date] = {}
    with ctx.db.reading() as session:
        in_force = select(PlanView.campaign_id, PlanView.phases).where(col(PlanView.revoked).is_(False))
        for campaign_id, phases in session.exec(in_force):
            for phase in phases:
                if not phase.get("report_due"):
                    continue
                start, due = date.fromisoformat(phase["start"]), date.fromisoformat(phase["report_due"])
                if start <= today <= due:
                    key = (campaign_id, phase["seq"])
                    windows[key] = min(windows.get(key, due), due)
        expected: dict[str, int] = defaultdict(int)
        received: dict[str, int] = defaultdict(int)
        for campaign_id, phase_seq in windows:
            rows = session.exec(
                select(ReportingUnit.level, sa.func.sum(Aggregate.expected), sa.func.sum(Aggregate.received))
                .join(ReportingUnit, col(ReportingUnit.unit_id) == col(Aggregate.unit_id))
                .where(Aggregate.campaign_id == campaign_id, Aggregate.phase_seq == phase_seq)
                .group_by(col(ReportingUnit.level))
            )
            for level, want, got in rows:
                expected[level] += int(want or 0)
                received[level] += int(got or 0)
    for level in Level:
        ctx.metrics.expected_reports.labels(level.value).set(expected[level.value])
        ctx.metrics.received_reports.labels(level.value).set(received[level.value])
        want = expected[level.value]
        ctx.metrics.completeness_ratio.labels(level.value).set(received[level.value] / want if want else 1.0)
    nearest = min(windows.values(), default=None)
    ctx.metrics.seconds_to_deadline.set(
        (local_midnight(nearest + timedelta(days=1)) - now).total_seconds() if nearest else float("inf")
    )


# ------------------------------------------------------------------ reading


def completeness(session: Session, plan: PlanView, phase_seq: int, today: date) -> dict[str, Any]:
    """The completeness table of a plan's phase: the issuer, the units below it, each with its figures
    and where its report stands with the issuer."""
    names: dict[str, ReportingUnit] = {}
    reviews = {
        r.unit_id: r
        for r in session.exec(
            select(Review).where(Review.plan_id == plan.plan_id, Review.phase_seq == phase_seq)
        )
    }

    def describe(unit_id: str) -> dict[str, Any]:
        unit = names.get(unit_id)
        review_row = reviews.get(unit_id)
        return {
            "unit_id": unit_id,
            "name": unit.name if unit else unit_id,
            "level": unit.level if unit else None,
            "review": review_row.state if review_row else None,
            "review_reason": review_row.reason if review_row else "",
        }

    def row_of(aggregate: Aggregate) -> dict[str, Any]:
        return {
            **describe(aggregate.unit_id),
            **{name: getattr(aggregate, name) for name in domain.COUNTERS},
            "figures": dict(sorted(aggregate.figures.items())),
        }

    top = session.get(Aggregate, (plan.campaign_id, phase_seq, plan.issuer_unit_id))
    children = session.exec(
        select(Aggregate)
        .where(Aggregate.campaign_id == plan.campaign_id, Aggregate.phase_seq == phase_seq)
        .where(Aggregate.parent_unit_id == plan.issuer_unit_id)
        .order_by(col(Aggregate.unit_id))
    ).all()
    due = due_of(plan, phase_seq)
    contributions = {
        c.unit_id: c
        for c in session.exec(
            select(UnitContribution).where(
                UnitContribution.plan_id == plan.plan_id, UnitContribution.phase_seq == phase_seq
            )
        )
    }
    targets = session.exec(
        select(ReportTarget.unit_id)
        .where(ReportTarget.plan_id == plan.plan_id, ReportTarget.phase_seq == phase_seq)
        .order_by(col(ReportTarget.unit_id))
    ).all()
    named = [plan.issuer_unit_id, *targets, *(child.unit_id for child in children)]
    names.update((unit.unit_id, unit) for unit in rows_in(session, ReportingUnit.unit_id, named))
    first_sent = dict(
        session.exec(
            select(ReportVersion.unit_id, sa.func.min(ReportVersion.submitted_at))
            .where(ReportVersion.plan_id == plan.plan_id, ReportVersion.phase_seq == phase_seq)
            .group_by(col(ReportVersion.unit_id))
        ).all()
    )
    units = [row_of(child) for child in children]
    for unit_id in targets:
        stored = contributions.get(unit_id)
        applied = domain.Contribution.from_dict(stored.applied if stored else None)
        sent = utc(first_sent[unit_id]) if applied.received and unit_id in first_sent else None
        units.append(
            {
                **describe(unit_id),
                "status": domain.status_of(applied),
                "submitted_at": sent.isoformat() if sent else None,
                "days_late": domain.days_late(sent, due) if sent and due else 0,
                "figures": applied.figures,
            }
        )
    indicators = indicators_of(plan)
    empty = {**describe(plan.issuer_unit_id), **dict.fromkeys(domain.COUNTERS, 0), "figures": {}}
    return {
        "plan_id": plan.plan_id,
        "number": plan.number,
        "title": plan.title,
        "campaign_id": plan.campaign_id,
        "phase_seq": phase_seq,
        "report_due": due.isoformat() if due else None,
        "deadline_passed": bool(due and due < today),
        "total": row_of(top) if top else empty,
        "units": units,
        "indicators": [indicator.model_dump(mode="json") for indicator in indicators],
        "rules": {
            indicator.code: {
                "count": "sum",
                "ratio": "sum of numerators / sum of denominators",
                "yes_no": "number of units answering yes",
                "text": "not aggregated",
            }[indicator.kind.value]
            for indicator in indicators
        },
    }
