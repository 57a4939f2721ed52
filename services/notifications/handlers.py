"""Who is told what, when an event happens; reminders before deadlines; sending, retrying, giving up."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session, col, select

from services.notifications import channels, domain
from services.notifications.models import Contact, Delivery, Expectation, PlanCopy, Preference
from shared.clock import LOCAL_TZ
from shared.consumer import EventHandlers, reports_for_others
from shared.documents import document_id_of, plan_package
from shared.documents.edxml import Organ, write_package
from shared.documents.paper import ParentPlan, PlanDocument, docx_name, file_stem, render_plan_docx
from shared.errors import EventRejected
from shared.events import (
    AwardDecided,
    AwardRevoked,
    Channel,
    Envelope,
    NominationForwarded,
    NominationMade,
    NotificationDelivered,
    NotificationFailed,
    OrgUnitMoved,
    OrgUnitRegistered,
    PhaseClosed,
    PlanAmended,
    PlanIssued,
    PlanRescheduled,
    PlanRevoked,
    ReportOverdue,
    ReportReturned,
    ReportSubmitted,
)
from shared.ids import new_id
from shared.service import ServiceContext
from shared.settings import Settings
from shared.storage import UnitOfWork, columns_in, insert_rows, rows_in, update_rows

log = logging.getLogger(__name__)
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # plain-text mail
    auto_reload=False,  # the templates ship with the service: not looked at again for every message
)
CLAIM = timedelta(minutes=5)  # a delivery being sent is someone's for this long
DISPATCH_BATCH = 200


@dataclass(frozen=True)
class Message:
    recipient_unit_id: str
    kind: str
    subject: str
    lines: tuple[str, ...] = ()
    plan_id: str | None = None  # the plan whose DOCX goes with a document (plan_issued, plan_amended)


def plan_subject(plan: PlanIssued) -> str:
    return f"Kế hoạch số {plan.number}: {plan.title}"


def plan_recipients(plan: PlanIssued) -> list[str]:
    """Units a plan goes to: those executing it, and the units above named in Nơi nhận."""
    units = [target.unit_id for target in plan.targets]
    units += [r.unit_id for r in plan.recipients if r.unit_id and r.purpose != "archive"]
    return list(dict.fromkeys(units))


def messages_for(envelope: Envelope, session: Session) -> list[Message]:
    """The messages an event calls for."""
    data = envelope.data
    if isinstance(data, PlanIssued):
        dues = [f"{p.label}: báo cáo trước ngày {p.report_due:%d/%m/%Y}" for p in data.phases if p.report_due]
        return [
            Message(unit, "plan_issued", plan_subject(data), tuple(dues), data.plan_id)
            for unit in plan_recipients(data)
        ]
    if isinstance(data, PlanAmended | PlanRevoked):
        copy = session.get(PlanCopy, data.plan_id)
        if copy is None:
            return []
        plan = PlanIssued.model_validate(copy.event)
        if isinstance(data, PlanAmended):
            subject = f"Điều chỉnh kế hoạch số {plan.number} (lần {data.version}): {data.title}"
            lines = (f"Nội dung điều chỉnh: {', '.join(data.changed)}", f"Lý do: {data.reason}")
            return [Message(u, "plan_amended", subject, lines, data.plan_id) for u in plan_recipients(plan)]
        subject = f"Thu hồi kế hoạch số {plan.number}: {plan.title}"
        return [
            Message(u, "plan_revoked", subject, (f"Lý do: {data.reason}",)) for u in plan_recipients(plan)
        ]
    if isinstance(data, PhaseClosed):
        return report_requests(session, data)
    if isinstance(data, ReportOverdue):
        subject = f"Quá hạn báo cáo đợt {data.phase_seq} (hạn {data.due_on:%d/%m/%Y})"
        return [
            Message(data.unit_id, "overdue", subject),
            Message(data.parent_unit_id, "overdue", f"{subject}: đơn vị {data.unit_id}"),
        ]
    if isinstance(data, ReportReturned):
        subject = f"Báo cáo đợt {data.phase_seq} được trả lại để hoàn thiện: {data.reason}"
        return [Message(data.unit_id, "report_returned", subject, (f"Lý do: {data.reason}",))]
    if isinstance(data, NominationForwarded):
        return [
            Message(data.to_unit_id, "nomination", f"Đề nghị khen thưởng do {data.from_unit_id} chuyển lên")
        ]
    if isinstance(data, AwardDecided):
        subject = f"Quyết định khen thưởng số {data.decision_number}: {data.nominee_name}"
        return [Message(data.unit_id, "award_decided", subject)]
    if isinstance(data, AwardRevoked):
        subject = f"Thu hồi khen thưởng (quyết định số {data.decision_number}): {data.reason}"
        return [Message(data.unit_id, "award_revoked", subject)]
    if isinstance(data, NominationMade):
        return [
            Message(data.to_unit_id, "nomination", f"Đề nghị khen thưởng: {data.nominee_name} — {data.award}")
        ]
    return []


def report_requests(session: Session, closed: PhaseClosed) -> list[Message]:
    """A phase has closed: each unit that owes its report is asked for it, with the due date."""
    copy = session.get(PlanCopy, closed.plan_id)
    if copy is None or copy.revoked:
        return []
    number, title = copy.event["number"], copy.event["title"]  # the copy is a PlanIssued, as stored
    # Found by the plan's key and filtered here: SQLite would otherwise pick the index on `reported`
    # and read every unreported expectation of every plan, for each phase that closes.
    expected = session.exec(
        select(Expectation.unit_id, Expectation.due_on, Expectation.reported).where(
            Expectation.plan_id == closed.plan_id, Expectation.phase_seq == closed.phase_seq
        )
    ).all()
    messages = []
    for unit_id, due_on, reported in expected:
        if reported:
            continue
        due = f"trước ngày {due_on:%d/%m/%Y}" if due_on else "theo quy định"
        subject = f"Đề nghị báo cáo kết quả đợt {closed.phase_seq}, kế hoạch số {number} ({due})"
        messages.append(Message(unit_id, "report_request", subject, (title,), closed.plan_id))
    return messages


# ------------------------------------------------------------------ queueing


def configured_channels(settings: Settings) -> set[str]:
    found = {"paper", "log"}
    if settings.smtp_host:
        found.add("email")
    if settings.ioffice_url:
        found.add("ioffice")
    return found


def preference(session: Session, unit_id: str, settings: Settings) -> Preference:
    return session.get(Preference, unit_id) or Preference(unit_id=unit_id, digest=settings.reminder_digest)


@dataclass(frozen=True)
class Reach:
    """How a unit is reached: what queueing a message to it asks of its contact."""

    name: str
    email: str | None
    has_ioffice: bool

    @classmethod
    def of(cls, contact: Contact | None) -> Reach | None:
        return cls(contact.name, contact.email, contact.has_ioffice) if contact else None


REACH_COLUMNS = (Contact.unit_id, Contact.name, Contact.email, Contact.has_ioffice)


# Where a unit's name and a delivery's id go in a body rendered once for all the recipients of a message.
UNIT_MARK, DELIVERY_MARK = "\x00unit_name\x00", "\x00delivery_id\x00"


@dataclass
class Letters:
    """The bodies of one fan-out. The template is rendered once for what all recipients of a message share,
    with marks where each unit's name and each delivery's id go; a body is then that text with the marks
    replaced. The first body is rendered in full as well, and the marks are used only when they give the
    same text (a template that does more with the name than print it is rendered for every message)."""

    marked: dict[tuple[Any, ...], str | None] = field(default_factory=dict)

    def body(
        self, unit_name: str, subject: str, lines: tuple[str, ...], attachment: str | None, delivery_id: str
    ) -> str:
        shared = (subject, lines, attachment)
        if shared in self.marked:
            marked = self.marked[shared]
            if marked is not None:
                return marked.replace(UNIT_MARK, unit_name).replace(DELIVERY_MARK, delivery_id)
        body = render_message(unit_name, subject, lines, attachment, delivery_id)
        if shared not in self.marked:
            marked = render_message(UNIT_MARK, subject, lines, attachment, DELIVERY_MARK)
            same = marked.replace(UNIT_MARK, unit_name).replace(DELIVERY_MARK, delivery_id) == body
            self.marked[shared] = marked if same else None
        return body


def render_message(
    unit_name: str, subject: str, lines: tuple[str, ...], attachment: str | None, delivery_id: str
) -> str:
    return TEMPLATES.get_template("message.txt.j2").render(
        unit_name=unit_name, subject=subject, lines=lines, attachment=attachment, delivery_id=delivery_id
    )


@dataclass(frozen=True)
class Routes:
    """The channel settings every message of a fan-out is routed by, read once."""

    optional_kinds: frozenset[str]
    document_channels: tuple[str, ...]
    message_channels: tuple[str, ...]
    configured: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> Routes:
        return cls(
            frozenset(settings.listed(settings.optional_kinds)),
            tuple(settings.listed(settings.document_channels)),
            tuple(settings.listed(settings.message_channels)),
            frozenset(configured_channels(settings)),
        )


@dataclass
class Known:
    """What queueing one event's fan-out needs, read for all its recipients at once (an event to 200 units
    is a few queries, not 600): their contacts and preferences, which deliveries the event has already,
    and the plans; and what is the same for every message: the time, the channel settings, the bodies'
    shared text."""

    contacts: dict[str, Reach | None]
    preferences: dict[str, Preference | None]
    existing: set[tuple[str, str]]  # the recipients and channels the trigger has deliveries to already
    copies: dict[str, PlanCopy | None]
    now: datetime
    routes: Routes
    queued: list[dict[str, Any]] = field(default_factory=list)  # deliveries not written yet
    letters: Letters = field(default_factory=Letters)

    def copy(self, session: Session, plan_id: str) -> PlanCopy | None:
        if plan_id not in self.copies:
            self.copies[plan_id] = session.get(PlanCopy, plan_id)
        return self.copies[plan_id]

    def contact(self, session: Session, unit_id: str) -> Reach | None:
        if unit_id in self.contacts:
            return self.contacts[unit_id]
        return Reach.of(session.get(Contact, unit_id))

    def preference(self, session: Session, unit_id: str, settings: Settings) -> Preference:
        found = self.preferences[unit_id] if unit_id in self.preferences else session.get(Preference, unit_id)
        return found or Preference(unit_id=unit_id, digest=settings.reminder_digest)


def write_queued(uow: UnitOfWork, known: Known) -> None:
    """Write the deliveries a fan-out queued in one insert, and tell of those already done (the delivery
    log) in one more."""
    if not known.queued:
        return
    insert_rows(uow.session, Delivery, known.queued)
    done = [row for row in known.queued if row["state"] == "sent"]
    now = uow.clock.now()
    uow.publish_many(
        [delivery_event(row, now) for row in done],
        units=[row["recipient_unit_id"] for row in done],
    )
    known.queued.clear()


def known_for(uow: UnitOfWork, trigger_id: str, messages: list[Message], settings: Settings) -> Known:
    """Read, in a few queries, what queueing `messages` for `trigger_id` will ask about."""
    session = uow.session
    units = {message.recipient_unit_id for message in messages}
    contacts = {
        unit_id: Reach(name, email, has_ioffice)
        for unit_id, name, email, has_ioffice in columns_in(session, REACH_COLUMNS, Contact.unit_id, units)
    }
    preferences = {p.unit_id: p for p in rows_in(session, Preference.unit_id, units)}
    # The trigger's deliveries, found through the once-per-recipient-and-channel key it leads.
    existing = {
        (recipient, channel)
        for recipient, channel in session.exec(
            select(Delivery.recipient_unit_id, Delivery.channel).where(
                Delivery.trigger_event_id == trigger_id
            )
        )
    }
    return Known(
        contacts={unit: contacts.get(unit) for unit in units},
        preferences={unit: preferences.get(unit) for unit in units},
        existing=existing,
        copies={},
        now=uow.clock.now(),
        routes=Routes.of(settings),
    )


def enqueue(
    ctx: ServiceContext,
    uow: UnitOfWork,
    trigger_id: str,
    trigger_type: str,
    message: Message,
    body: str | None = None,
    after: str | None = None,
    known: Known | None = None,
) -> dict[str, Any] | None:
    """Queue a message on the first channel that reaches its recipient (after `after`, when falling back),
    once: a second call for the same trigger, recipient and channel does nothing. Reminders wait out the
    quiet hours. Another system's webhook, when configured, is told too.

    With `known` (a fan-out), the delivery is written by `write_queued` with the others; without, now."""
    settings, session = ctx.settings, uow.session
    if known is None:
        known = known_for(uow, trigger_id, [message], settings)
        queued = enqueue(ctx, uow, trigger_id, trigger_type, message, body, after, known)
        write_queued(uow, known)
        return queued
    routes = known.routes
    if (
        message.kind in routes.optional_kinds
        and message.kind in known.preference(session, message.recipient_unit_id, settings).opted_out
    ):
        return None
    contact = known.contact(session, message.recipient_unit_id)
    kind_order = (
        routes.document_channels if message.kind in domain.DOCUMENT_KINDS else routes.message_channels
    )
    channel = domain.choose_channel(
        kind_order,
        contact.email if contact else None,
        contact.has_ioffice if contact else False,
        routes.configured,
        after,
    )
    if channel is None:
        return None
    delivery = queue_on(ctx, uow, trigger_id, trigger_type, message, channel, contact, body, known)
    if after is None and settings.webhook_url:
        queue_on(ctx, uow, trigger_id, trigger_type, message, Channel.webhook.value, contact, body, known)
    return delivery


def queue_on(
    ctx: ServiceContext,
    uow: UnitOfWork,
    trigger_id: str,
    trigger_type: str,
    message: Message,
    channel: str,
    contact: Reach | None,
    body: str | None,
    known: Known,
) -> dict[str, Any] | None:
    if (message.recipient_unit_id, channel) in known.existing:
        return None
    known.existing.add((message.recipient_unit_id, channel))
    key = new_id()
    now = known.now
    wait = None
    if message.kind in domain.REMINDER_KINDS:
        quiet = domain.quiet_until(
            now.astimezone(LOCAL_TZ), domain.parse_quiet_hours(ctx.settings.quiet_hours)
        )
        wait = quiet.astimezone(now.tzinfo) if quiet else None  # stored as the clock gives time: in UTC
    copy = known.copy(uow.session, message.plan_id) if message.plan_id else None
    document = message.kind in domain.DOCUMENT_KINDS and copy is not None
    attachment = docx_name(copy.event["number"]) if document and copy else None
    if body is not None:  # a body of its own (a digest) has a mark where the delivery's id goes
        body = body.replace(DELIVERY_MARK, key)
    else:
        name = contact.name if contact else message.recipient_unit_id
        body = known.letters.body(name, message.subject, message.lines, attachment, key)
    logged = channel == Channel.log.value and wait is None  # the delivery log is the message: nothing to send
    delivery = {
        "id": key,
        "trigger_event_id": trigger_id,
        "trigger_type": trigger_type,
        "kind": message.kind,
        "recipient_unit_id": message.recipient_unit_id,
        "channel": channel,
        "state": "sent" if logged else "queued",
        "subject": message.subject[:1000],
        "body": body,
        "plan_id": message.plan_id if document else None,
        "attempts": 0,
        "next_attempt_at": None if logged else wait or now,
        "claimed_until": None,
        "last_error": "",
        "external_status": "",
        "created_at": now,
        "sent_at": now if logged else None,
    }
    known.queued.append(delivery)
    ctx.metrics.notifications.labels(channel, delivery["state"]).inc()
    return delivery


def delivery_event(
    delivery: dict[str, Any], at: datetime, error: str | None = None
) -> NotificationDelivered | NotificationFailed:
    """What the other services are told of a delivery that is done: delivered, or failed with why."""
    fields = {
        "delivery_id": delivery["id"],
        "trigger_event_id": delivery["trigger_event_id"],
        "trigger_type": delivery["trigger_type"],
        "recipient_unit_id": delivery["recipient_unit_id"],
        "channel": Channel(delivery["channel"]),
        "at": at,
    }
    return NotificationFailed(**fields, error=error) if error else NotificationDelivered(**fields)


def delivered(uow: UnitOfWork, delivery: Delivery, error: str | None = None) -> None:
    """Tell the other services a delivery is done: NotificationDelivered, or NotificationFailed with why."""
    fields = {"id", "trigger_event_id", "trigger_type", "recipient_unit_id", "channel"}
    event = delivery_event(delivery.model_dump(include=fields), uow.clock.now(), error)
    uow.publish(event, unit=delivery.recipient_unit_id)


# ------------------------------------------------------------------ what the service remembers


def remember_plan(session: Session, plan: PlanIssued) -> None:
    session.merge(PlanCopy(plan_id=plan.plan_id, event=plan.model_dump(mode="json")))
    known = set(
        session.exec(
            select(Expectation.phase_seq, Expectation.unit_id).where(Expectation.plan_id == plan.plan_id)
        ).all()
    )
    owed = [
        {
            "plan_id": plan.plan_id,
            "phase_seq": phase.seq,
            "unit_id": target.unit_id,
            "due_on": phase.report_due,
            "reported": False,
            "reminded_at_lead": None,
        }
        for target in plan.targets
        for phase in plan.phases
        if (phase.seq, target.unit_id) not in known
    ]
    if owed:
        insert_rows(session, Expectation, owed)


def replan(session: Session, plan_id: str, phases: list[Any], changes: dict[str, Any]) -> None:
    """New dates for a plan's phases (rescheduled or amended): its copy and the reports owed follow."""
    copy = session.get(PlanCopy, plan_id)
    if copy is None:
        return
    event = dict(copy.event)
    event.update(changes)
    event["phases"] = [phase.model_dump(mode="json") for phase in phases]
    copy.event = event
    session.add(copy)
    dues = {phase.seq: phase.report_due for phase in phases}
    for expectation in session.exec(select(Expectation).where(Expectation.plan_id == plan_id)):
        if expectation.phase_seq in dues and expectation.due_on != dues[expectation.phase_seq]:
            expectation.due_on, expectation.reminded_at_lead = dues[expectation.phase_seq], None
            session.add(expectation)


def build_handlers(ctx: ServiceContext) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on_many(OrgUnitRegistered)
    def register_contacts(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
        units = [envelope.data.unit for envelope in envelopes]  # type: ignore[attr-defined]
        known = {c.unit_id: c for c in rows_in(uow.session, Contact.unit_id, [unit.id for unit in units])}
        for unit in units:
            contact = known.get(unit.id) or Contact(unit_id=unit.id, name=unit.name)
            contact.name, contact.parent_id = unit.name, unit.parent_id
            contact.email, contact.has_ioffice = unit.email, unit.has_ioffice
            known[unit.id] = contact
            uow.session.add(contact)
        return {}

    @handlers.on(OrgUnitMoved)
    def move_contact(uow: UnitOfWork, envelope: Envelope) -> None:
        contact = uow.session.get(Contact, envelope.data.unit_id)
        if contact is not None:
            contact.parent_id = envelope.data.new_parent_id
            uow.session.add(contact)

    @handlers.on(PlanRescheduled)
    def rescheduled(uow: UnitOfWork, envelope: Envelope) -> None:
        replan(uow.session, envelope.data.plan_id, envelope.data.phases, {})

    @handlers.on_many(ReportSubmitted)
    def reported(uow: UnitOfWork, envelopes: list[Envelope]) -> dict[str, EventRejected]:
        """Units that reported are not reminded: a batch of reports in one update."""
        refused = reports_for_others(envelopes)
        envelopes = [e for e in envelopes if e.id not in refused]
        keys = {(e.data.plan_id, e.data.phase_seq, e.data.unit_id) for e in envelopes}  # type: ignore[attr-defined]
        key = ("plan_id", "phase_seq", "unit_id")
        reported = [dict(zip(key, k, strict=True)) | {"reported": True} for k in sorted(keys)]
        update_rows(uow.session, Expectation, key, reported, col(Expectation.reported).is_(False))
        return refused

    @handlers.on(
        PlanIssued,
        PlanAmended,
        PlanRevoked,
        PhaseClosed,
        ReportOverdue,
        ReportReturned,
        NominationMade,
        NominationForwarded,
        AwardDecided,
        AwardRevoked,
    )
    def notify(uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        if isinstance(data, PlanIssued):
            remember_plan(uow.session, data)
        elif isinstance(data, PlanAmended):
            changes = {"title": data.title, "deadlines": [d.model_dump(mode="json") for d in data.deadlines]}
            if data.award_quota:
                changes["award_quota"] = data.award_quota.model_dump(mode="json")
            replan(uow.session, data.plan_id, data.phases, changes)
        messages = messages_for(envelope, uow.session)
        known = known_for(uow, envelope.id, messages, ctx.settings)
        for message in messages:
            enqueue(ctx, uow, envelope.id, envelope.type, message, known=known)
        write_queued(uow, known)
        if isinstance(data, PlanRevoked):
            copy = uow.session.get(PlanCopy, data.plan_id)
            if copy is not None:
                copy.revoked = True
                uow.session.add(copy)

    return handlers


# ------------------------------------------------------------------ reminders (a periodic step)


def send_reminders(ctx: ServiceContext) -> int:
    """Remind each unit that has not reported, at the configured days before each deadline: one message a
    day per unit when it digests them. Catches up on a reminder missed while the service was down."""
    settings = ctx.settings
    leads = sorted(int(day) for day in settings.listed(settings.reminder_days))
    if not leads:
        return 0
    today = ctx.clock.now().astimezone(LOCAL_TZ).date()
    created = 0
    with ctx.db.transaction() as uow:
        session = uow.session
        owing = session.exec(
            select(Expectation)
            .where(
                col(Expectation.reported).is_(False),
                col(Expectation.due_on) > today,
                col(Expectation.due_on) <= today + timedelta(days=max(leads)),
            )
            .order_by(col(Expectation.unit_id), col(Expectation.due_on))
        ).all()
        by_unit: dict[str, list[tuple[Expectation, int, PlanIssued]]] = {}
        plans: dict[str, PlanIssued | None] = {}  # each plan read once, however many units owe on it
        for expectation in owing:
            assert expectation.due_on is not None
            lead = domain.reminder_lead(expectation.due_on, today, leads, expectation.reminded_at_lead)
            if lead is None:
                continue
            if expectation.plan_id not in plans:
                copy = session.get(PlanCopy, expectation.plan_id)
                plans[expectation.plan_id] = (
                    None if copy is None or copy.revoked else PlanIssued.model_validate(copy.event)
                )
            plan = plans[expectation.plan_id]
            if plan is None:
                continue
            expectation.reminded_at_lead = lead
            session.add(expectation)
            by_unit.setdefault(expectation.unit_id, []).append((expectation, lead, plan))
        for unit_id, items in by_unit.items():
            created += remind_unit(ctx, uow, unit_id, items, today)
    return created


def reminder_line(expectation: Expectation, lead: int, plan: PlanIssued) -> str:
    return (
        f"Báo cáo đợt {expectation.phase_seq}, kế hoạch số {plan.number} — hạn {expectation.due_on:%d/%m/%Y} "
        f"(còn {lead} ngày)"
    )


def remind_unit(
    ctx: ServiceContext,
    uow: UnitOfWork,
    unit_id: str,
    items: list[tuple[Expectation, int, PlanIssued]],
    today: date,
) -> int:
    contact = uow.session.get(Contact, unit_id)
    if preference(uow.session, unit_id, ctx.settings).digest and len(items) > 1:
        keys = "|".join(f"{e.plan_id}:{e.phase_seq}:{lead}" for e, lead, _ in items)
        trigger = f"reminders:{unit_id}:{today.isoformat()}:{hashlib.sha256(keys.encode()).hexdigest()[:12]}"
        lines = [reminder_line(e, lead, plan) for e, lead, plan in items]
        subject = f"Nhắc gửi {len(items)} báo cáo sắp đến hạn"
        body = TEMPLATES.get_template("digest.txt.j2").render(
            unit_name=contact.name if contact else unit_id, items=lines, delivery_id=DELIVERY_MARK
        )
        return int(
            enqueue(ctx, uow, trigger, "Reminder", Message(unit_id, "reminder", subject, tuple(lines)), body)
            is not None
        )
    created = 0
    for expectation, lead, plan in items:
        trigger = f"reminder:{expectation.plan_id}:{expectation.phase_seq}:{unit_id}:{lead}"
        subject = f"Nhắc báo cáo: {reminder_line(expectation, lead, plan)}"
        created += (
            enqueue(ctx, uow, trigger, "Reminder", Message(unit_id, "reminder", subject, (plan.title,)))
            is not None
        )
    return created


# ------------------------------------------------------------------ sending (a periodic step)


def claim(ctx: ServiceContext) -> list[Delivery]:
    """Deliveries due now, claimed for this instance for a while (several instances never send one twice
    at once; a claim left by an instance that died expires)."""
    now = ctx.clock.now()
    with ctx.db.transaction() as uow:
        due = uow.session.exec(
            select(Delivery)
            .where(
                col(Delivery.state).in_(("queued", "failed")),
                col(Delivery.next_attempt_at) <= now,
                (col(Delivery.claimed_until).is_(None)) | (col(Delivery.claimed_until) < now),
            )
            .order_by(col(Delivery.next_attempt_at))
            .limit(DISPATCH_BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        for delivery in due:
            delivery.claimed_until = now + CLAIM
            delivery.attempts += 1
            uow.session.add(delivery)
        claimed = [Delivery.model_validate(d.model_dump()) for d in due]
    return claimed


def plan_document(session: Session, plan_id: str) -> PlanDocument | None:
    copy = session.get(PlanCopy, plan_id)
    if copy is None:
        return None
    plan = PlanIssued.model_validate(copy.event)
    issuer = session.get(Contact, plan.issuer_unit_id)
    superior = session.get(Contact, issuer.parent_id) if issuer and issuer.parent_id else None
    parent_copy = session.get(PlanCopy, plan.parent_plan_id) if plan.parent_plan_id else None
    parent = None
    if parent_copy is not None:
        above = PlanIssued.model_validate(parent_copy.event)
        above_issuer = session.get(Contact, above.issuer_unit_id)
        parent = ParentPlan(
            number=above.number,
            issued_on=above.issued_on,
            issuer_name=above_issuer.name if above_issuer else above.issuer_unit_id,
        )
    return PlanDocument(
        plan=plan,
        issuer_name=issuer.name if issuer else plan.issuer_unit_id,
        superior_name=superior.name if superior else None,
        parent=parent,
    )


@dataclass
class Prepared:
    """A claimed delivery with what it needs to go out."""

    delivery: Delivery
    contact: Contact | None
    attachment: channels.Attachment | None = None
    package: bytes | None = None


def prepare(ctx: ServiceContext, claimed: list[Delivery]) -> list[Prepared]:
    """Read the contacts and render each plan's DOCX (once per plan) and edXML packages."""
    prepared = []
    docx: dict[str, tuple[PlanDocument, channels.Attachment] | None] = {}
    with ctx.db.reading() as session:
        for delivery in claimed:
            contact = session.get(Contact, delivery.recipient_unit_id)
            item = Prepared(delivery, contact)
            if delivery.plan_id:
                if delivery.plan_id not in docx:
                    document = plan_document(session, delivery.plan_id)
                    docx[delivery.plan_id] = (
                        (
                            document,
                            channels.Attachment(docx_name(document.plan.number), render_plan_docx(document)),
                        )
                        if document
                        else None
                    )
                found = docx[delivery.plan_id]
                if found:
                    document, item.attachment = found
                    if delivery.channel == Channel.ioffice.value:
                        item.package = ioffice_package(session, document, delivery, contact)
            prepared.append(item)
    return prepared


def ioffice_package(
    session: Session, document: PlanDocument, delivery: Delivery, contact: Contact | None
) -> bytes:
    plan = document.plan
    issuer = session.get(Contact, plan.issuer_unit_id)
    parent_copy = session.get(PlanCopy, plan.parent_plan_id) if plan.parent_plan_id else None
    parent_id = None
    if parent_copy is not None:
        above = PlanIssued.model_validate(parent_copy.event)
        parent_id = document_id_of(above.issuer_unit_id, above.issued_on, above.number)
    package = plan_package(
        document,
        Organ(
            organ_id=plan.issuer_unit_id,
            organ_name=document.issuer_name,
            email=(issuer.email if issuer else None) or "",
        ),
        Organ(
            organ_id=delivery.recipient_unit_id,
            organ_name=contact.name if contact else delivery.recipient_unit_id,
            email=(contact.email if contact else None) or "",
        ),
        parent_id,
    )
    return write_package(package)


async def send(settings: Settings, item: Prepared) -> channels.Outcome:
    delivery, contact = item.delivery, item.contact
    if delivery.channel == Channel.email.value:
        if not contact or not contact.email:
            return channels.Outcome("bounced", "the unit has no email address")
        return await channels.send_email(
            settings, contact.email, delivery.subject, delivery.body, delivery.id, item.attachment
        )
    if delivery.channel == Channel.ioffice.value:
        if item.package is None:
            return channels.Outcome("bounced", "no plan to send through iOffice")
        return await asyncio.to_thread(channels.post_ioffice, settings, item.package, delivery.id)
    if delivery.channel == Channel.webhook.value:
        payload = {
            "delivery_id": delivery.id,
            "kind": delivery.kind,
            "recipient_unit_id": delivery.recipient_unit_id,
            "subject": delivery.subject,
            "body": delivery.body,
            "trigger_event_id": delivery.trigger_event_id,
            "trigger_type": delivery.trigger_type,
        }
        return await asyncio.to_thread(channels.post_webhook, settings, payload, delivery.id)
    if delivery.channel == Channel.log.value:  # held through the quiet hours; the log is the message
        return channels.Outcome("sent")
    return channels.Outcome("failed", f"no sender for channel {delivery.channel}")


async def send_all(settings: Settings, items: list[Prepared]) -> list[channels.Outcome]:
    limit = asyncio.Semaphore(10)

    async def one(item: Prepared) -> channels.Outcome:
        async with limit:
            try:
                return await send(settings, item)
            except Exception as error:  # one broken delivery must not hold up the others
                log.exception("sending failed", extra={"delivery_id": item.delivery.id})
                return channels.Outcome("failed", f"{type(error).__name__}: {error}"[:500])

    return await asyncio.gather(*(one(item) for item in items))


def print_batches(ctx: ServiceContext, items: list[Prepared]) -> list[tuple[Prepared, channels.Outcome]]:
    """Paper: one print batch per dispatch (the trigger), a copy per unit and the cover list."""
    done = []
    by_trigger: dict[str, list[Prepared]] = {}
    for item in items:
        by_trigger.setdefault(item.delivery.trigger_event_id, []).append(item)
    for trigger, group in by_trigger.items():
        first = group[0].delivery
        stamp = first.created_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d")
        folder = ctx.settings.paper_path / f"{stamp}_{file_stem(first.subject[:40])}_{trigger[:8]}"
        existing = folder / "danh-sach-gui.csv"
        copies = [
            channels.PaperCopy(
                i.delivery.id, i.delivery.recipient_unit_id, i.contact.name if i.contact else ""
            )
            for i in group
        ]
        if (
            existing.exists()
        ):  # a batch already written for this dispatch: add to it, keeping the earlier copies
            copies = channels.copies_in(existing, {c.delivery_id for c in copies}) + copies
        try:
            written = channels.write_paper_batch(
                folder, first.subject, group[0].attachment, copies, first.body
            )
        except OSError as error:
            done += [(item, channels.Outcome("failed", f"print batch: {error}"[:500])) for item in group]
            continue
        done += [(item, channels.Outcome("sent", external_status=str(written))) for item in group]
    return done


def dispatch(ctx: ServiceContext) -> int:
    """Send what is due: email, iOffice, webhook and print batches; record each outcome, retry with backoff,
    give up after the configured attempts (dead), fall back to the next channel for plans."""
    claimed = claim(ctx)
    if not claimed:
        return 0
    items = prepare(ctx, claimed)
    paper = [item for item in items if item.delivery.channel == Channel.paper.value]
    others = [item for item in items if item.delivery.channel != Channel.paper.value]
    results = print_batches(ctx, paper)
    if others:
        results += list(zip(others, asyncio.run(send_all(ctx.settings, others)), strict=True))
    with ctx.db.transaction() as uow:
        for item, outcome in results:
            record(ctx, uow, item.delivery.id, outcome)
    return len(results)


def record(ctx: ServiceContext, uow: UnitOfWork, key: str, outcome: channels.Outcome) -> None:
    delivery = uow.session.get(Delivery, key)
    if delivery is None or delivery.state not in ("queued", "failed"):
        return
    settings, now = ctx.settings, uow.clock.now()
    delivery.claimed_until, delivery.last_error = None, outcome.error
    delivery.external_status = outcome.external_status or delivery.external_status
    if outcome.state == "sent":
        delivery.state = "to_be_posted" if delivery.channel == Channel.paper.value else "sent"
        delivery.sent_at, delivery.next_attempt_at = now, None
        delivered(uow, delivery)
    elif outcome.state == "failed" and delivery.attempts < settings.notify_max_attempts:
        delivery.state = "failed"
        delivery.next_attempt_at = now + domain.backoff(
            delivery.attempts, settings.notify_backoff_seconds, settings.notify_backoff_max_seconds
        )
    else:
        delivery.state = "bounced" if outcome.state == "bounced" else "dead"
        delivery.next_attempt_at = None
        delivered(uow, delivery, error=outcome.error or delivery.state)
        if delivery.channel != Channel.webhook.value:  # a plan must still reach the unit: the next channel
            message = Message(
                delivery.recipient_unit_id, delivery.kind, delivery.subject, plan_id=delivery.plan_id
            )
            enqueue(
                ctx,
                uow,
                delivery.trigger_event_id,
                delivery.trigger_type,
                message,
                delivery.body,
                after=delivery.channel,
            )
    uow.session.add(delivery)
    ctx.metrics.notifications.labels(delivery.channel, delivery.state).inc()
    log.info(
        "notification",
        extra={
            "delivery_id": key,
            "channel": delivery.channel,
            "state": delivery.state,
            "attempt": delivery.attempts,
        },
    )


def mark_posted(uow: UnitOfWork, key: str) -> Delivery | None:
    delivery = uow.session.get(Delivery, key)
    if delivery is None or delivery.state != "to_be_posted":
        return delivery
    delivery.state = "posted"
    uow.session.add(delivery)
    return delivery
