"""REST API of the awards service, under /awards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from sqlmodel import Session, col, select

from services.awards import handlers
from services.awards.models import AwardPlan, AwardUnit, Decision, Nomination, Vote
from shared.access import Caller, CallerDep, Forbidden, Tree, act_for, current_caller
from shared.events import AwardDecided, AwardRevoked, NominationForwarded, NominationMade
from shared.service import ServiceContext


def build_api(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["awards"], dependencies=[Depends(current_caller)])
    db = ctx.db

    def parent_of(session: Session, unit_id: str) -> str | None:
        unit = session.get(AwardUnit, unit_id)
        return unit.parent_id if unit else None

    tree = Tree(parent_of)

    def concerns(reaches: Callable[[str], bool], caller: Caller, nomination: Nomination) -> bool:
        """A nomination is for its subtree's officers and for the councils it went to."""
        return reaches(nomination.unit_id) or caller.unit_id in (nomination.to_unit_id, *nomination.path)

    @router.post("/nominations", response_model=NominationMade, status_code=status.HTTP_201_CREATED)
    def nominate(command: handlers.Nominate, caller: CallerDep) -> NominationMade:
        """Nominate to the level that issued the plan, within its quota, for an award of the year's rules."""
        act_for(caller, "unit_id", command.unit_id)
        with db.transaction() as uow:
            event = handlers.nominate(uow, command)
            uow.publish(event, unit=command.unit_id)
        ctx.metrics.nominations.labels("nominated").inc()
        return event

    @router.get("/nominations")
    def list_nominations(
        caller: CallerDep, plan_id: str | None = None, unit_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Nominations, oldest first; an officer gets their subtree's and those sent to their unit."""
        with db.reading() as session:
            query = select(Nomination).order_by(col(Nomination.created_at))
            if plan_id:
                query = query.where(Nomination.plan_id == plan_id)
            if unit_id:
                query = query.where(Nomination.unit_id == unit_id)
            reaches = tree.reach(session, caller)
            return [row.model_dump() for row in session.exec(query) if concerns(reaches, caller, row)]

    @router.get("/nominations/{nomination_id}")
    def get_nomination(nomination_id: str, caller: CallerDep) -> dict[str, Any]:
        """A nomination, where it stands, its council votes, its decision, and each rule of its year it
        fails with the facts that fail it."""
        with db.reading() as session:
            nomination = session.get(Nomination, nomination_id)
            if nomination is None:
                raise HTTPException(404, f"no nomination {nomination_id}")
            if not concerns(tree.reach(session, caller), caller, nomination):
                raise Forbidden(
                    "nomination_id", nomination_id, f"a nomination of or sent to {caller.unit_id}"
                )
            votes = session.exec(select(Vote).where(Vote.nomination_id == nomination_id)).all()
            decision = session.get(Decision, nomination_id)
            failures = handlers.eligibility(session, nomination, ctx.clock.today())
            return {
                **nomination.model_dump(),
                "votes": [v.model_dump() for v in votes],
                "decision": decision.model_dump() if decision else None,
                "failed_rules": [vars(f) for f in failures],
            }

    @router.post("/nominations/{nomination_id}/votes", status_code=status.HTTP_201_CREATED)
    def vote(nomination_id: str, ballot: handlers.CouncilVote, caller: CallerDep) -> dict[str, Any]:
        """The council of the level holding the nomination votes; it passes with the year's majority."""
        act_for(caller, "by_unit_id", ballot.by_unit_id)
        with db.transaction() as uow:
            row = handlers.vote(uow, nomination_id, ballot)
        ctx.metrics.nominations.labels("passed" if row.passed else "refused").inc()
        return row.model_dump()

    @router.post("/nominations/{nomination_id}/forward", response_model=NominationForwarded)
    def forward(nomination_id: str, body: handlers.ByUnit, caller: CallerDep) -> NominationForwarded:
        """Forward a passed nomination to the level above (NominationForwarded), within that plan's quota."""
        act_for(caller, "by_unit_id", body.by_unit_id)
        with db.transaction() as uow:
            event = handlers.forward(uow, nomination_id, body.by_unit_id)
        ctx.metrics.nominations.labels("forwarded").inc()
        return event

    @router.post(
        "/nominations/{nomination_id}/decision",
        response_model=AwardDecided,
        status_code=status.HTTP_201_CREATED,
    )
    def decide(nomination_id: str, body: handlers.ByUnit, caller: CallerDep) -> AwardDecided:
        """Grant the award (AwardDecided), numbered NN/QĐ-<unit> for the year."""
        act_for(caller, "by_unit_id", body.by_unit_id)
        with db.transaction() as uow:
            event = handlers.decide(uow, nomination_id, body.by_unit_id)
        ctx.metrics.nominations.labels("decided").inc()
        return event

    @router.post("/nominations/{nomination_id}/revocation", response_model=AwardRevoked)
    def revoke(nomination_id: str, body: handlers.Revoke, caller: CallerDep) -> AwardRevoked:
        """Revoke a decided award (AwardRevoked), by the unit that decided it."""
        act_for(caller, "by_unit_id", body.by_unit_id)
        with db.transaction() as uow:
            event = handlers.revoke(uow, nomination_id, body)
        ctx.metrics.nominations.labels("revoked").inc()
        return event

    @router.get("/plans/{plan_id}/quota")
    def quota(plan_id: str, unit_id: str, caller: CallerDep) -> dict[str, Any]:
        """What a unit has used of the plan's quota, in all and per award, and what it is allowed."""
        with db.reading() as session:
            tree.read(session, caller, "unit_id", unit_id)
            plan = session.get(AwardPlan, plan_id)
            if plan is None:
                raise HTTPException(404, f"no plan {plan_id} known to awards")
            return handlers.quota_state(session, plan, unit_id)

    @router.get("/statistics")
    def statistics(caller: CallerDep, plan_id: str | None = None) -> dict[str, Any]:
        """Awards decided, per level, per award, per plan; the shares of direct production and small
        collectives. Federation-wide, or for a plan issued in an officer's subtree."""
        with db.reading() as session:
            plan = session.get(AwardPlan, plan_id) if plan_id else None
            if plan is not None:
                tree.read_issued(session, caller, plan.plan_id, plan.issuer_unit_id)
            elif not caller.is_service:
                raise Forbidden("plan_id", plan_id, f"a plan issued in the subtree of {caller.unit_id}")
            return handlers.statistics(session, plan_id)

    return router
