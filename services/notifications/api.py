"""REST API of the notifications service, under /notifications."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import Session, col, select

from services.notifications.handlers import mark_posted
from services.notifications.models import Contact, Delivery, Expectation, PlanCopy, Preference
from shared.access import CallerDep, Tree, act_for, current_caller, only_services
from shared.errors import FieldError
from shared.events import MAX_PHASES
from shared.service import ServiceContext


class Preferences(BaseModel):
    """A unit's choices: kinds of message it does not want (only those the rules make optional), and
    whether its reminders come as one message a day."""

    model_config = ConfigDict(extra="forbid")
    opted_out: list[str] = []
    digest: bool = True


def build_api(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["notifications"], dependencies=[Depends(current_caller)])
    db, settings = ctx.db, ctx.settings

    def parent_of(session: Session, unit_id: str) -> str | None:
        contact = session.get(Contact, unit_id)
        return contact.parent_id if contact else None

    tree = Tree(parent_of)

    @router.get("/deliveries")
    def list_deliveries(
        caller: CallerDep,
        recipient_unit_id: str | None = None,
        kind: str | None = None,
        channel: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """The delivery log: who was told what, on which channel, and in what state it is (an officer's
        subtree's)."""
        with db.reading() as session:
            tree.read_filters(session, caller, recipient_unit_id=recipient_unit_id)
            query = (
                select(Delivery)
                .order_by(col(Delivery.created_at), col(Delivery.id))
                .limit(min(limit, 10_000))
            )
            for column, value in (
                (Delivery.recipient_unit_id, recipient_unit_id),
                (Delivery.kind, kind),
                (Delivery.channel, channel),
                (Delivery.state, state),
            ):
                if value:
                    query = query.where(column == value)
            reaches = tree.reach(session, caller)
            rows = session.exec(query).all()
            return [row.model_dump(exclude={"body"}) for row in rows if reaches(row.recipient_unit_id)]

    @router.get("/deliveries/summary")
    def summary(caller: CallerDep) -> dict[str, dict[str, int]]:
        """How many deliveries each channel has in each state, federation-wide (for operators)."""
        only_services(caller, "the federation's delivery counts")
        with db.reading() as session:
            rows = session.exec(
                select(Delivery.channel, Delivery.state, func.count()).group_by(
                    col(Delivery.channel), col(Delivery.state)
                )
            ).all()
        counts: dict[str, dict[str, int]] = {}
        for channel, state, count in rows:
            counts.setdefault(channel, {})[state] = count
        return counts

    @router.get("/deliveries/{delivery_id}")
    def get_delivery(delivery_id: str, caller: CallerDep) -> dict[str, Any]:
        """One delivery with the message as it was sent."""
        with db.reading() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                raise HTTPException(404, f"no delivery {delivery_id}")
            tree.read(session, caller, "recipient_unit_id", delivery.recipient_unit_id)
            return delivery.model_dump()

    @router.post("/deliveries/{delivery_id}/posted")
    def posted(delivery_id: str, caller: CallerDep) -> dict[str, Any]:
        """An officer of a unit above the recipient posted the paper copy of a print batch."""
        with db.transaction() as uow:
            found = uow.session.get(Delivery, delivery_id)
            if found is not None:
                tree.below(uow.session, caller, "recipient_unit_id", found.recipient_unit_id)
            delivery = mark_posted(uow, delivery_id)
            if delivery is None:
                raise HTTPException(404, f"no delivery {delivery_id}")
            if delivery.state != "posted":
                raise FieldError(
                    "delivery_id", delivery_id, f"a paper copy to be posted (this one is {delivery.state})"
                )
            ctx.metrics.notifications.labels(delivery.channel, "posted").inc()
            return delivery.model_dump(exclude={"body"})

    @router.get("/plans/{plan_id}/expected")
    def expected(
        plan_id: str, caller: CallerDep, phase_seq: Annotated[int | None, Query(ge=1, le=MAX_PHASES)] = None
    ) -> list[dict[str, Any]]:
        """The reports owed on a plan as notifications sees them: reminders go to those not yet reported.
        For the plan's issuer and the levels above."""
        with db.reading() as session:
            copy = session.get(PlanCopy, plan_id)
            if copy is not None:
                tree.read_issued(session, caller, plan_id, copy.event["issuer_unit_id"])
            query = select(Expectation).where(Expectation.plan_id == plan_id)
            if phase_seq is not None:
                query = query.where(Expectation.phase_seq == phase_seq)
            rows = session.exec(query.order_by(col(Expectation.phase_seq), col(Expectation.unit_id)))
            return [row.model_dump() for row in rows]

    @router.get("/units/{unit_id}/preferences", response_model=Preferences)
    def get_preferences(unit_id: str, caller: CallerDep) -> Preferences:
        with db.reading() as session:
            tree.read(session, caller, "unit_id", unit_id)
            found = session.get(Preference, unit_id)
            return (
                Preferences(opted_out=found.opted_out, digest=found.digest)
                if found
                else Preferences(digest=settings.reminder_digest)
            )

    @router.put("/units/{unit_id}/preferences", response_model=Preferences)
    def set_preferences(unit_id: str, choice: Preferences, caller: CallerDep) -> Preferences:
        """Opt out of kinds of message the rules make optional; plans, deadlines passed and decisions are
        official and always sent. An officer sets their own unit's."""
        act_for(caller, "unit_id", unit_id)
        optional = settings.listed(settings.optional_kinds)
        for index, kind in enumerate(choice.opted_out):
            if kind not in optional:
                raise FieldError(
                    f"opted_out[{index}]", kind, f"one of the optional kinds: {', '.join(optional)}"
                )
        with db.transaction() as uow:
            uow.session.merge(
                Preference(unit_id=unit_id, opted_out=sorted(set(choice.opted_out)), digest=choice.digest)
            )
        return choice

    return router
