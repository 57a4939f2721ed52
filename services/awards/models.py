"""Tables of the awards service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class AwardUnit(SQLModel, table=True):
    """Awards' own copy of the federation's units: the level decides what a unit may grant."""

    __tablename__ = "awd_unit"

    unit_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    level: str = Field(max_length=20)
    parent_id: str | None = Field(default=None, max_length=64)


class ReportRecord(SQLModel, table=True):
    """Whether a unit's report on a phase came in on time (from ReportSubmitted)."""

    __tablename__ = "awd_report"

    campaign_id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(primary_key=True, max_length=64)
    phase_seq: int = Field(primary_key=True)
    on_time: bool
    first_submitted_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class AwardPlan(SQLModel, table=True):
    """What awards knows of a plan: who issued it, who it went to, how many each may nominate."""

    __tablename__ = "awd_plan"

    plan_id: str = Field(primary_key=True, max_length=64)
    campaign_id: str = Field(max_length=64)
    issuer_unit_id: str = Field(max_length=64)
    target_unit_ids: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    quota: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    phases: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))


class Nomination(SQLModel, table=True):
    """A unit puts a collective or an individual forward for an award (đề nghị khen thưởng)."""

    __tablename__ = "awd_nomination"
    __table_args__ = (sa.Index("ix_awd_nomination_plan_unit", "plan_id", "unit_id"),)

    id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(max_length=64)
    unit_id: str = Field(max_length=64)
    to_unit_id: str = Field(max_length=64)
    nominee_kind: str = Field(max_length=20)
    nominee_name: str = Field(max_length=300)
    award: str = Field(max_length=300)
    year: int
    nominee_unit_id: str | None = Field(default=None, max_length=64)
    phase_seq: int | None = None
    achievements: str = ""
    achievement_ids: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    direct_production: bool = False
    small_collective: bool = False
    # nominated (awaiting the council of to_unit_id) → passed | failed → decided | forwarded → … → revoked
    state: str = Field(default="nominated", max_length=20)
    # The units it passed through on its way up, in order.
    path: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Vote(SQLModel, table=True):
    """A council's vote on a nomination (Hội đồng thi đua khen thưởng), with the result."""

    __tablename__ = "awd_vote"

    nomination_id: str = Field(primary_key=True, max_length=64)
    unit_id: str = Field(primary_key=True, max_length=64)
    members: int
    yes: int
    no: int
    passed: bool
    at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class Decision(SQLModel, table=True):
    """A decision (quyết định khen thưởng): numbered per body per year, NN/QĐ-…"""

    __tablename__ = "awd_decision"
    __table_args__ = (sa.UniqueConstraint("decided_by_unit_id", "year", "seq", name="uq_decision_number"),)

    nomination_id: str = Field(primary_key=True, max_length=64)
    number: str = Field(max_length=100)
    decided_by_unit_id: str = Field(max_length=64)
    year: int
    seq: int
    decided_on: date
    revoked: bool = False
    revoked_reason: str = ""


TABLES = ("awd_unit", "awd_report", "awd_plan", "awd_nomination", "awd_vote", "awd_decision")
