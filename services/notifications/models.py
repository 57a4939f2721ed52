"""Tables of the notifications service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel: exactly one per (event, recipient, channel).

    States: queued (waiting to be sent, or to be retried after `next_attempt_at`), sent, failed (this
    attempt failed; retried), bounced (the mail server refused the address for good), dead (no attempt
    left), to_be_posted (in a print batch), posted (an officer posted it)."""

    __tablename__ = "ntf_delivery"
    __table_args__ = (
        sa.UniqueConstraint("trigger_event_id", "recipient_unit_id", "channel", name="uq_delivery_once"),
        sa.Index("ix_ntf_delivery_due", "state", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=64)  # time-ordered (see shared.ids); sent as Message-ID
    trigger_event_id: str = Field(max_length=200)
    trigger_type: str = Field(max_length=100)
    kind: str = Field(max_length=50)  # plan_issued | report_request | reminder | overdue | nomination …
    recipient_unit_id: str = Field(max_length=64, index=True)
    channel: str = Field(max_length=20)
    state: str = Field(max_length=20)
    subject: str = Field(max_length=1000)
    body: str = ""
    plan_id: str | None = Field(default=None, max_length=64)  # a plan whose DOCX goes with the message
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    claimed_until: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    last_error: str = ""
    # What the far end said: the iOffice exchange's status code, the print batch's folder.
    external_status: str = Field(default="", max_length=300)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class Contact(SQLModel, table=True):
    """How a unit is reached, as the org registry says: name, parent, email, iOffice."""

    __tablename__ = "ntf_contact"

    unit_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    parent_id: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    has_ioffice: bool = False


class Preference(SQLModel, table=True):
    """A unit's choices: kinds of message it opted out of (where the rules allow), reminders digested."""

    __tablename__ = "ntf_preference"

    unit_id: str = Field(primary_key=True, max_length=64)
    opted_out: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    digest: bool = True


class PlanCopy(SQLModel, table=True):
    """A plan as issued (its PlanIssued, amended as it changes): what documents and reminders come from."""

    __tablename__ = "ntf_plan"

    plan_id: str = Field(primary_key=True, max_length=64)
    event: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    revoked: bool = False


class Expectation(SQLModel, table=True):
    """A report a unit owes on a phase of a plan, and whether it has come: reminders go only to units
    that have not reported."""

    __tablename__ = "ntf_expectation"
    __table_args__ = (sa.Index("ix_ntf_expectation_due", "reported", "due_on"),)

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64)
    due_on: date | None = None
    reported: bool = False
    # The smallest number of days before the deadline this unit was already reminded at.
    reminded_at_lead: int | None = None


TABLES = ("ntf_delivery", "ntf_contact", "ntf_preference", "ntf_plan", "ntf_expectation")
