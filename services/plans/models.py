"""Tables of the plans service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class OrgUnitVersion(SQLModel, table=True):
    """One version of a unit of the federation; a move closes one version and opens the next."""

    __tablename__ = "org_unit"
    __table_args__ = (sa.Index("ix_org_unit_id_valid", "unit_id", "valid_from"),)

    row_id: int | None = Field(default=None, primary_key=True)
    unit_id: str = Field(max_length=64)
    name: str = Field(max_length=300)
    level: str = Field(max_length=20)
    parent_id: str | None = Field(default=None, max_length=64, index=True)
    sector: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=300)
    has_ioffice: bool = False
    valid_from: date
    valid_to: date | None = None


class Plan(SQLModel, table=True):
    """A plan (kế hoạch) as issued. Numbers restart every 1 January per issuing body (Decree 30)."""

    __tablename__ = "plan"
    __table_args__ = (
        sa.UniqueConstraint("issuer_unit_id", "year", "number", name="uq_plan_number"),
        sa.UniqueConstraint("parent_plan_id", "issuer_unit_id", name="uq_plan_derived"),
    )

    id: str = Field(primary_key=True, max_length=64)
    number: str = Field(max_length=100)
    year: int
    issuer_unit_id: str = Field(max_length=64, index=True)
    title: str = Field(max_length=1000)
    issued_on: date
    parent_plan_id: str | None = Field(default=None, max_length=64)
    campaign_id: str = Field(max_length=64, index=True)
    lineage: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    indicators: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    award_quota: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    deadlines: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    milestones: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    # What the document says beyond the schedule: place, movements, content per sector, goals, signer,
    # recipients (as in PlanIssued).
    details: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    version: int = 1
    auto_derive: bool = False
    report_after_phase_end: bool = False
    # Issued by another stack's registry (mirrored in) and sent to units registered here.
    received: bool = False
    status: str = Field(default="issued", max_length=20)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    # The grassroots units it was sent to, and those of them that acknowledged it, kept as they change:
    # a cascade's deployment adds up one row per plan, not one per unit.
    grassroots_sent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    grassroots_deployed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PlanPhase(SQLModel, table=True):
    """A phase (đợt / giai đoạn); opened_at / closed_at record that its event was emitted, once."""

    __tablename__ = "plan_phase"

    plan_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    label: str = Field(max_length=300)
    start: date
    end: date | None = None
    report_due: date | None = None
    end_milestone: str | None = Field(default=None, max_length=64)
    opened_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    closed_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class PlanTarget(SQLModel, table=True):
    """A unit a plan was sent to for execution, and when it acknowledged (deployed) it."""

    __tablename__ = "plan_target"

    plan_id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    level: str = Field(max_length=20)
    acknowledged_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class Registration(SQLModel, table=True):
    """A unit's registration against a plan: a commitment (đăng ký thi đua), a pledge between units
    (giao ước thi đua) or a work (công trình, phần việc). One after the deadline is kept, marked late."""

    __tablename__ = "plan_registration"

    id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(max_length=64, index=True)
    unit_id: str = Field(max_length=64)
    kind: str = Field(max_length=20)
    title: str = Field(max_length=500)
    description: str = ""
    registered_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    due_on: date | None = None
    late: bool = False


class Amendment(SQLModel, table=True):
    """One amendment of an issued plan: its new version, what changed and why."""

    __tablename__ = "plan_amendment"

    plan_id: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    changed: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    reason: str
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class PlanDraft(SQLModel, table=True):
    """A plan being written (dự thảo): the body as it stands, checked and issued when the officer is ready."""

    __tablename__ = "plan_draft"

    id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(max_length=64, index=True)
    body: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    source: str = Field(default="", max_length=300)  # e.g. the document it was read from
    status: str = Field(default="draft", max_length=20)  # draft | issued
    plan_id: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class SourceDocument(SQLModel, table=True):
    """A document a draft was read from (text, DOCX, PDF or edXML), kept as it arrived, with what was read."""

    __tablename__ = "plan_source_document"

    id: str = Field(primary_key=True, max_length=64)
    draft_id: str = Field(max_length=64, index=True)
    filename: str = Field(max_length=300)
    kind: str = Field(max_length=10)  # text | docx | pdf | edxml
    media_type: str = Field(max_length=200)
    content: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    parsed: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    sender: str | None = Field(default=None, max_length=300)  # edXML From/OrganId
    received_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Delivery(SQLModel, table=True):
    """A plan's edXML package to one recipient with iOffice, and the last status its exchange reported."""

    __tablename__ = "plan_delivery"

    plan_id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(primary_key=True, max_length=64)
    document_id: str = Field(max_length=300, index=True)  # OrganId,yyyy/MM/dd,Number/Notation
    status: str = Field(default="prepared", max_length=20)  # prepared | received | refused | accepted …
    status_code: str | None = Field(default=None, max_length=4)
    description: str = ""
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Officer(SQLModel, table=True):
    """An officer's account: who signs in for a unit (cán bộ công đoàn), with a scrypt-hashed password."""

    __tablename__ = "plan_officer"

    username: str = Field(primary_key=True, max_length=100)
    unit_id: str = Field(max_length=64, index=True)
    full_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=300)
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


TABLES = (
    "org_unit",
    "plan",
    "plan_phase",
    "plan_target",
    "plan_registration",
    "plan_amendment",
    "plan_draft",
    "plan_source_document",
    "plan_delivery",
    "plan_officer",
)
