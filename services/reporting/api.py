"""REST API of the reporting service, under /reporting."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from services.reporting import domain, exports
from services.reporting.handlers import (
    completeness,
    consolidate,
    due_of,
    keep_version,
    parent_from,
    phase_of,
    report_problems,
    review,
)
from services.reporting.models import (
    Consolidation,
    PlanView,
    Rejection,
    ReportVersion,
    UnitParent,
)
from shared.access import Caller, CallerDep, Tree, act_for, current_caller, issuer_only
from shared.api import PhaseSeq
from shared.errors import FieldError, InvalidInput
from shared.events import MAX_PHASES, ReportSubmitted, ReportValue
from shared.ids import new_id
from shared.service import ServiceContext

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class SubmitReport(BaseModel):
    """A unit's report for one phase of a plan (báo cáo kết quả); sending it again corrects it."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str
    phase_seq: int = Field(ge=1, le=MAX_PHASES)
    unit_id: str
    values: dict[str, ReportValue]
    narrative: str = Field(default="", max_length=20_000)


class ReportAccepted(BaseModel):
    report_id: str
    on_time: bool


class ReviewReport(BaseModel):
    """The level above approves a report, returns it for correction (saying why), or accepts a
    consolidated report into its own."""

    model_config = ConfigDict(extra="forbid")

    unit_id: str
    action: Literal["approve", "return", "accept"]
    by_unit_id: str
    reason: str = Field(default="", max_length=2000)


def _plan(session: Session, plan_id: str, phase_seq: int) -> PlanView:
    plan = session.get(PlanView, plan_id)
    if plan is None:
        raise HTTPException(404, f"no plan {plan_id} known to reporting")
    if phase_of(plan, phase_seq) is None:
        raise HTTPException(404, f"plan {plan_id} has no phase {phase_seq}")
    return plan


def build_api(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["reporting"], dependencies=[Depends(current_caller)])
    db = ctx.db

    def parent_of(session: Session, unit_id: str) -> str | None:
        history = session.exec(select(UnitParent).where(UnitParent.unit_id == unit_id)).all()
        return parent_from(list(history), ctx.clock.today())

    tree = Tree(parent_of)

    def issued_plan(session: Session, caller: Caller, plan_id: str, phase_seq: int) -> PlanView:
        """A plan whose reports the caller may read: issued in their subtree."""
        plan = _plan(session, plan_id, phase_seq)
        tree.read_issued(session, caller, plan_id, plan.issuer_unit_id)
        return plan

    @router.post(
        "/reports",
        response_model=ReportAccepted,
        status_code=status.HTTP_202_ACCEPTED,
        responses={422: {"description": "each field that is wrong, with its value and what was expected"}},
    )
    def submit_report(report: SubmitReport, caller: CallerDep) -> ReportAccepted:
        """Submit (or correct) a report. A rejected report keeps nothing; an approved one is locked
        until the level above returns it."""
        act_for(caller, "unit_id", report.unit_id)
        with db.transaction() as uow:
            plan = uow.session.get(PlanView, report.plan_id)
            if plan is None:
                raise FieldError("plan_id", report.plan_id, "a plan issued to this unit")
            submitted_at = uow.clock.now()
            event = ReportSubmitted(
                report_id=new_id(),
                plan_id=report.plan_id,
                phase_seq=report.phase_seq,
                unit_id=report.unit_id,
                values=report.values,
                narrative=report.narrative,
                submitted_at=submitted_at,
            )
            problems = report_problems(uow.session, plan, event)
            if problems:
                raise InvalidInput(problems)
            keep_version(uow, event)
            uow.publish(event, unit=report.unit_id, correlation_id=plan.campaign_id)
            due = due_of(plan, report.phase_seq)
            assert due is not None
            return ReportAccepted(report_id=event.report_id, on_time=domain.is_on_time(submitted_at, due))

    @router.get("/reports")
    def list_reports(plan_id: str, caller: CallerDep, unit_id: str | None = None) -> list[dict[str, Any]]:
        """Every version of the reports on a plan (the latest of each unit counts): for the plan's issuer
        and the levels above, or one unit's own."""
        with db.reading() as session:
            plan = session.get(PlanView, plan_id)
            if plan is not None and not tree.reaches(session, caller, plan.issuer_unit_id):
                tree.read(session, caller, "unit_id", unit_id or "")
            query = select(ReportVersion).where(ReportVersion.plan_id == plan_id)
            if unit_id:
                query = query.where(ReportVersion.unit_id == unit_id)
            return [v.model_dump() for v in session.exec(query.order_by(col(ReportVersion.submitted_at)))]

    @router.get("/rejections")
    def list_rejections(
        caller: CallerDep, unit_id: str | None = None, plan_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Reports sent by other systems that were refused, with the reasons (an officer's subtree's)."""
        with db.reading() as session:
            tree.read_filters(session, caller, unit_id=unit_id)
            query = select(Rejection).order_by(col(Rejection.at))
            if unit_id:
                query = query.where(Rejection.unit_id == unit_id)
            if plan_id:
                query = query.where(Rejection.plan_id == plan_id)
            rows = session.exec(query).all()
            reaches = tree.reach(session, caller)
            return [row.model_dump() for row in rows if reaches(row.unit_id or "")]

    @router.get("/plans/{plan_id}/phases/{phase_seq}/completeness")
    def get_completeness(plan_id: str, phase_seq: PhaseSeq, caller: CallerDep) -> dict[str, Any]:
        """Expected, received, on time, late and missing reports, with the summed figures and how each
        is summed, for the plan's issuer and every unit directly below it."""
        with db.reading() as session:
            plan = issued_plan(session, caller, plan_id, phase_seq)
            return completeness(session, plan, phase_seq, ctx.clock.today())

    @router.post("/plans/{plan_id}/phases/{phase_seq}/reviews", status_code=status.HTTP_204_NO_CONTENT)
    def review_report(plan_id: str, phase_seq: PhaseSeq, body: ReviewReport, caller: CallerDep) -> None:
        """Approve, return (with a reason) or accept a report sent on this plan by a unit below."""
        act_for(caller, "by_unit_id", body.by_unit_id)
        with db.transaction() as uow:
            _plan(uow.session, plan_id, phase_seq)
            review(uow, plan_id, phase_seq, body.unit_id, body.action, body.by_unit_id, body.reason)

    @router.post("/plans/{plan_id}/phases/{phase_seq}/consolidation", status_code=status.HTTP_201_CREATED)
    def consolidate_now(plan_id: str, phase_seq: PhaseSeq, caller: CallerDep) -> dict[str, Any]:
        """The plan's issuer sends its subtree's consolidated report up now, complete or not (it is sent
        automatically once every expected report is in)."""
        with db.transaction() as uow:
            plan = _plan(uow.session, plan_id, phase_seq)
            issuer_only(caller, plan_id, plan.issuer_unit_id)
            row = consolidate(uow, plan, phase_seq, automatic=False)
            return row.model_dump()

    @router.get("/plans/{plan_id}/phases/{phase_seq}/consolidations")
    def list_consolidations(plan_id: str, phase_seq: PhaseSeq, caller: CallerDep) -> list[dict[str, Any]]:
        """The consolidated reports the units below sent up on this plan."""
        with db.reading() as session:
            issued_plan(session, caller, plan_id, phase_seq)
            query = select(Consolidation).where(
                Consolidation.plan_id == plan_id, Consolidation.phase_seq == phase_seq
            )
            return [row.model_dump() for row in session.exec(query.order_by(col(Consolidation.unit_id)))]

    @router.get(
        "/plans/{plan_id}/phases/{phase_seq}/export.xlsx",
        response_class=Response,
        responses={200: {"content": {XLSX: {}}}},
    )
    def export_xlsx(plan_id: str, phase_seq: PhaseSeq, caller: CallerDep) -> Response:
        """The consolidated report as an Excel workbook: one row per unit below, totals, how it adds up."""
        table = get_completeness(plan_id, phase_seq, caller)
        filename = f"bao-cao-{plan_id[:8]}-dot-{phase_seq}.xlsx"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(exports.to_xlsx(table), media_type=XLSX, headers=headers)

    @router.get(
        "/plans/{plan_id}/phases/{phase_seq}/export.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    def export_csv(plan_id: str, phase_seq: PhaseSeq, caller: CallerDep) -> Response:
        """The same table as CSV (UTF-8)."""
        table = get_completeness(plan_id, phase_seq, caller)
        return Response(exports.to_csv(table), media_type="text/csv; charset=utf-8")

    return router
