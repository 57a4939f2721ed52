"""Tables of the reporting service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class ReportingUnit(SQLModel, table=True):
    """The reporting service's own copy of the federation's units (from OrgUnitRegistered)."""

    __tablename__ = "rep_unit"

    unit_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    level: str = Field(max_length=20)


class UnitParent(SQLModel, table=True):
    """Who a unit's parent is from a day on (from OrgUnitRegistered and OrgUnitMoved)."""

    __tablename__ = "rep_unit_parent"

    unit_id: str = Field(primary_key=True, max_length=64)
    valid_from: date = Field(primary_key=True)
    parent_id: str | None = Field(default=None, max_length=64, index=True)


class PlanView(SQLModel, table=True):
    """What reporting knows of a plan: where it sits in its cascade, its phases and indicators."""

    __tablename__ = "rep_plan"
    __table_args__ = (sa.Index("ix_rep_plan_parent", "parent_plan_id", "issuer_unit_id"),)

    plan_id: str = Field(primary_key=True, max_length=64)
    campaign_id: str = Field(max_length=64, index=True)
    parent_plan_id: str | None = Field(default=None, max_length=64)
    issuer_unit_id: str = Field(max_length=64)
    number: str = Field(default="", max_length=100)
    report_after_phase_end: bool = False
    revoked: bool = False
    title: str = Field(default="", max_length=1000)
    # Issuers from the campaign's root down to this plan's issuer: the levels a report here adds up to.
    chain: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    phases: list[dict[str, Any]] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    indicators: list[dict[str, Any]] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    # Counts the plan's changes (rescheduled, amended, revoked): a copy kept between batches is used only
    # while it holds the revision the database holds.
    revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PlanRecipient(SQLModel, table=True):
    """A grassroots unit a plan was sent to (as issued)."""

    __tablename__ = "rep_recipient"

    plan_id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(primary_key=True, max_length=64, index=True)


class ReportTarget(SQLModel, table=True):
    """A grassroots unit expected to report on a plan for a phase: the plan of the unit that is its
    parent when the phase starts (a unit that moves reports its later phases to its new parent)."""

    __tablename__ = "rep_target"

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64, index=True)


class ReportVersion(SQLModel, table=True):
    """Every version of every report, kept (audit); the latest counts.

    One index besides the key: a plan's versions are always asked for by plan (and phase, and unit), and
    every report written pays for each index kept."""

    __tablename__ = "rep_report_version"
    __table_args__ = (sa.Index("ix_rep_version_key", "plan_id", "phase_seq", "unit_id"),)

    report_id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(max_length=64)
    phase_seq: int
    unit_id: str = Field(max_length=64)
    values: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    narrative: str = ""
    submitted_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class UnitContribution(SQLModel, table=True):
    """What one unit currently adds to the aggregates above it, for one plan and phase."""

    __tablename__ = "rep_contribution"

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64)
    overdue: bool = False  # found missing when the deadline passed (ReportOverdue sent)
    applied: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))


class Aggregate(SQLModel, table=True):
    """Completeness and summed figures of one unit's subtree, per campaign and phase."""

    __tablename__ = "rep_aggregate"

    campaign_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64)
    parent_unit_id: str | None = Field(default=None, max_length=64)
    expected: int = 0
    received: int = 0
    on_time: int = 0
    late: int = 0
    missing: int = 0
    figures: dict[str, int] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))


class Review(SQLModel, table=True):
    """Where a report stands with the level above: submitted, approved, returned (with the reason),
    accepted. Approved and accepted reports are locked until the level above returns them."""

    __tablename__ = "rep_review"

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=20)
    reason: str = ""
    by_unit_id: str | None = Field(default=None, max_length=64)
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Consolidation(SQLModel, table=True):
    """A unit's consolidated report of its subtree to the level above (on the plan it received)."""

    __tablename__ = "rep_consolidation"

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    unit_id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    counts: dict[str, int] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    figures: dict[str, int] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    automatic: bool = False
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Rejection(SQLModel, table=True):
    """A report that was refused, with the reasons, for the unit that sent it to see."""

    __tablename__ = "rep_rejection"

    report_id: str = Field(primary_key=True, max_length=200)
    plan_id: str | None = Field(default=None, max_length=64)
    phase_seq: int | None = None
    unit_id: str | None = Field(default=None, max_length=64, index=True)
    reasons: str
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class DeadlineCheck(SQLModel, table=True):
    """A plan phase whose report deadline has been checked for missing units (done once)."""

    __tablename__ = "rep_deadline_check"

    plan_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    checked_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


TABLES = (
    "rep_unit",
    "rep_unit_parent",
    "rep_plan",
    "rep_recipient",
    "rep_target",
    "rep_review",
    "rep_consolidation",
    "rep_rejection",
    "rep_report_version",
    "rep_contribution",
    "rep_aggregate",
    "rep_deadline_check",
)
