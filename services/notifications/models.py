"""Tables of the notifications service."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel: exactly one per (event, recipient, channel)."""

    __tablename__ = "ntf_delivery"
    __table_args__ = (
        sa.UniqueConstraint("trigger_event_id", "recipient_unit_id", "channel", name="uq_delivery_once"),
    )

    id: str = Field(primary_key=True, max_length=64)
    trigger_event_id: str = Field(max_length=200)
    trigger_type: str = Field(max_length=100)
    kind: str = Field(max_length=50)  # plan_issued | reminder | nomination
    recipient_unit_id: str = Field(max_length=64, index=True)
    channel: str = Field(max_length=20)
    state: str = Field(max_length=20)  # queued | sent | failed
    subject: str = Field(max_length=1000)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


TABLES = ("ntf_delivery",)
