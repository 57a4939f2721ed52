"""Idempotent, batched consumers with dead letters.

A service registers a handler per event type. Its consumer takes batches from Kafka and, in one
database transaction per batch (or per `transaction_seconds` of a long batch's work, half a second unless
configured):
- skips events its inbox already holds (a redelivery changes nothing, and is counted);
- applies each new event in its own savepoint and records it in the inbox; a handler written for many
  events at once (set-based: a few queries for hundreds of reports) gets each run of its events together,
  and when it fails on the run, each of them again alone, so one bad event still only dead-letters itself;
- sends records that can never be processed (not an event, unknown type or schema version, a broken
  rule, a handler that keeps failing on it) to `<topic>.dlq` through the outbox, with the reason;
- runs the service's end-of-batch steps (set-based work such as aggregation), then commits.
Offsets are committed only after that commit. A transient failure (the database away) rolls the
batch back and retries it with backoff; one poison record never blocks its partition.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import anyio
from sqlalchemy import exc as sa_exc

from shared.errors import EventRejected
from shared.events import EVENT_TYPES, Envelope, Event, from_kafka, header_map
from shared.metrics import Metrics
from shared.settings import TRANSACTION_SECONDS
from shared.storage import Database, InboxRecord, UnitOfWork, columns_in, insert_rows

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Envelope], None]
# Applies many events of its types at once; returns the events it refuses (by event id), with why.
BatchHandler = Callable[[UnitOfWork, list[Envelope]], dict[str, EventRejected]]
BatchStep = Callable[[UnitOfWork], None]
RejectionStep = Callable[[UnitOfWork, "Record", EventRejected], None]

# The database (or the network to it) is away: wait and try again, however long it takes.
TRANSIENT_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
)
# Any other error a handler raises is retried this many times, then the event goes to the DLQ.
MAX_HANDLER_ATTEMPTS = 3
INBOX_KEY = (InboxRecord.consumer, InboxRecord.event_id)


@dataclass(frozen=True)
class Record:
    """A Kafka record as the consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @classmethod
    def of(cls, raw: Any) -> Record:
        return cls(raw.topic, raw.partition, raw.offset, raw.key, raw.value, header_map(raw.headers))

    @property
    def event_id(self) -> str:
        """The CloudEvents id, or a digest of the record for one that has none."""
        if self.headers.get("ce_id"):
            return self.headers["ce_id"][:200]
        digest = hashlib.sha256((self.value or b"") + repr(sorted(self.headers.items())).encode())
        return f"sha256:{digest.hexdigest()}"

    @property
    def stream(self) -> str:
        return self.topic.rsplit(".", 1)[-1]


class EventHandlers:
    """What one service's consumer does with each type of event."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.batch_steps: list[BatchStep] = []
        self.rejection_steps: list[RejectionStep] = []

    def on(self, *event_types: type[Event]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                self.handlers[event_type.type_name()] = handler
            self.__dict__.pop("unused", None)
            return handler

        return register

    def on_many(self, *event_types: type[Event]) -> Callable[[BatchHandler], BatchHandler]:
        """Register a handler that applies a run of events of these types in one go."""

        def register(handler: BatchHandler) -> BatchHandler:
            for event_type in event_types:
                self.batch_handlers[event_type.type_name()] = handler
            self.__dict__.pop("unused", None)
            return handler

        return register

    def after_batch(self, step: BatchStep) -> BatchStep:
        self.batch_steps.append(step)
        return step

    def on_rejected(self, step: RejectionStep) -> RejectionStep:
        """A service's own record of a refused event, written with its dead letter."""
        self.rejection_steps.append(step)
        return step

    @property
    def streams(self) -> list[str]:
        return sorted({EVENT_TYPES[name].stream for name in [*self.handlers, *self.batch_handlers]})

    @cached_property  # dropped whenever a handler is registered
    def unused(self) -> frozenset[str]:
        """The known event types this service has no use for (a stream carries several types)."""
        return frozenset(EVENT_TYPES) - set(self.handlers) - set(self.batch_handlers)

    def reads(self, event_type: str | None) -> bool:
        """Whether records of this type (`ce_type`) are read: all but the known types this service has no
        use for, so that an unknown type, or none, is read to be dead-lettered."""
        return event_type not in self.unused

    def takes(self, headers: Any) -> bool:
        """Whether a Kafka record, by its raw headers, is of a type this service reads: a record it has no
        use for is passed over before anything of it is decoded."""
        for name, value in headers or ():
            if name == "ce_type":
                return self.reads(bytes(value or b"").decode("utf-8", "replace"))
        return True


def reports_for_others(envelopes: list[Envelope]) -> dict[str, EventRejected]:
    """Reports a unit sent for another unit: every consumer of reports refuses them as unauthorized, so a
    compromised producer changes nothing anywhere."""
    return {
        envelope.id: EventRejected("unauthorized", f"unit {envelope.unit} submitted a report for {unit_id}")
        for envelope in envelopes
        if envelope.unit != (unit_id := getattr(envelope.data, "unit_id", None))
    }


def _refuse_one(refused: dict[str, EventRejected], envelope: Envelope) -> None:
    if envelope.id in refused:
        raise refused[envelope.id]


class _RetryBatch(Exception):
    """Roll the batch back and try again after a pause."""


class BatchConsumer:
    """Applies batches of records for one consumer group, exactly once in effect."""

    def __init__(
        self,
        name: str,
        db: Database,
        handlers: EventHandlers,
        metrics: Metrics,
        retry_max_seconds: float = 30.0,
        transaction_seconds: float = TRANSACTION_SECONDS,
    ) -> None:
        self.name = name
        self.db = db
        self.handlers = handlers
        self.metrics = metrics
        self.retry_max_seconds = retry_max_seconds
        self.transaction_seconds = transaction_seconds
        self.stopping = threading.Event()
        self._attempts: dict[str, int] = {}
        metrics.init_consumer(name, handlers.streams)

    async def handle(self, records: list[Record]) -> None:
        if records:
            await anyio.to_thread.run_sync(self.process, records)

    def process(self, records: list[Record]) -> None:
        """Apply a batch; returns once all of it is committed. Raises only when the consumer is stopping.

        Events of a known type this service has no use for are passed over unread (the plans stream
        carries every unit's acknowledgement, which only the plans service counts)."""
        decoded: list[tuple[Record, Envelope | EventRejected]] = []
        for record in records:
            if not self.handlers.reads(record.headers.get("ce_type")):
                continue
            try:
                decoded.append((record, from_kafka(record.value, record.headers)))
            except EventRejected as rejection:
                decoded.append((record, rejection))
            except Exception as error:  # whatever a hostile record does, it must not jam the partition
                decoded.append((record, EventRejected("invalid_payload", f"{type(error).__name__}: {error}")))
        delay = 0.1
        seen: set[str] | None = None  # the events the inbox holds, read once for the parts of a long batch
        while decoded:  # until every part is applied (nothing this service reads: no transaction at all)
            started = time.perf_counter()
            try:
                applied, seen = self._apply(decoded, seen)
                self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)
                self._attempts.clear()
                decoded, delay = decoded[applied:], 0.1
            except (_RetryBatch, *TRANSIENT_ERRORS) as error:
                seen = None  # the part rolled back: what it applied is in the inbox no more
                self.metrics.consumer_retries.labels(self.name).inc()
                log.warning(
                    "batch retried",
                    extra={"consumer": self.name, "error": repr(error)[:300], "retry_in": delay},
                )
                if self.stopping.wait(delay):
                    raise RuntimeError(f"consumer {self.name} stopping with a batch not applied") from error
                delay = min(delay * 2, self.retry_max_seconds)

    def _apply(
        self, decoded: list[tuple[Record, Envelope | EventRejected]], seen: set[str] | None
    ) -> tuple[int, set[str]]:
        """Apply records from the first on in one transaction; returns how many (all of them, or fewer when
        the transaction has run for `transaction_seconds`) and the events the inbox now holds, of those the
        batch brought (`seen`, read here when None)."""
        started = time.perf_counter()
        applied = len(decoded)
        with self.db.transaction() as uow:
            if seen is None:
                seen = self._already_processed(uow, [record.event_id for record, _ in decoded])
            run: list[tuple[Record, Envelope]] = []
            run_handler: BatchHandler | None = None
            for position, (record, item) in enumerate(decoded):
                if position and time.perf_counter() - started >= self.transaction_seconds:
                    applied = position
                    break
                event_id = record.event_id
                if event_id in seen:
                    self.metrics.inbox_duplicates.labels(self.name).inc()
                    continue
                seen.add(event_id)
                many = (
                    None if isinstance(item, EventRejected) else self.handlers.batch_handlers.get(item.type)
                )
                if run and many is not run_handler:
                    self._apply_run(uow, run, run_handler)  # type: ignore[arg-type]
                    run = []
                if isinstance(item, EventRejected):
                    self._dead_letter(uow, record, item)
                    continue
                if many is not None:
                    run_handler = many
                    run.append((record, item))
                    continue
                self._apply_one(uow, record, item, self.handlers.handlers[item.type])
            if run:
                self._apply_run(uow, run, run_handler)  # type: ignore[arg-type]
            for step in self.handlers.batch_steps:
                step(uow)
        return applied, seen

    def _apply_run(self, uow: UnitOfWork, run: list[tuple[Record, Envelope]], handler: BatchHandler) -> None:
        """A run of events for a set-based handler: applied together in one savepoint, their inbox rows
        written in one statement; if the handler fails on the run, each event is tried alone."""
        session = uow.session
        try:
            with uow.savepoint():
                refused = handler(uow, [envelope for _, envelope in run])
                now = uow.clock.now()
                accepted = [envelope for _, envelope in run if envelope.id not in refused]
                inbox = [
                    {"consumer": self.name, "event_id": e.id, "outcome": "processed", "processed_at": now}
                    for e in accepted
                ]
                insert_rows(session, InboxRecord, inbox)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.warning("batch handler failed; applying its events one by one", exc_info=True)
            for record, envelope in run:
                self._apply_one(uow, record, envelope, lambda u, e: _refuse_one(handler(u, [e]), e))
            return
        applied: Counter[str] = Counter()
        for record, envelope in run:
            if envelope.id in refused:
                self._dead_letter(uow, record, refused[envelope.id])
            else:
                applied[envelope.type] += 1
        for event_type, count in applied.items():
            self.metrics.events_processed.labels(self.name, event_type).inc(count)

    def _apply_one(self, uow: UnitOfWork, record: Record, envelope: Envelope, handler: Handler) -> None:
        session = uow.session
        try:
            with uow.savepoint():
                handler(uow, envelope)
                session.add(self._inbox(uow, envelope.id, "processed"))
            self.metrics.events_processed.labels(self.name, envelope.type).inc()
            log.debug(
                "event applied",
                extra={
                    "consumer": self.name,
                    "event_id": envelope.id,
                    "correlation_id": envelope.correlation_id,
                },
            )
        except EventRejected as rejection:
            self._dead_letter(uow, record, rejection)
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:
            attempts = self._attempts.get(envelope.id, 0) + 1
            self._attempts[envelope.id] = attempts
            log.exception(
                "handler failed",
                extra={
                    "consumer": self.name,
                    "event_id": envelope.id,
                    "correlation_id": envelope.correlation_id,
                    "attempt": attempts,
                },
            )
            if attempts < MAX_HANDLER_ATTEMPTS:
                raise _RetryBatch(repr(error)) from error
            self._dead_letter(uow, record, EventRejected("handler_error", f"{type(error).__name__}: {error}"))

    def _dead_letter(self, uow: UnitOfWork, record: Record, rejection: EventRejected) -> None:
        uow.dead_letter(
            event_id=record.event_id,
            topic=record.topic,
            key=record.key,
            value=record.value,
            headers=record.headers,
            consumer=self.name,
            reason=rejection.reason,
            detail=rejection.detail,
            origin=f"{record.topic}/{record.partition}/{record.offset}",
        )
        uow.session.add(self._inbox(uow, record.event_id, "dead_letter"))
        for step in self.handlers.rejection_steps:
            step(uow, record, rejection)
        self.metrics.dead_letters.labels(self.name, record.stream, rejection.reason).inc()
        log.warning(
            "record dead-lettered",
            extra={
                "consumer": self.name,
                "event_id": record.event_id,
                "correlation_id": record.headers.get("ce_correlationid"),
                "reason": rejection.reason,
                "detail": rejection.detail[:300],
            },
        )

    def _already_processed(self, uow: UnitOfWork, ids: list[str]) -> set[str]:
        keys = {(self.name, event_id) for event_id in ids}
        return {row[0] for row in columns_in(uow.session, (InboxRecord.event_id,), INBOX_KEY, keys)}

    def _inbox(self, uow: UnitOfWork, event_id: str, outcome: str) -> InboxRecord:
        return InboxRecord(
            consumer=self.name, event_id=event_id, outcome=outcome, processed_at=uow.clock.now()
        )
