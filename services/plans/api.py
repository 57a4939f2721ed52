"""REST API of the plans service, under /plans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from services.plans import documents, domain, handlers
from services.plans.models import (
    Amendment,
    Delivery,
    Officer,
    OrgUnitVersion,
    Plan,
    PlanDraft,
    PlanPhase,
    PlanTarget,
    Registration,
    SourceDocument,
)
from shared.access import Caller, CallerDep, Tree, act_for, current_caller, issuer_only, only_services
from shared.documents import read_plan_document
from shared.documents.edxml import read_status, write_package
from shared.documents.errors import DocumentError
from shared.documents.paper import DOCX_MEDIA_TYPE, docx_name, render_plan_docx
from shared.documents.plan_text import ParsedPlan
from shared.errors import FieldError, InvalidInput
from shared.events import DeadlineRule, OrgUnit, Phase, PlanAmended
from shared.ids import new_id
from shared.security import check_password, hash_password, issue_token, secret_key
from shared.service import ServiceContext

# A document as it arrives: plain text, DOCX, PDF or an edXML package, sent as the request's body.
DocumentBody = Annotated[bytes, Body(media_type="application/octet-stream")]


class NewOfficer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    password: str = Field(min_length=8, max_length=200)
    full_name: str = Field(default="", max_length=200)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str


class UnitsImported(BaseModel):
    registered: int


class MoveUnit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_parent_id: str
    effective_on: date


class Acknowledge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: str


class TargetState(BaseModel):
    unit_id: str
    name: str
    level: str
    deployed: bool


class Deployment(BaseModel):
    """Who has deployed (acknowledged) a plan: each unit it was sent to, and, over the whole cascade
    below it, how many grassroots unions have deployed it or a plan implementing it."""

    plan_id: str
    expected: int
    deployed: int
    targets: list[TargetState]
    grassroots_expected: int
    grassroots_deployed: int
    grassroots_rate: float | None


class ScheduleMilestone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: date


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class DeadlineDate(BaseModel):
    rule: int
    kind: str
    purpose: str
    due_on: date
    phase_seq: int | None
    period: str | None


def build_api(ctx: ServiceContext) -> APIRouter:
    # Signing in is the one call without a token; every other one needs one.
    public = APIRouter(tags=["plans"])
    router = APIRouter(tags=["plans"], dependencies=[Depends(current_caller)])
    db = ctx.db

    def parent_of(session: Any, unit_id: str) -> str | None:
        unit = handlers.unit_on(session, unit_id, ctx.clock.today())
        return unit.parent_id if unit else None

    tree = Tree(parent_of)

    def plan_for(session: Any, caller: Caller, plan_id: str) -> Plan:
        """A plan the caller may read; 404 when there is none."""
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise HTTPException(404, f"no plan {plan_id}")
        targets = session.exec(select(PlanTarget.unit_id).where(PlanTarget.plan_id == plan_id)).all()
        tree.read_plan(session, caller, plan_id, plan.issuer_unit_id, targets)
        return plan

    def issued_by_caller(caller: Caller, plan_id: str) -> None:
        with db.reading() as session:
            issuer_only(caller, plan_id, plan_for(session, caller, plan_id).issuer_unit_id)

    @router.post("/org/units", response_model=UnitsImported, status_code=status.HTTP_201_CREATED)
    def import_units(units: list[OrgUnit], caller: CallerDep) -> UnitsImported:
        """Register units of the federation (the body of `thidua org import`)."""
        only_services(caller, "importing the federation's units")
        with db.transaction() as uow:
            return UnitsImported(registered=handlers.register_units(uow, units))

    @router.get("/org/units")
    def list_units(
        caller: CallerDep, on: date | None = None, parent_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Units in force on a day (today by default), optionally only those below one parent; an officer
        gets those of their subtree."""
        day = on or ctx.clock.today()
        with db.reading() as session:
            tree.read_filters(session, caller, parent_id=parent_id)
            query = select(OrgUnitVersion).where(col(OrgUnitVersion.valid_from) <= day)
            query = query.where(
                (col(OrgUnitVersion.valid_to).is_(None)) | (col(OrgUnitVersion.valid_to) > day)
            )
            if parent_id:
                query = query.where(OrgUnitVersion.parent_id == parent_id)
            rows = session.exec(query.order_by(col(OrgUnitVersion.unit_id))).all()
            if parent_id is None:
                parents = {row.unit_id: row.parent_id for row in rows}
                reaches = Tree(lambda _session, unit_id: parents.get(unit_id)).reach(session, caller)
                rows = [row for row in rows if reaches(row.unit_id)]
            return [row.model_dump(exclude={"row_id"}) for row in rows]

    @router.get("/org/units/{unit_id}/subtree")
    def subtree(unit_id: str, caller: CallerDep, on: date | None = None) -> list[str]:
        """The unit and every unit below it on a day (today by default): what its officers may see."""
        with db.reading() as session:
            tree.read(session, caller, "unit_id", unit_id)
            return handlers.subtree(session, unit_id, on or ctx.clock.today())

    @router.post("/org/units/{unit_id}/officers", status_code=status.HTTP_201_CREATED)
    def add_officer(unit_id: str, officer: NewOfficer, caller: CallerDep) -> dict[str, str]:
        """An officer account for a unit, made by a service or an officer of a unit above it; the password
        is kept only as a scrypt hash."""
        with db.transaction() as uow:
            tree.below(uow.session, caller, "unit_id", unit_id)
            if handlers.unit_on(uow.session, unit_id, ctx.clock.today()) is None:
                raise FieldError("unit_id", unit_id, "a registered unit")
            if uow.session.get(Officer, officer.username) is not None:
                raise FieldError("username", officer.username, "a user name not yet taken")
            uow.session.add(
                Officer(
                    username=officer.username,
                    unit_id=unit_id,
                    full_name=officer.full_name,
                    password_hash=hash_password(officer.password),
                    created_at=uow.clock.now(),
                )
            )
        return {"username": officer.username, "unit_id": unit_id}

    @public.post("/auth/token")
    def sign_in(body: SignIn) -> dict[str, Any]:
        """A bearer token for an officer: their unit, and how long it holds."""
        with db.reading() as session:
            officer = session.get(Officer, body.username)
            if officer is None or not check_password(body.password, officer.password_hash):
                raise HTTPException(401, "wrong user name or password")
            unit = handlers.unit_on(session, officer.unit_id, ctx.clock.today())
        lifetime = int(ctx.settings.token_hours * 3600)
        claims = {"sub": officer.username, "unit": officer.unit_id, "role": "officer"}
        return {
            "token": issue_token(secret_key(ctx.settings), claims, lifetime),
            "username": officer.username,
            "unit_id": officer.unit_id,
            "unit_name": unit.name if unit else officer.unit_id,
            "expires_in": lifetime,
        }

    @router.get("/auth/me")
    def who_am_i(caller: CallerDep) -> dict[str, Any]:
        """The officer a bearer token stands for, and the units they may see (none listed for a service,
        which sees them all)."""
        if caller.unit_id is None:
            return {"username": caller.name, "unit_id": None, "unit_name": None, "level": None, "subtree": []}
        with db.reading() as session:
            unit = handlers.unit_on(session, caller.unit_id, ctx.clock.today())
            return {
                "username": caller.name,
                "unit_id": caller.unit_id,
                "unit_name": unit.name if unit else caller.unit_id,
                "level": unit.level if unit else None,
                "subtree": handlers.subtree(session, caller.unit_id, ctx.clock.today()),
            }

    @router.post("/org/units/{unit_id}/move", status_code=status.HTTP_204_NO_CONTENT)
    def move_unit(unit_id: str, move: MoveUnit, caller: CallerDep) -> None:
        """Move a unit under another parent from a day on: a service, or an officer of a unit above both."""
        with db.transaction() as uow:
            tree.below(uow.session, caller, "unit_id", unit_id)
            tree.read(uow.session, caller, "new_parent_id", move.new_parent_id)
            handlers.move_unit(uow, unit_id, move.new_parent_id, move.effective_on)

    @router.post(
        "/plans",
        response_model=handlers.IssuedPlan,
        status_code=status.HTTP_201_CREATED,
        responses={422: {"description": "each field that is wrong, with its value and what was expected"}},
    )
    def issue_plan(command: handlers.IssuePlan, caller: CallerDep) -> handlers.IssuedPlan:
        """Issue a plan to the units below the issuer. A plan that is wrong is refused, naming each
        field; what is only doubtful comes back as warnings."""
        act_for(caller, "issuer_unit_id", command.issuer_unit_id)
        with db.transaction() as uow:
            return handlers.issue_plan(uow, command, consolidation_days=ctx.settings.min_consolidation_days)

    @router.post("/drafts", status_code=status.HTTP_201_CREATED)
    def save_draft(body: handlers.SaveDraft, caller: CallerDep) -> dict[str, Any]:
        """Keep a plan being written (dự thảo), complete or not, for its officer to check and issue."""
        act_for(caller, "unit_id", body.unit_id)
        with db.transaction() as uow:
            draft = PlanDraft(
                id=new_id(),
                unit_id=body.unit_id,
                body=body.body,
                source=body.source,
                updated_at=uow.clock.now(),
            )
            uow.session.add(draft)
            return draft.model_dump()

    @router.get("/drafts")
    def list_drafts(caller: CallerDep, unit_id: str | None = None) -> list[dict[str, Any]]:
        """A unit's drafts; an officer's own unit's by default."""
        if caller.unit_id is not None:
            unit_id = unit_id or caller.unit_id
            act_for(caller, "unit_id", unit_id)
        with db.reading() as session:
            query = select(PlanDraft).order_by(col(PlanDraft.updated_at))
            if unit_id:
                query = query.where(PlanDraft.unit_id == unit_id)
            return [row.model_dump() for row in session.exec(query)]

    def draft_of(session: Any, caller: Caller, draft_id: str) -> PlanDraft:
        """A draft of the caller's unit: drafts are their unit's own until issued."""
        draft = session.get(PlanDraft, draft_id)
        if draft is None:
            raise HTTPException(404, f"no draft {draft_id}")
        act_for(caller, "unit_id", draft.unit_id)
        return draft

    @router.get("/drafts/{draft_id}")
    def get_draft(draft_id: str, caller: CallerDep) -> dict[str, Any]:
        with db.reading() as session:
            return draft_of(session, caller, draft_id).model_dump()

    @router.put("/drafts/{draft_id}")
    def edit_draft(draft_id: str, body: dict[str, Any], caller: CallerDep) -> dict[str, Any]:
        """Replace the draft's body (a draft already issued stays as it was issued)."""
        with db.transaction() as uow:
            draft = draft_of(uow.session, caller, draft_id)
            if draft.status != "draft":
                raise FieldError(
                    "draft_id", draft_id, f"a draft not yet issued (this one is plan {draft.plan_id})"
                )
            draft.body, draft.updated_at = body, uow.clock.now()
            uow.session.add(draft)
            return draft.model_dump()

    @router.post("/drafts/{draft_id}/check")
    def check_draft(draft_id: str, caller: CallerDep) -> dict[str, Any]:
        """What issuing the draft would say, without issuing it: each problem, or the warnings."""
        with db.reading() as session:
            draft = draft_of(session, caller, draft_id)
        errors, warnings = handlers.check_draft(db, draft, ctx.settings.min_consolidation_days)
        return {"ready": not errors, "errors": [e.as_dict() for e in errors], "warnings": warnings}

    @router.post(
        "/drafts/{draft_id}/issue", response_model=handlers.IssuedPlan, status_code=status.HTTP_201_CREATED
    )
    def issue_draft(draft_id: str, caller: CallerDep) -> handlers.IssuedPlan:
        """Issue the draft as it stands; a draft that is wrong is refused, naming each field."""
        with db.transaction() as uow:
            draft = draft_of(uow.session, caller, draft_id)
            if draft.status != "draft":
                raise FieldError(
                    "draft_id", draft_id, f"a draft not yet issued (this one is plan {draft.plan_id})"
                )
            try:
                command = handlers.IssuePlan.model_validate(draft.body)
            except ValidationError as error:
                raise InvalidInput(handlers.draft_problems(error)) from error
            act_for(caller, "issuer_unit_id", command.issuer_unit_id)
            issued = handlers.issue_plan(uow, command, consolidation_days=ctx.settings.min_consolidation_days)
            draft.status, draft.plan_id, draft.updated_at = "issued", issued.plan_id, uow.clock.now()
            uow.session.add(draft)
            return issued

    @router.get("/plans")
    def list_plans(
        caller: CallerDep,
        issuer_unit_id: str | None = None,
        campaign_id: str | None = None,
        target_unit_id: str | None = None,
        parent_plan_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Plans, oldest first: by issuer, campaign, a unit they were sent to, or the plan they implement.
        An officer gets those issued in their subtree or sent to their unit."""
        with db.reading() as session:
            tree.read_filters(session, caller, issuer_unit_id=issuer_unit_id, target_unit_id=target_unit_id)
            query = select(Plan).order_by(col(Plan.created_at))
            if issuer_unit_id:
                query = query.where(Plan.issuer_unit_id == issuer_unit_id)
            if campaign_id:
                query = query.where(Plan.campaign_id == campaign_id)
            if parent_plan_id:
                query = query.where(Plan.parent_plan_id == parent_plan_id)
            if target_unit_id:
                sent_to = select(PlanTarget.plan_id).where(PlanTarget.unit_id == target_unit_id)
                query = query.where(col(Plan.id).in_(sent_to))
            plans = session.exec(query).all()
            if caller.unit_id is not None:
                sent_to_caller = set(
                    session.exec(select(PlanTarget.plan_id).where(PlanTarget.unit_id == caller.unit_id))
                )
                reaches = tree.reach(session, caller)
                plans = [p for p in plans if p.id in sent_to_caller or reaches(p.issuer_unit_id)]
            return [plan.model_dump() for plan in plans]

    @router.get("/plans/{plan_id}")
    def get_plan(plan_id: str, caller: CallerDep) -> dict[str, Any]:
        with db.reading() as session:
            plan = plan_for(session, caller, plan_id)
            phases = session.exec(
                select(PlanPhase).where(PlanPhase.plan_id == plan_id).order_by(col(PlanPhase.seq))
            )
            return {**plan.model_dump(), "phases": [phase.model_dump() for phase in phases]}

    @router.post("/plans/{plan_id}/acknowledgements", status_code=status.HTTP_202_ACCEPTED)
    def acknowledge(plan_id: str, body: Acknowledge, caller: CallerDep) -> dict[str, bool]:
        """A unit acknowledges it received and deploys the plan (PlanAcknowledged)."""
        act_for(caller, "unit_id", body.unit_id)
        with db.transaction() as uow:
            return {"recorded": handlers.acknowledge(uow, plan_id, body.unit_id)}

    @router.get("/plans/{plan_id}/deployment", response_model=Deployment)
    def deployment(plan_id: str, caller: CallerDep) -> Deployment:
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            targets = session.exec(
                select(PlanTarget).where(PlanTarget.plan_id == plan_id).order_by(col(PlanTarget.unit_id))
            ).all()
            if not targets:
                raise HTTPException(404, f"no plan {plan_id}")
            states = [
                TargetState(
                    unit_id=t.unit_id, name=t.name, level=t.level, deployed=t.acknowledged_at is not None
                )
                for t in targets
            ]
            below, done = handlers.subtree_deployment(session, plan_id)
            return Deployment(
                plan_id=plan_id,
                expected=len(states),
                deployed=sum(s.deployed for s in states),
                targets=states,
                grassroots_expected=below,
                grassroots_deployed=done,
                grassroots_rate=done / below if below else None,
            )

    @router.get("/plans/{plan_id}/deadlines", response_model=list[DeadlineDate])
    def deadlines(plan_id: str, caller: CallerDep) -> list[DeadlineDate]:
        """Every due date the plan's deadline rules give, per phase or period, in date order."""
        with db.reading() as session:
            plan = plan_for(session, caller, plan_id)
            rows = session.exec(
                select(PlanPhase).where(PlanPhase.plan_id == plan_id).order_by(col(PlanPhase.seq))
            )
            phases = [Phase.model_validate(row.model_dump(include=set(Phase.model_fields))) for row in rows]
            rules = [DeadlineRule.model_validate(rule) for rule in plan.deadlines]
            return [DeadlineDate(**vars(d)) for d in domain.expand_deadlines(rules, phases)]

    @router.post("/plans/{plan_id}/milestones/{milestone_id}", status_code=status.HTTP_204_NO_CONTENT)
    def schedule_milestone(
        plan_id: str, milestone_id: str, body: ScheduleMilestone, caller: CallerDep
    ) -> None:
        """Date (or move) a milestone: the phases ending at it are re-planned, here and in every plan
        implementing this one (PlanRescheduled)."""
        issued_by_caller(caller, plan_id)
        with db.transaction() as uow:
            handlers.schedule_milestone(uow, plan_id, milestone_id, body.on)

    @router.post(
        "/plans/{plan_id}/amendments", response_model=PlanAmended, status_code=status.HTTP_201_CREATED
    )
    def amend(plan_id: str, body: handlers.Amend, caller: CallerDep) -> PlanAmended:
        """Issue a new version of the plan (PlanAmended), checked like the first, with the reason."""
        issued_by_caller(caller, plan_id)
        with db.transaction() as uow:
            return handlers.amend_plan(
                uow, plan_id, body, consolidation_days=ctx.settings.min_consolidation_days
            )

    @router.get("/plans/{plan_id}/amendments")
    def amendments(plan_id: str, caller: CallerDep) -> list[dict[str, Any]]:
        """Every amendment of the plan: version, what changed, why, when."""
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            query = select(Amendment).where(Amendment.plan_id == plan_id).order_by(col(Amendment.version))
            return [row.model_dump() for row in session.exec(query)]

    @router.post("/plans/{plan_id}/revocation", status_code=status.HTTP_204_NO_CONTENT)
    def revoke(plan_id: str, body: Revoke, caller: CallerDep) -> None:
        """Revoke the plan and, through the cascade, every plan implementing it (PlanRevoked)."""
        issued_by_caller(caller, plan_id)
        with db.transaction() as uow:
            handlers.live_plan(uow.session, plan_id)
            handlers.revoke_plan(uow, plan_id, body.reason)

    @router.post("/plans/{plan_id}/closure", status_code=status.HTTP_204_NO_CONTENT)
    def close(plan_id: str, caller: CallerDep) -> None:
        """Close the plan: its campaign is over (PlanClosed)."""
        issued_by_caller(caller, plan_id)
        with db.transaction() as uow:
            handlers.close_plan(uow, plan_id)

    @router.get("/plans/{plan_id}/derived-draft", response_model=handlers.IssuePlan)
    def derived_draft(plan_id: str, unit_id: str, caller: CallerDep) -> handlers.IssuePlan:
        """A unit's draft of its own plan implementing this one, for its officer to edit and issue."""
        act_for(caller, "unit_id", unit_id)
        with db.reading() as session:
            return handlers.derived_draft(session, plan_id, unit_id, ctx.settings)

    @router.post("/plans/{plan_id}/registrations", status_code=status.HTTP_201_CREATED)
    def register(plan_id: str, body: handlers.Register, caller: CallerDep) -> dict[str, Any]:
        """Register a commitment, a pledge or a work against a plan (late ones are kept, marked late)."""
        act_for(caller, "unit_id", body.unit_id)
        with db.transaction() as uow:
            return handlers.register(uow, plan_id, body).model_dump()

    @router.get("/plans/{plan_id}/registrations")
    def registrations(plan_id: str, caller: CallerDep) -> list[dict[str, Any]]:
        """The registrations made against a plan, each marked late or not."""
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            query = select(Registration).where(Registration.plan_id == plan_id)
            return [row.model_dump() for row in session.exec(query.order_by(col(Registration.registered_at)))]

    # ------------------------------------------------------------------ documents in and out

    def imported(data: bytes, filename: str, unit_id: str | None) -> dict[str, Any]:
        with reading_documents(), db.transaction() as uow:
            draft, document, read, notes = documents.import_document(
                uow, data, filename, unit_id, ctx.settings.document_max_bytes
            )
            answer = {
                "draft": draft.model_dump(mode="json"),
                "document_id": document.id,
                "kind": read.kind,
                "parsed": read.plan.model_dump(mode="json"),
                "notes": [note.model_dump() for note in notes],
            }
        problems, warnings = handlers.check_draft(db, draft, ctx.settings.min_consolidation_days)
        return {**answer, "problems": [p.as_dict() for p in problems], "issue_warnings": warnings}

    @router.post("/documents/parse", response_model=ParsedPlan)
    def parse_document(data: DocumentBody, filename: str = "") -> ParsedPlan:
        """What a document (text, DOCX, PDF or edXML) says as a plan, and what is doubtful; keeps nothing."""
        with reading_documents():
            return read_plan_document(data, filename, ctx.settings.document_max_bytes).plan

    @router.post("/documents", status_code=status.HTTP_201_CREATED)
    def import_document(
        data: DocumentBody, caller: CallerDep, unit_id: str | None = None, filename: str = ""
    ) -> dict[str, Any]:
        """Import a plan document as a draft of the unit's plan (an officer's own unit), keeping the
        document. The answer shows what was read, the warnings, and what would stop the draft from being
        issued as it stands."""
        if caller.unit_id is not None:
            unit_id = unit_id or caller.unit_id
            act_for(caller, "unit_id", unit_id)
        return imported(data, filename, unit_id)

    def document_for(session: Any, caller: Caller, document_id: str) -> SourceDocument:
        """A document of a draft of the caller's unit."""
        document = session.get(SourceDocument, document_id)
        if document is None:
            raise HTTPException(404, f"no document {document_id}")
        draft_of(session, caller, document.draft_id)
        return document

    @router.get("/documents/{document_id}")
    def get_document(document_id: str, caller: CallerDep) -> dict[str, Any]:
        with db.reading() as session:
            return document_for(session, caller, document_id).model_dump(mode="json", exclude={"content"})

    @router.get("/documents/{document_id}/content")
    def document_content(document_id: str, caller: CallerDep) -> Response:
        """The document exactly as it arrived."""
        with db.reading() as session:
            document = document_for(session, caller, document_id)
            return Response(document.content, media_type=document.media_type)

    @router.post("/edxml", status_code=status.HTTP_201_CREATED)
    def receive_edxml(data: DocumentBody, caller: CallerDep, unit_id: str | None = None) -> dict[str, Any]:
        """An edXML package from the iOffice exchange: its header and attached plan become a draft of the
        sending unit's plan (or of `unit_id` when the sender is not registered here). The exchange calls
        it with a service token."""
        only_services(caller, "receiving from the iOffice exchange")
        return imported(data, "package.xml", unit_id)

    @router.post("/edxml/status")
    def edxml_status(data: DocumentBody, caller: CallerDep) -> dict[str, Any]:
        """An edXML status message (01 received, 02 refused, 03 accepted, 05 processing, 06 done) moves the
        delivery of that plan to that recipient."""
        only_services(caller, "receiving from the iOffice exchange")
        with reading_documents(), db.transaction() as uow:
            status = read_status(data, ctx.settings.document_max_bytes)
            return documents.record_status(uow, status).model_dump(mode="json")

    @router.get("/plans/{plan_id}/docx")
    def plan_docx(plan_id: str, caller: CallerDep) -> Response:
        """The plan as a DOCX in the Decree 30/2020 layout."""
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            plan, document = documents.plan_document(session, plan_id)
            filename = docx_name(plan.number)
        return Response(
            render_plan_docx(document),
            media_type=DOCX_MEDIA_TYPE,
            headers={"Content-Disposition": attachment_header(filename)},
        )

    @router.get("/plans/{plan_id}/edxml")
    def plan_deliveries(plan_id: str, caller: CallerDep) -> list[dict[str, Any]]:
        """The plan's edXML deliveries, one per recipient with iOffice, with the last status reported."""
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            rows = session.exec(
                select(Delivery).where(Delivery.plan_id == plan_id).order_by(col(Delivery.unit_id))
            )
            return [
                {**row.model_dump(mode="json"), "package": f"/plans/plans/{plan_id}/edxml/{row.unit_id}"}
                for row in rows
            ]

    @router.get("/plans/{plan_id}/edxml/{unit_id}")
    def plan_package(plan_id: str, unit_id: str, caller: CallerDep) -> Response:
        """The plan's edXML package for one recipient, with the plan attached as DOCX."""
        with db.reading() as session:
            plan_for(session, caller, plan_id)
            package = documents.package_for(session, plan_id, unit_id)
        return Response(write_package(package), media_type="application/xml")

    public.include_router(router)
    return public


def attachment_header(filename: str) -> str:
    """Content-Disposition for a Vietnamese file name: an ASCII fallback, and the name itself (RFC 6266)."""
    stem, dot, extension = filename.rpartition(".")
    plain = f"{documents.slug(stem)}{dot}{extension}"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename)}"


@contextmanager
def reading_documents() -> Iterator[None]:
    """A document thidua will not read becomes a field error that says why."""
    try:
        yield
    except DocumentError as error:
        raise FieldError(error.field, "(document)", str(error)) from error
