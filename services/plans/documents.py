"""Plans and their documents: a document read into a draft (keeping the document), an issued plan written
as DOCX and as one edXML package per recipient with iOffice, and the exchange's status messages recorded."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlmodel import Session, col, select

from services.plans.handlers import unit_on
from services.plans.models import Delivery, Plan, PlanDraft, PlanPhase, PlanTarget, SourceDocument
from shared.documents import ReadDocument, document_id_of, plan_package, read_plan_document
from shared.documents.edxml import Organ, Package, Status
from shared.documents.paper import ParentPlan, PlanDocument
from shared.documents.plan_text import ParsedPlan, Warning_
from shared.errors import FieldError
from shared.events import Phase, PlanIssued, PlanRef, Target
from shared.ids import new_id
from shared.storage import UnitOfWork

# Recipients a plan does not mark (b/c, t/h): these words mean the units below, who execute it.
BELOW = re.compile(r"CĐCS|công đoàn cơ sở|các cấp công đoàn|trực thuộc|đơn vị|trên địa bàn", re.IGNORECASE)


def slug(text: str) -> str:
    """A milestone id from its name: Đại hội Công đoàn quận Long Biên lần thứ V → dai-hoi-cong-doan-…"""
    plain = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    plain = "".join(char for char in plain if not unicodedata.combining(char)).lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:64] or "milestone"


def find_parent(session: Session, parsed: ParsedPlan) -> tuple[str | None, list[Warning_]]:
    """The issued plan this one implements, found by its number (and date or issuer when several match)."""
    for reference in parsed.implements:
        if reference.document_type not in (None, "Kế hoạch"):
            continue
        candidates = session.exec(select(Plan).where(Plan.number == reference.number)).all()
        if reference.issued_on:
            candidates = [plan for plan in candidates if plan.issued_on == reference.issued_on] or candidates
        if len(candidates) > 1 and reference.issuer:
            candidates = [
                plan for plan in candidates if plan.issuer_unit_id == reference.issuer
            ] or candidates
        if len(candidates) == 1:
            return candidates[0].id, []
        return None, [
            Warning_(
                code="parent_unknown" if not candidates else "parent_ambiguous",
                message=f"the plan implements {reference.number}, which "
                + ("is not known here" if not candidates else f"matches {len(candidates)} plans")
                + ": choose the parent plan before issuing",
                text=reference.number,
            )
        ]
    return None, []


def draft_body(session: Session, parsed: ParsedPlan, unit_id: str) -> tuple[dict[str, Any], list[Warning_]]:
    """An IssuePlan body from what a document says, and what the officer must still decide."""
    notes: list[Warning_] = []
    body: dict[str, Any] = {"issuer_unit_id": unit_id, "movements": parsed.movements}
    for field in ("number", "title", "place"):
        if getattr(parsed, field):
            body[field] = getattr(parsed, field)
    if parsed.issued_on:
        body["issued_on"] = parsed.issued_on.isoformat()
    issuer = unit_on(session, unit_id, parsed.issued_on) if parsed.issued_on else None
    if issuer and parsed.issuer and parsed.issuer.lower() != issuer.name.lower():
        notes.append(
            Warning_(
                code="issuer_mismatch",
                message=f"the document is issued by {parsed.issuer}; the draft is kept for {issuer.name}",
                text=parsed.issuer,
            )
        )
    parent_id, found = find_parent(session, parsed)
    notes += found
    if parent_id:
        body["parent_plan_id"] = parent_id

    phases, milestones = [], {}
    for phase in parsed.phases:
        draft: dict[str, Any] = {"seq": phase.seq, "label": phase.label}
        if phase.start:
            draft["start"] = phase.start.isoformat()
        elif phase.start_event and phase.start_event != "phát động":
            notes.append(
                Warning_(
                    code="phase_start_at_event",
                    message=f"{phase.label} starts at {phase.start_event}: give its start date to issue it",
                    text=phase.start_event,
                )
            )
        if phase.end:
            draft["end"] = phase.end.isoformat()
        elif phase.end_event:
            milestone = slug(phase.end_event)
            milestones[milestone] = {"id": milestone, "name": phase.end_event}
            draft["end_milestone"] = milestone
        phases.append(draft)
    body["phases"] = phases
    body["milestones"] = list(milestones.values())
    body["deadlines"] = [
        deadline.model_dump(mode="json", exclude_none=True)
        for deadline in parsed.deadlines
        if (deadline.kind != "fixed" or deadline.due_on) and (deadline.kind != "after_phase" or deadline.days)
    ]
    indicators, goals = [], []
    for number, target in enumerate(parsed.targets, start=1):
        code = f"target_{number}"
        indicators.append(
            {"code": code, "name": target.text[:300], "kind": "ratio" if target.unit == "%" else "count"}
        )
        goals.append({**target.model_dump(), "text": target.text[:1000], "indicator": code})
    body["indicators"], body["goals"] = indicators, goals
    if parsed.award_quotas:
        quota = parsed.award_quotas[0]
        body["award_quota"] = {"collectives": quota.collectives, "individuals": quota.individuals}
    recipients, guessed = [], []
    for recipient in parsed.recipients:
        purpose = recipient.purpose
        if purpose in (None, "inform"):
            purpose = "execute" if BELOW.search(recipient.name) else "report"
            guessed.append(f"{recipient.name} → {'t/h' if purpose == 'execute' else 'b/c'}")
        recipients.append({"name": recipient.name[:300], "purpose": purpose})
    if guessed:
        notes.append(
            Warning_(
                code="recipient_purpose_guessed",
                message="Nơi nhận does not say why these receive the plan; check: " + "; ".join(guessed),
                text="; ".join(guessed),
            )
        )
    body["recipients"] = recipients
    if parsed.signer and parsed.signer.name and parsed.signer.position:
        body["signer"] = {
            "authority": parsed.signer.authority,
            "position": parsed.signer.position,
            "name": parsed.signer.name,
        }
    return body, notes


def import_document(
    uow: UnitOfWork, data: bytes, filename: str, unit_id: str | None, max_bytes: int
) -> tuple[PlanDraft, SourceDocument, ReadDocument, list[Warning_]]:
    """Read a document into a draft of the unit's plan, keeping the document as it arrived. An edXML package
    belongs to the unit that sent it when that unit is registered here."""
    read = read_plan_document(data, filename, max_bytes)
    session = uow.session
    if read.package and unit_on(session, read.package.sender.organ_id, read.package.promulgation_date):
        unit_id = read.package.sender.organ_id
    if not unit_id:
        raise FieldError(
            "unit_id", unit_id, "the unit whose draft this is (the package's sender is not registered)"
        )
    if unit_on(session, unit_id, read.plan.issued_on or uow.clock.now().date()) is None:
        raise FieldError("unit_id", unit_id, "a registered unit")
    body, notes = draft_body(session, read.plan, unit_id)
    now = uow.clock.now()
    draft = PlanDraft(id=new_id(), unit_id=unit_id, body=body, source=filename[:300], updated_at=now)
    document = SourceDocument(
        id=new_id(),
        draft_id=draft.id,
        filename=filename[:300],
        kind=read.kind,
        media_type=read.media_type,
        content=data,
        parsed=read.plan.model_dump(mode="json"),
        sender=read.package.sender.organ_id if read.package else None,
        received_at=now,
    )
    session.add(draft)
    session.add(document)
    return draft, document, read, notes


# ------------------------------------------------------------------ documents of an issued plan


def issued_event(session: Session, plan: Plan) -> PlanIssued:
    """The plan as its PlanIssued event said (phases as they stand now)."""
    phases = session.exec(select(PlanPhase).where(PlanPhase.plan_id == plan.id).order_by(col(PlanPhase.seq)))
    targets = session.exec(
        select(PlanTarget).where(PlanTarget.plan_id == plan.id).order_by(col(PlanTarget.unit_id))
    )
    return PlanIssued.model_validate(
        {
            **plan.details,
            "plan_id": plan.id,
            "number": plan.number,
            "issuer_unit_id": plan.issuer_unit_id,
            "title": plan.title,
            "issued_on": plan.issued_on,
            "parent_plan_id": plan.parent_plan_id,
            "lineage": [PlanRef.model_validate(ref) for ref in plan.lineage],
            "phases": [Phase.model_validate(p.model_dump(include=set(Phase.model_fields))) for p in phases],
            "targets": [Target(unit_id=t.unit_id, name=t.name, level=t.level) for t in targets],  # type: ignore[arg-type]
            "indicators": plan.indicators,
            "award_quota": plan.award_quota,
            "deadlines": plan.deadlines,
            "milestones": plan.milestones,
            "auto_derive": plan.auto_derive,
            "report_after_phase_end": plan.report_after_phase_end,
        }
    )


def unit_name(session: Session, unit_id: str | None, plan: Plan) -> str | None:
    unit = unit_on(session, unit_id, plan.issued_on) if unit_id else None
    return unit.name if unit else None


def plan_document(session: Session, plan_id: str) -> tuple[Plan, PlanDocument]:
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise FieldError("plan_id", plan_id, "an issued plan")
    issuer = unit_on(session, plan.issuer_unit_id, plan.issued_on)
    parent = session.get(Plan, plan.parent_plan_id) if plan.parent_plan_id else None
    return plan, PlanDocument(
        plan=issued_event(session, plan),
        issuer_name=issuer.name if issuer else plan.issuer_unit_id,
        superior_name=unit_name(session, issuer.parent_id if issuer else None, plan),
        parent=ParentPlan(
            number=parent.number,
            issued_on=parent.issued_on,
            issuer_name=unit_name(session, parent.issuer_unit_id, parent) or parent.issuer_unit_id,
        )
        if parent
        else None,
    )


def package_for(session: Session, plan_id: str, unit_id: str) -> Package:
    """The edXML package of a plan for one recipient: the header's fields and the plan as DOCX."""
    plan, document = plan_document(session, plan_id)
    receiver = unit_on(session, unit_id, plan.issued_on)
    recipients = {t.unit_id for t in document.plan.targets} | {
        r.unit_id for r in document.plan.recipients if r.unit_id
    }
    if receiver is None or unit_id not in recipients:
        raise FieldError("unit_id", unit_id, f"a unit plan {plan.number} is sent to")
    issuer = unit_on(session, plan.issuer_unit_id, plan.issued_on)
    parent = session.get(Plan, plan.parent_plan_id) if plan.parent_plan_id else None
    return plan_package(
        document,
        Organ(
            organ_id=plan.issuer_unit_id,
            organ_name=document.issuer_name,
            email=(issuer.email if issuer else None) or "",
        ),
        Organ(organ_id=receiver.unit_id, organ_name=receiver.name, email=receiver.email or ""),
        document_id_of(parent.issuer_unit_id, parent.issued_on, parent.number) if parent else None,
    )


def record_status(uow: UnitOfWork, status: Status) -> Delivery:
    """A status message from the exchange moves the delivery of that document to that receiver."""
    sender = status.sender.organ_id
    delivery = uow.session.exec(
        select(Delivery).where(Delivery.document_id == status.document_id, Delivery.unit_id == sender)
    ).first()
    if delivery is None:
        raise FieldError(
            "ResponseFor.DocumentId",
            status.document_id,
            f"a plan sent to {sender or '(no From/OrganId)'} through iOffice",
        )
    delivery.status, delivery.status_code = status.status, status.code
    delivery.description, delivery.updated_at = status.description, uow.clock.now()
    uow.session.add(delivery)
    return delivery
