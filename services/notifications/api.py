"""REST API of the notifications service, under /notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from services.notifications.models import Delivery
from shared.service import ServiceContext


def build_api(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["notifications"])

    @router.get("/deliveries")
    def list_deliveries(
        recipient_unit_id: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The delivery log: who was told what, on which channel, and in what state it is."""
        with ctx.db.reading() as session:
            query = (
                select(Delivery)
                .order_by(col(Delivery.created_at), col(Delivery.id))
                .limit(min(limit, 10_000))
            )
            if recipient_unit_id:
                query = query.where(Delivery.recipient_unit_id == recipient_unit_id)
            if kind:
                query = query.where(Delivery.kind == kind)
            return [row.model_dump() for row in session.exec(query)]

    return router
