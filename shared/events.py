"""Event contracts: one envelope for every event, carried as CloudEvents attributes in Kafka headers.

Binary content mode of the CloudEvents Kafka binding: the payload is the record value (JSON), the
attributes are `ce_*` headers, the record key is the aggregate's id so that order holds per aggregate.
Events are past-tense facts; every payload is a pydantic model registered under its type name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import EventRejected
from shared.ids import new_id

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


# ---------------------------------------------------------------- shared vocabulary


# No plan has more phases than this: a bound that keeps every phase number inside the databases' integers.
MAX_PHASES = 99


class Level(StrEnum):
    """Levels of the federation tree (cấp)."""

    national = "national"  # Tổng LĐLĐ Việt Nam
    province = "province"  # LĐLĐ tỉnh / thành phố, công đoàn ngành trung ương
    district = "district"  # LĐLĐ quận / huyện, công đoàn ngành
    grassroots = "grassroots"  # công đoàn cơ sở (CĐCS)


# From the top of the federation down.
LEVEL_RANK = {Level.national: 0, Level.province: 1, Level.district: 2, Level.grassroots: 3}


class Sector(StrEnum):
    """Where a grassroots union works; plans set content per sector (khối)."""

    enterprise = "enterprise"  # doanh nghiệp
    administration = "administration"  # hành chính sự nghiệp
    school = "school"  # trường học


class IndicatorKind(StrEnum):
    count = "count"  # type: ignore[assignment]  # a whole number, summed up the tree
    ratio = "ratio"  # numerator / denominator, both summed, the ratio computed from the sums
    yes_no = "yes_no"  # counted: how many units said yes
    text = "text"  # narrative, not aggregated


class NomineeKind(StrEnum):
    collective = "collective"  # tập thể
    individual = "individual"  # cá nhân


class Channel(StrEnum):
    log = "log"
    email = "email"
    ioffice = "ioffice"
    paper = "paper"
    webhook = "webhook"


# ---------------------------------------------------------------- payloads


class Event(BaseModel):
    """Base of every event payload. Subclasses name their stream and the aggregate they are about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: ClassVar[str]
    key: ClassVar[str]  # the field holding the aggregate's id
    schema_version: ClassVar[int] = 1

    @property
    def subject(self) -> str:
        """The aggregate's id: the Kafka key and the CloudEvents subject."""
        return str(getattr(self, self.key))

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__


class OrgUnit(BaseModel):
    """One version of a unit of the federation (đơn vị), valid from `valid_from` until `valid_to`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=300)
    level: Level
    parent_id: str | None = None
    sector: Sector | None = None
    email: str | None = None
    has_ioffice: bool = False
    valid_from: date
    valid_to: date | None = None


class OrgUnitRegistered(Event):
    stream: ClassVar[str] = "org"
    key: ClassVar[str] = "unit"
    unit: OrgUnit

    @property
    def subject(self) -> str:
        return self.unit.id


class OrgUnitMoved(Event):
    stream: ClassVar[str] = "org"
    key: ClassVar[str] = "unit_id"
    unit_id: str
    old_parent_id: str | None
    new_parent_id: str
    effective_on: date


class PlanRef(BaseModel):
    """A plan in a cascade, with the unit that issued it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    plan_id: str
    issuer_unit_id: str


class Phase(BaseModel):
    """A phase of a plan (đợt / giai đoạn) and the day its reports are due. A phase that ends at a
    milestone whose date is not set yet (đến Đại hội …) has no end and no due date until it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: int = Field(ge=1, le=MAX_PHASES)
    label: str
    start: date
    end: date | None = None
    report_due: date | None = None
    end_milestone: str | None = None


class Milestone(BaseModel):
    """An event phases may end at (Đại hội Công đoàn quận lần thứ V), dated when it is scheduled."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=300)
    on: date | None = None


class Target(BaseModel):
    """A unit a plan is sent to for execution (t/h)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit_id: str
    name: str
    level: Level


class Indicator(BaseModel):
    """One figure units report (chỉ tiêu báo cáo) and how it adds up the tree."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    kind: IndicatorKind


class Recipient(BaseModel):
    """Nơi nhận: who a plan goes to and why — for report (b/c, a unit above), for execution (t/h, a unit
    below) or to archive (Lưu)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=300)
    unit_id: str | None = None
    purpose: Literal["report", "execute", "archive"]


class DeadlineRule(BaseModel):
    """A deadline as a plan states it, before it becomes dates:
    after_phase — `days` after each phase ends (chậm nhất sau 2 ngày kết thúc từng giai đoạn);
    periodic — before `day_of_month` of the last month of each quarter / half-year / year the plan spans
    (trước ngày 15 tháng cuối quý); fixed — on `due_on` (register works by a date)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["after_phase", "periodic", "fixed"]
    purpose: Literal["report", "registration"] = "report"
    days: int | None = Field(default=None, ge=0, le=365)
    period: Literal["quarter", "half_year", "year"] | None = None
    day_of_month: int | None = Field(default=None, ge=2, le=28)
    due_on: date | None = None
    text: str = ""


class Goal(BaseModel):
    """A target of the plan (chỉ tiêu) over one of its indicators: ≥ 20 % of staff with a recognised
    initiative is the indicator's summed numerator over its summed denominator, compared with 20."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=1, max_length=1000)
    indicator: str
    comparator: Literal[">=", ">", "=", "<=", "<"]
    value: float = Field(ge=0)
    unit: Literal["%", "count"]


class Signer(BaseModel):
    """Who signs (TM. BAN THƯỜNG VỤ / CHỦ TỊCH / name): the authority prefix, the position, the name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    authority: Literal["TM.", "KT.", "Q.", "TL.", "TUQ."] | None = None
    position: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)


class AwardCounts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    collectives: int = Field(ge=0)
    individuals: int = Field(ge=0)


class AwardQuota(AwardCounts):
    """How many a unit may put forward to the issuing level (e.g. 01 tập thể, 01 cá nhân), in all and,
    where the plan says so, per form of award (a code of the year's award rules)."""

    by_award: dict[str, AwardCounts] = {}


class PlanIssued(Event):
    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    number: str  # Số: 19/KH-LĐLĐ
    issuer_unit_id: str
    title: str
    issued_on: date
    place: str = ""  # Long Biên, ngày 02 tháng 3 năm 2023
    parent_plan_id: str | None = None
    # The cascade from the campaign's root plan down to this plan's parent: every PlanIssued is
    # self-contained, so a consumer needs no other event to place it in the federation.
    lineage: list[PlanRef] = []
    phases: list[Phase]
    targets: list[Target]
    indicators: list[Indicator] = []
    goals: list[Goal] = []
    movements: list[str] = []  # phong trào: "Lao động giỏi, Lao động sáng tạo" …
    content: dict[Sector, str] = {}  # what each sector does: enterprises, administration, schools
    signer: Signer | None = None
    award_quota: AwardQuota | None = None
    recipients: list[Recipient] = []
    deadlines: list[DeadlineRule] = []
    milestones: list[Milestone] = []
    auto_derive: bool = False
    # Reports on a phase are accepted only once it has ended (the plan asks for results, not promises).
    report_after_phase_end: bool = False

    @property
    def campaign_id(self) -> str:
        """The root plan of the cascade this plan belongs to."""
        return self.lineage[0].plan_id if self.lineage else self.plan_id


class PlanRescheduled(Event):
    """A milestone was scheduled or moved: the plan's phases bound to it have new end and due dates."""

    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    milestone_id: str
    on: date
    phases: list[Phase]


class PlanAmended(Event):
    """The issuer changed an issued plan: a new version, saying which fields changed and why."""

    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    version: int
    changed: list[str]
    reason: str
    title: str
    phases: list[Phase]
    indicators: list[Indicator]
    deadlines: list[DeadlineRule]
    award_quota: AwardQuota | None = None


class PlanRevoked(Event):
    """The issuer revoked a plan (and with it every plan implementing it): nothing more is expected."""

    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    reason: str


class PlanClosed(Event):
    """The issuer closed a plan: its campaign is over; figures stay as they are."""

    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str


class PlanAcknowledged(Event):
    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    unit_id: str
    acknowledged_at: datetime


class PhaseOpened(Event):
    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    phase_seq: int
    at: datetime


class PhaseClosed(Event):
    stream: ClassVar[str] = "plans"
    key: ClassVar[str] = "plan_id"
    plan_id: str
    phase_seq: int
    at: datetime


ReportValue = bool | int | float | str | dict[str, float]


class ReportSubmitted(Event):
    stream: ClassVar[str] = "reports"
    key: ClassVar[str] = "unit_id"
    report_id: str  # one version of a unit's report; a correction is a new report_id
    plan_id: str
    phase_seq: int
    unit_id: str
    values: dict[str, ReportValue]
    narrative: str = ""
    submitted_at: datetime


class ReportConsolidated(Event):
    """A unit's consolidated report of its subtree, on the plan it received from the level above."""

    stream: ClassVar[str] = "reports"
    key: ClassVar[str] = "unit_id"
    plan_id: str
    phase_seq: int
    unit_id: str
    expected: int
    received: int
    on_time: int
    late: int
    values: dict[str, float]


class ReportOverdue(Event):
    stream: ClassVar[str] = "reports"
    key: ClassVar[str] = "unit_id"
    plan_id: str
    phase_seq: int
    unit_id: str
    parent_unit_id: str
    due_on: date


class _Review(Event):
    stream: ClassVar[str] = "reports"
    key: ClassVar[str] = "unit_id"
    plan_id: str
    phase_seq: int
    unit_id: str  # the unit whose report it is
    by_unit_id: str  # the level above, which reviews it


class ReportApproved(_Review):
    """The level above approved a report: it is locked until that level returns it."""


class ReportReturned(_Review):
    """The level above returned a report for correction, saying why."""

    reason: str = Field(min_length=1)


class ReportAccepted(_Review):
    """The level above accepted a consolidated report into its own: locked, with the subtree below."""


class NominationMade(Event):
    stream: ClassVar[str] = "awards"
    key: ClassVar[str] = "nomination_id"
    nomination_id: str
    plan_id: str
    unit_id: str  # the nominating unit
    to_unit_id: str  # the level asked to reward
    nominee_kind: NomineeKind
    nominee_name: str
    nominee_unit_id: str | None = None  # the union a collective is, or an individual belongs to
    phase_seq: int | None = None  # the phase it rewards (None: the whole plan)
    award: str  # a code of the year's award rules, e.g. tap_the_lao_dong_xuat_sac
    year: int | None = None
    achievements: str = ""
    achievement_ids: list[str] = []  # one achievement earns one award
    facts: dict[
        str, Any
    ] = {}  # members, members_completing, lao_dong_tien_tien, chien_si_thi_dua, titles_held
    direct_production: bool = False  # lao động trực tiếp sản xuất
    small_collective: bool = False  # tập thể nhỏ


class NominationForwarded(Event):
    stream: ClassVar[str] = "awards"
    key: ClassVar[str] = "nomination_id"
    nomination_id: str
    from_unit_id: str
    to_unit_id: str
    plan_id: str = ""  # the plan of the level it goes to


class AwardDecided(Event):
    stream: ClassVar[str] = "awards"
    key: ClassVar[str] = "nomination_id"
    nomination_id: str
    decision_number: str  # NN/QĐ-…
    decided_by_unit_id: str
    award: str
    decided_on: date
    unit_id: str = ""  # the nominating unit
    nominee_name: str = ""


class AwardRevoked(Event):
    """A decided award was revoked (thu hồi), with the reason."""

    stream: ClassVar[str] = "awards"
    key: ClassVar[str] = "nomination_id"
    nomination_id: str
    decision_number: str
    revoked_by_unit_id: str
    reason: str
    unit_id: str = ""  # the nominating unit


class _Notification(Event):
    stream: ClassVar[str] = "notifications"
    key: ClassVar[str] = "recipient_unit_id"
    delivery_id: str
    trigger_event_id: str
    trigger_type: str
    recipient_unit_id: str
    channel: Channel
    at: datetime


class NotificationDelivered(_Notification):
    pass


class NotificationFailed(_Notification):
    error: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name(): cls
    for cls in (
        OrgUnitRegistered,
        OrgUnitMoved,
        PlanIssued,
        PlanAcknowledged,
        PlanRescheduled,
        PlanAmended,
        PlanRevoked,
        PlanClosed,
        PhaseOpened,
        PhaseClosed,
        ReportSubmitted,
        ReportConsolidated,
        ReportOverdue,
        ReportApproved,
        ReportReturned,
        ReportAccepted,
        NominationMade,
        NominationForwarded,
        AwardDecided,
        AwardRevoked,
        NotificationDelivered,
        NotificationFailed,
    )
}


# ---------------------------------------------------------------- the envelope


class Envelope(BaseModel):
    """An event with its CloudEvents attributes."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    schema_version: int
    time: datetime
    source: str  # the producing service, e.g. "/thidua/plans"
    unit: str  # the producing unit (đơn vị phát sinh)
    subject: str
    correlation_id: str | None = None  # the campaign's root plan
    causation_id: str | None = None  # the event that caused this one
    data: Event

    @classmethod
    def wrap(
        cls,
        data: Event,
        *,
        source: str,
        unit: str,
        time: datetime,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        return cls(
            id=new_id(),
            type=data.type_name(),
            schema_version=data.schema_version,
            time=time,
            source=source,
            unit=unit,
            subject=data.subject,
            correlation_id=correlation_id,
            causation_id=causation_id,
            data=data,
        )


def to_kafka(envelope: Envelope) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the Kafka record carrying `envelope`."""
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": envelope.id,
        "ce_type": envelope.type,
        "ce_source": envelope.source,
        "ce_time": envelope.time.astimezone(UTC).isoformat(),
        "ce_subject": envelope.subject,
        "ce_schemaversion": str(envelope.schema_version),
        "ce_unit": envelope.unit,
        "content-type": CONTENT_TYPE,
    }
    if envelope.correlation_id:
        attributes["ce_correlationid"] = envelope.correlation_id
    if envelope.causation_id:
        attributes["ce_causationid"] = envelope.causation_id
    headers = [(name, value.encode()) for name, value in attributes.items()]
    return envelope.subject.encode(), envelope.data.model_dump_json().encode(), headers


def header_map(headers: Any) -> dict[str, str]:
    """Kafka headers as a dict of text; undecodable values are replaced, never fatal."""
    return {name: bytes(value or b"").decode("utf-8", "replace") for name, value in headers or ()}


def from_kafka(value: bytes | None, attributes: Mapping[str, str]) -> Envelope:
    """The envelope in a Kafka record (its value and its headers as text, see `header_map`);
    `EventRejected` names what is wrong with a record that is not one."""
    for required in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "ce_unit"):
        if not attributes.get(required):
            raise EventRejected("missing_attribute", f"header {required} is missing")
    if attributes.get("ce_specversion") != SPEC_VERSION:
        raise EventRejected("unsupported_specversion", f"ce_specversion={attributes.get('ce_specversion')!r}")
    event_type = EVENT_TYPES.get(attributes["ce_type"])
    if event_type is None:
        raise EventRejected("unknown_type", f"ce_type={attributes['ce_type']!r}")
    version = attributes.get("ce_schemaversion", "1")
    if version != str(event_type.schema_version):
        raise EventRejected(
            "unknown_schema_version",
            f"{event_type.type_name()} schema version {version!r}; this service reads "
            f"{event_type.schema_version}",
        )
    try:
        data = event_type.model_validate_json(value or b"")
        time = datetime.fromisoformat(attributes["ce_time"])
    except (ValidationError, ValueError) as error:
        raise EventRejected("invalid_payload", _describe(error)) from error
    # Built with its checks: pydantic's validator does that faster than model_construct skips them.
    return Envelope(
        id=attributes["ce_id"],
        type=attributes["ce_type"],
        schema_version=int(version),
        time=time,
        source=attributes["ce_source"],
        unit=attributes["ce_unit"],
        subject=attributes["ce_subject"],
        correlation_id=attributes.get("ce_correlationid"),
        causation_id=attributes.get("ce_causationid"),
        data=data,
    )


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors()[:5]:
            where = ".".join(str(p) for p in item["loc"]) or "payload"
            parts.append(f"{where}: {item['msg']}")
        return "; ".join(parts)
    return str(error)
