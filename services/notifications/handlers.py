"""Who is told what, when an event happens."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from services.notifications.models import Delivery
from shared.consumer import EventHandlers
from shared.events import (
    AwardDecided,
    AwardRevoked,
    Channel,
    Envelope,
    NominationForwarded,
    NominationMade,
    NotificationDelivered,
    PlanIssued,
    ReportOverdue,
    ReportReturned,
)
from shared.service import ServiceContext
from shared.storage import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    recipient_unit_id: str
    kind: str
    subject: str


def messages_for(envelope: Envelope) -> list[Message]:
    """The messages an event calls for (pure: the same event always gives the same messages)."""
    data = envelope.data
    if isinstance(data, PlanIssued):
        return [
            Message(target.unit_id, "plan_issued", f"Kế hoạch số {data.number}: {data.title}")
            for target in data.targets
        ]
    if isinstance(data, ReportOverdue):
        subject = f"Quá hạn báo cáo đợt {data.phase_seq} (hạn {data.due_on:%d/%m/%Y})"
        return [
            Message(data.unit_id, "reminder", subject),
            Message(data.parent_unit_id, "reminder", f"{subject}: đơn vị {data.unit_id}"),
        ]
    if isinstance(data, ReportReturned):
        subject = f"Báo cáo đợt {data.phase_seq} được trả lại để hoàn thiện: {data.reason}"
        return [Message(data.unit_id, "report_returned", subject)]
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


def delivery_id(event_id: str, recipient: str, channel: str) -> str:
    return hashlib.sha256(f"{event_id}|{recipient}|{channel}".encode()).hexdigest()[:32]


def build_handlers(ctx: ServiceContext) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on(
        PlanIssued,
        ReportOverdue,
        ReportReturned,
        NominationMade,
        NominationForwarded,
        AwardDecided,
        AwardRevoked,
    )
    def notify(uow: UnitOfWork, envelope: Envelope) -> None:
        for message in messages_for(envelope):
            channel = Channel.log
            key = delivery_id(envelope.id, message.recipient_unit_id, channel.value)
            if uow.session.get(Delivery, key) is not None:
                continue
            now = uow.clock.now()
            uow.session.add(
                Delivery(
                    id=key,
                    trigger_event_id=envelope.id,
                    trigger_type=envelope.type,
                    kind=message.kind,
                    recipient_unit_id=message.recipient_unit_id,
                    channel=channel.value,
                    state="sent",
                    subject=message.subject,
                    created_at=now,
                    sent_at=now,
                )
            )
            log.info(
                "notification",
                extra={
                    "event_id": envelope.id,
                    "correlation_id": envelope.correlation_id,
                    "recipient": message.recipient_unit_id,
                    "kind": message.kind,
                    "channel": channel.value,
                },
            )
            ctx.metrics.notifications.labels(channel.value, "sent").inc()
            uow.publish(
                NotificationDelivered(
                    delivery_id=key,
                    trigger_event_id=envelope.id,
                    trigger_type=envelope.type,
                    recipient_unit_id=message.recipient_unit_id,
                    channel=channel,
                    at=now,
                ),
                unit=message.recipient_unit_id,
                causation=envelope,
            )

    return handlers
