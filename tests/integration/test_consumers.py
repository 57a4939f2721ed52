"""Consumers over the real broker: a redelivered event changes nothing; a poison record goes to the
dead-letter topic while the records behind it on the same partition are applied."""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from services.notifications.handlers import remember_plan, report_requests
from services.notifications.models import Expectation
from services.reporting.models import ReportVersion, UnitContribution
from services.runtime import DEFINITIONS, Runtime, create_app
from shared import storage
from shared.clock import ManualClock
from shared.consumer import MAX_HANDLER_ATTEMPTS, BatchConsumer, EventHandlers, Record
from shared.events import (
    Envelope,
    Indicator,
    IndicatorKind,
    Level,
    Phase,
    PhaseClosed,
    PlanIssued,
    PlanRef,
    ReportSubmitted,
    Target,
    header_map,
    to_kafka,
)
from shared.metrics import Metrics
from shared.migrations import upgrade
from shared.settings import Settings
from shared.storage import (
    STATISTICS_TARGET,
    Database,
    InboxRecord,
    OutboxRecord,
    delete_rows,
    insert_rows,
    update_rows,
    writer_turn,
)
from shared.topics import dlq_name, topic_name
from tests.integration.helpers import api_client, eventually, produce, produce_events, read_topic

NOW = datetime(2023, 6, 3, 2, tzinfo=UTC)
UNITS = ["lb-01", "lb-02", "lb-03"]


def plan() -> Envelope:
    data = PlanIssued(
        plan_id="lb-plan",
        number="19/KH-LĐLĐ",
        issuer_unit_id="hn-lb",
        title="Đợt thi đua cao điểm",
        issued_on=date(2023, 3, 2),
        lineage=[PlanRef(plan_id="hn-plan", issuer_unit_id="hn")],
        phases=[
            Phase(
                seq=1,
                label="Đợt 1",
                start=date(2023, 3, 2),
                end=date(2023, 5, 31),
                report_due=date(2023, 6, 5),
            )
        ],
        targets=[Target(unit_id=u, name=u, level=Level.grassroots) for u in UNITS],
        indicators=[Indicator(code="new_members", name="Đoàn viên mới", kind=IndicatorKind.count)],
    )
    return Envelope.wrap(data, source="/thidua/plans", unit="hn-lb", time=NOW, correlation_id="hn-plan")


def report(unit: str, members: int, report_id: str | None = None, by: str | None = None) -> Envelope:
    data = ReportSubmitted(
        report_id=report_id or f"r-{unit}-{members}",
        plan_id="lb-plan",
        phase_seq=1,
        unit_id=unit,
        values={"new_members": members},
        submitted_at=NOW,
    )
    return Envelope.wrap(data, source="/test", unit=by or unit, time=NOW, correlation_id="hn-plan")


async def completeness(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/reporting/plans/lb-plan/phases/1/completeness")
    return response.json() if response.status_code == 200 else {}


async def test_redelivery_changes_nothing_and_poison_goes_to_the_dead_letter_topic(
    settings: Settings,
) -> None:
    runtime = Runtime(settings, ("reporting",), clock=ManualClock(NOW))
    await runtime.start()
    bootstrap = runtime.bootstrap_servers
    reports_topic = topic_name(settings.topic_prefix, "reports")
    try:
        client = api_client(create_app(runtime, False), runtime.settings, "http://t")
        first = [report("lb-01", 5), report("lb-02", 7)]
        await produce_events(bootstrap, topic_name(settings.topic_prefix, "plans"), [plan()])
        await produce_events(bootstrap, reports_topic, first)

        async def two_received() -> dict[str, Any] | None:
            table = await completeness(client)
            return table if table and table["total"]["received"] == 2 else None

        table = await eventually(two_received)
        assert table["total"]["figures"] == {"new_members": 12}

        # The same records again (a redelivery), then, on lb-03's partition, poison in front of its report.
        poison_headers = [(k, v) for k, v in to_kafka(report("lb-03", 1))[2] if k != "ce_type"]
        poison_headers.append(("ce_type", b"ReportShredded"))
        await produce(
            bootstrap,
            reports_topic,
            [
                *(to_kafka(envelope) for envelope in first),
                (b"lb-03", b"{not json", to_kafka(report("lb-03", 2))[2]),
                (b"lb-03", b"{}", poison_headers),
                to_kafka(report("lb-03", 99, by="lb-02")),  # a unit reporting for another
                to_kafka(report("lb-03", 3)),
            ],
        )

        async def three_received() -> dict[str, Any] | None:
            table = await completeness(client)
            return table if table["total"]["received"] == 3 else None

        table = await eventually(three_received)
        assert table["total"]["figures"] == {"new_members": 15}  # 5 + 7 + 3: nothing counted twice
        assert {row["unit_id"]: row["status"] for row in table["units"]} == dict.fromkeys(UNITS, "on_time")

        dead = await read_topic(bootstrap, dlq_name(reports_topic), expect=3)
        reasons = sorted(record["headers"]["dlq_reason"] for record in dead)
        assert reasons == ["invalid_payload", "unauthorized", "unknown_type"]
        assert all(record["headers"]["dlq_consumer"] == "reporting" for record in dead)
        assert {record["key"] for record in dead} == {b"lb-03"}
        shredded = next(r for r in dead if r["headers"]["dlq_reason"] == "unknown_type")
        assert "ReportShredded" in shredded["headers"]["dlq_detail"]

        rejected = (await client.get("/reporting/rejections", params={"unit_id": "lb-03"})).json()
        reasons = sorted(row["reasons"].split(":")[0] for row in rejected)
        assert reasons == ["invalid_payload", "unauthorized"]
        assert any("lb-02 submitted a report for lb-03" in row["reasons"] for row in rejected)

        async def counted() -> str | None:  # the repeated records sit on other partitions than lb-03's
            text = (await client.get("/metrics")).text
            return text if 'thidua_inbox_duplicates_total{consumer="reporting"} 2.0' in text else None

        metrics = await eventually(counted)
        assert (
            'thidua_dead_letters_total{consumer="reporting",reason="unknown_type",stream="reports"} 1.0'
            in metrics
        )
        await client.aclose()
    finally:
        await runtime.stop()


class Flaky:
    """A handler that fails `failures` times with `error`, then applies the event."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.applied: list[str] = []

    def __call__(self, uow: Any, envelope: Envelope) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.applied.append(envelope.id)


def consumer_with(handler: Flaky, database_url: str) -> tuple[BatchConsumer, Metrics, Database]:
    db = Database(
        database_url.format(service="reporting"), source="/test", prefix="t", clock=ManualClock(NOW)
    )
    upgrade(db.engine, DEFINITIONS["reporting"].migrations)
    handlers = EventHandlers()
    handlers.on(ReportSubmitted)(handler)
    metrics = Metrics()
    return BatchConsumer("test", db, handlers, metrics, retry_max_seconds=0.2), metrics, db


def as_record(envelope: Envelope, offset: int = 0) -> Record:
    key, value, headers = to_kafka(envelope)
    return Record("t.reports", 0, offset, key, value, header_map(headers))


def test_a_transient_failure_retries_the_batch_with_backoff(database_url: str) -> None:
    away = OperationalError("SELECT 1", {}, ConnectionError("the database is away"))
    handler = Flaky(failures=3, error=away)
    consumer, metrics, db = consumer_with(handler, database_url)
    try:
        event = report("lb-01", 5)
        consumer.process([as_record(event)])
        assert handler.applied == [event.id]
        assert metrics.consumer_retries.labels("test")._value.get() == 3
        consumer.process([as_record(event, offset=1)])  # delivered again: nothing happens
        assert handler.applied == [event.id]
        assert metrics.inbox_duplicates.labels("test")._value.get() == 1
    finally:
        db.dispose()


def test_a_long_batch_commits_as_it_goes_and_a_failure_retries_only_the_rest(database_url: str) -> None:
    """A batch applied for longer than `transaction_seconds` is committed in parts, each with the batch's
    end steps; a transient failure rolls back only the part it happened in."""
    away = OperationalError("SELECT 1", {}, ConnectionError("the database is away"))
    handler = Flaky(failures=0, error=away)
    consumer, metrics, db = consumer_with(handler, database_url)
    transactions: list[Any] = []  # the unit of work of each event, as the handler saw it
    failed: list[str] = []

    def apply(uow: Any, envelope: Envelope) -> None:
        if envelope.data.unit_id == "lb-03" and not failed:  # type: ignore[attr-defined]
            failed.append(envelope.id)
            handler.failures = 1  # the database goes away once, in the third event's part
        handler(uow, envelope)
        transactions.append(uow)

    ends: list[Any] = []
    consumer.handlers.on(ReportSubmitted)(apply)
    consumer.handlers.after_batch(ends.append)
    try:
        events = [report(f"lb-0{n}", n) for n in range(1, 5)]
        records = [as_record(event, offset) for offset, event in enumerate(events)]
        consumer.transaction_seconds = 0.0  # every part has lasted long enough after its first event
        consumer.process(records)
        assert handler.applied == [event.id for event in events]  # each once, the third after a retry
        assert metrics.consumer_retries.labels("test")._value.get() == 1
        assert len({id(uow) for uow in transactions}) == 4 and ends == transactions
        with db.reading() as session:
            assert len(session.exec(select(InboxRecord)).all()) == 4

        consumer.transaction_seconds = math.inf  # no part ever lasts long enough
        more = [report(f"lb-0{n}", n) for n in range(5, 8)]
        consumer.process([as_record(event, 4 + offset) for offset, event in enumerate(more)])
        assert len({id(uow) for uow in transactions[4:]}) == 1 and ends[4:] == transactions[4:5]  # one part
    finally:
        db.dispose()


def test_events_of_a_type_the_service_has_no_use_for_are_passed_over(database_url: str) -> None:
    """A stream carries several types: a consumer that handles only reports neither applies, records nor
    dead-letters a plan (even an unreadable one); it still dead-letters a type nobody knows."""
    handler = Flaky(failures=0, error=RuntimeError())
    consumer, _, db = consumer_with(handler, database_url)
    try:
        event = report("lb-01", 5)
        key, _, headers = to_kafka(plan())
        unreadable_plan = Record("t.plans", 0, 1, key, b"{not json", header_map(headers))
        strange = as_record(event, offset=2).headers | {"ce_id": "strange-1", "ce_type": "NoSuchEvent"}
        unknown = Record("t.reports", 0, 2, None, b"{}", strange)
        consumer.process([as_record(plan(), offset=0), unreadable_plan, as_record(event, offset=3), unknown])
        assert handler.applied == [event.id]
        with db.reading() as session:
            inbox = session.exec(select(InboxRecord.event_id, InboxRecord.outcome)).all()
            dead = session.exec(select(OutboxRecord.topic)).all()
        assert sorted(inbox) == sorted([(event.id, "processed"), ("strange-1", "dead_letter")])
        assert dead == ["t.reports.dlq"]
        # As they come from Kafka, such records are passed over by their raw headers, before decoding.
        raw = [(name, value.encode()) for name, value in strange.items()]
        assert not consumer.handlers.takes(headers)
        assert consumer.handlers.takes(to_kafka(event)[2])
        assert consumer.handlers.takes(raw)  # an unknown type is read, to be dead-lettered
        assert consumer.handlers.takes([])  # so is a record without a type
    finally:
        db.dispose()


def test_a_handler_that_keeps_failing_on_one_event_sends_it_to_the_dead_letters(database_url: str) -> None:
    handler = Flaky(failures=MAX_HANDLER_ATTEMPTS, error=KeyError("new_members"))
    consumer, metrics, db = consumer_with(handler, database_url)
    try:
        bad, good = report("lb-01", 5), report("lb-02", 6)
        consumer.process([as_record(bad), as_record(good, offset=1)])
        assert handler.applied == [good.id]
        assert metrics.dead_letters.labels("test", "reports", "handler_error")._value.get() == 1
        with db.reading() as session:
            (dead,) = session.exec(select(OutboxRecord)).all()
            headers = dict(map(tuple, dead.headers))
            assert dead.topic == "t.reports.dlq"
            assert headers["dlq_reason"] == "handler_error"
            assert "KeyError" in headers["dlq_detail"]
            assert headers["ce_id"] == bad.id
            outcomes = {row.event_id: row.outcome for row in session.exec(select(InboxRecord))}
            assert outcomes == {bad.id: "dead_letter", good.id: "processed"}
    finally:
        db.dispose()


def test_log_lines_about_an_event_carry_its_ids_as_json(database_url: str, caplog: Any) -> None:
    handler = Flaky(failures=0, error=KeyError("x"))
    consumer, _, db = consumer_with(handler, database_url)
    try:
        event = report("lb-01", 5)
        key, _value, headers = to_kafka(event)
        caplog.set_level(logging.WARNING, logger="shared.consumer")
        consumer.process([Record("t.reports", 0, 7, key, b"{broken", header_map(headers))])
        (line,) = [r for r in caplog.records if r.getMessage() == "record dead-lettered"]
        formatted = json.loads(JsonFormatter("%(levelname)s %(message)s").format(line))
        assert formatted["event_id"] == event.id
        assert formatted["correlation_id"] == "hn-plan"
        assert formatted["reason"] == "invalid_payload"
    finally:
        db.dispose()


async def test_a_forged_plan_is_refused_whoever_sends_it(settings: Settings) -> None:
    """Event authority: a plan comes from its issuer and goes only to the units directly below it."""
    settings = settings.model_copy(update={"consumer_transaction_seconds": 0.25})
    runtime = Runtime(settings, ("plans",), clock=ManualClock(NOW))
    await runtime.start()
    assert [consumer.transaction_seconds for consumer in runtime.consumers] == [0.25]  # as configured
    bootstrap = runtime.bootstrap_servers
    plans_topic = topic_name(settings.topic_prefix, "plans")
    try:
        client = api_client(create_app(runtime, False), runtime.settings, "http://t")
        units = [
            {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province"},
            {"id": "lb", "name": "LĐLĐ quận Long Biên", "level": "district", "parent_id": "hn"},
            {"id": "lb-1", "name": "CĐCS 1", "level": "grassroots", "parent_id": "lb"},
            {"id": "lb-2", "name": "CĐCS 2", "level": "grassroots", "parent_id": "lb"},
        ]
        answer = await client.post(
            "/plans/org/units", json=[{**u, "valid_from": "2020-01-01"} for u in units]
        )
        assert answer.status_code == 201

        def issued(plan_id: str, issuer: str, by: str, targets: list[tuple[str, Level]]) -> Envelope:
            data = plan().data.model_copy(
                update={
                    "plan_id": plan_id,
                    "issuer_unit_id": issuer,
                    "lineage": [],
                    "targets": [Target(unit_id=u, name=u, level=level) for u, level in targets],
                }
            )
            return Envelope.wrap(data, source="/elsewhere", unit=by, time=NOW, correlation_id=plan_id)

        await produce_events(
            bootstrap,
            plans_topic,
            [
                issued(
                    "city-by-a-grassroots", "hn", "lb-1", [("lb", Level.district)]
                ),  # sent as someone else
                issued("sideways", "lb-1", "lb-1", [("lb-2", Level.grassroots)]),  # to a unit not below it
                issued(
                    "district-plan", "lb", "lb", [("lb-1", Level.grassroots)]
                ),  # a plan from another stack
            ],
        )

        async def stored() -> bool:
            return (await client.get("/plans/plans/district-plan")).status_code == 200

        await eventually(stored)
        dead = await read_topic(bootstrap, dlq_name(plans_topic), expect=2)
        assert sorted(record["headers"]["dlq_reason"] for record in dead) == ["unauthorized", "unauthorized"]
        details = " ".join(record["headers"]["dlq_detail"] for record in dead)
        assert (
            "unit lb-1 sent a plan issued by hn" in details
            and "lb-2, which is not directly below it" in details
        )
        for plan_id in ("city-by-a-grassroots", "sideways"):
            assert (await client.get(f"/plans/plans/{plan_id}")).status_code == 404
        metrics = (await client.get("/metrics")).text
        assert (
            'thidua_dead_letters_total{consumer="plans",reason="unauthorized",stream="plans"} 2.0' in metrics
        )
    finally:
        await runtime.stop()


def test_threads_of_a_service_write_in_turn_and_lose_nothing(database_url: str) -> None:
    """A consumer, a relay and the periodic steps of one process write to one database at once: on SQLite
    they take turns on one lock per database (two `Database`s on the same file share it); every
    transaction commits."""
    url = database_url.format(service="reporting")
    db, again = (Database(url, source="/test", prefix="t", clock=ManualClock(NOW)) for _ in range(2))
    upgrade(db.engine, DEFINITIONS["reporting"].migrations)
    if url.startswith("sqlite"):
        assert writer_turn(url) is writer_turn(url)
        assert writer_turn(url) is not writer_turn(url + "-elsewhere")

    def write(worker: int) -> None:
        for n in range(40):
            with (db if n % 2 else again).transaction() as uow:
                uow.session.add(
                    InboxRecord(consumer=f"w{worker}", event_id=str(n), outcome="processed", processed_at=NOW)
                )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    try:
        with db.reading() as session:
            kept = session.exec(select(InboxRecord.consumer, InboxRecord.event_id)).all()
        assert sorted(kept) == sorted((f"w{w}", str(n)) for w in range(4) for n in range(40))
    finally:
        db.dispose()
        again.dispose()


def test_rows_written_in_bulk_keep_their_order_their_values_and_the_last_change(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk writes (a statement for many rows, below the ORM) keep the rows' order, give back JSON and
    bytes as written, of two changes to one row keep the last, where `where` allows, and delete exactly
    the rows named by their key: in one statement, and cut into statements of three rows."""
    monkeypatch.setattr(storage, "ROWS_PER_STATEMENT", 3)
    db = Database(database_url.format(service="plans"), source="/test", prefix="t", clock=ManualClock(NOW))
    upgrade(db.engine, DEFINITIONS["plans"].migrations)
    headers = [["ce_id", "x"], ["ce_unit", 'Liên đoàn "quận" 1']]
    rows = [
        {
            "event_id": f"e{n}",
            "topic": "t.plans",
            "key": f"k{n}",
            "headers": headers if n % 2 else [],
            "payload": bytes([n, 0, 255]),
            "created_at": NOW,
        }
        for n in (5, 3, 9, 1)
    ]
    try:
        with db.transaction() as uow:
            insert_rows(uow.session, OutboxRecord, rows)
        with db.transaction() as uow:
            first, second = uow.session.exec(select(OutboxRecord.seq).order_by(OutboxRecord.seq)).all()[:2]
            changes = [
                {"seq": first, "partition": 1, "offset": 2**40},
                {"seq": first, "partition": 2, "offset": 7},
                {"seq": second, "partition": 3, "offset": 8},
            ]
            update_rows(uow.session, OutboxRecord, ("seq",), changes, OutboxRecord.key != "k3")
        with db.transaction() as uow:
            third = uow.session.exec(select(OutboxRecord.seq).order_by(OutboxRecord.seq)).all()[2]
            changes = [
                {"seq": third, "partition": 4, "offset": 9},
                {"seq": third, "partition": 5, "offset": 10},
            ]
            update_rows(uow.session, OutboxRecord, ("seq",), changes)
        with db.reading() as session:
            kept = session.exec(select(OutboxRecord).order_by(OutboxRecord.seq)).all()
        assert [(r.event_id, r.headers, r.payload) for r in kept] == [
            (row["event_id"], row["headers"], row["payload"]) for row in rows
        ]
        assert [(r.partition, r.offset) for r in kept] == [(2, 7), (None, None), (5, 10), (None, None)]
        with db.transaction() as uow:
            named = [{"seq": kept[1].seq}, {"seq": kept[3].seq}, {"seq": kept[3].seq + 100}]
            delete_rows(uow.session, OutboxRecord, ("seq",), named)
        with db.reading() as session:
            left = session.exec(select(OutboxRecord.event_id).order_by(OutboxRecord.seq)).all()
        assert left == ["e5", "e9"]
    finally:
        db.dispose()


def test_rows_written_in_bulk_are_stored_as_the_orm_stores_them(database_url: str) -> None:
    """Bulk writes convert each value by its column's type, as the ORM does: the same row written both
    ways reads back the same as text (times, flags, JSON and a column left to its default)."""
    db = Database(
        database_url.format(service="reporting"), source="/test", prefix="t", clock=ManualClock(NOW)
    )
    upgrade(db.engine, DEFINITIONS["reporting"].migrations)
    version = {
        "plan_id": "p1",
        "phase_seq": 1,
        "unit_id": "lb-01",
        "values": {"members": 5, "tên": "Công đoàn", "ratio": [1, 3], "none": None},
        "narrative": "",
        "submitted_at": datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=UTC),
        "received_at": NOW,
    }
    contribution = {"plan_id": "p1", "phase_seq": 1, "applied": {"expected": 1, "figures": {}}}
    try:
        with db.transaction() as uow:
            uow.session.add(ReportVersion(report_id="by-orm", **version))
            uow.session.add(UnitContribution(unit_id="by-orm", **contribution))
            uow.session.flush()
            insert_rows(uow.session, ReportVersion, [{"report_id": "in-bulk", **version}])
            insert_rows(uow.session, UnitContribution, [{"unit_id": "in-bulk", **contribution}])
        as_text = "SELECT {}, CAST({} AS TEXT) FROM {} ORDER BY 1"
        with db.reading() as session:
            for key, column, table in [
                ("report_id", "submitted_at", "rep_report_version"),
                ("report_id", "received_at", "rep_report_version"),
                ("report_id", "values", "rep_report_version"),
                ("unit_id", "overdue", "rep_contribution"),
                ("unit_id", "applied", "rep_contribution"),
            ]:
                rows = session.execute(text(as_text.format(key, f'"{column}"', table))).all()
                (_, by_orm), (_, in_bulk) = sorted(rows, key=lambda row: row[0] != "by-orm")
                assert in_bulk == by_orm, column
    finally:
        db.dispose()


def test_json_columns_give_back_exactly_what_was_written(database_url: str) -> None:
    """JSON columns are written and read fast, but never approximately: integers too long for 64 bits come
    back whole, not as floats (on PostgreSQL their rows go as arrays, the others as one JSON text)."""
    db = Database(database_url.format(service="plans"), source="/test", prefix="t", clock=ManualClock(NOW))
    upgrade(db.engine, DEFINITIONS["plans"].migrations)
    documents = {
        "long": [["below", -9223372036854775809], ["above", 10**30], ["max", 2**63 - 1]],
        "usual": [["ratio", 0.1], ["count", 42], ["name", 'Liên đoàn "quận" 1'], ["none", None]],
    }
    rows = [
        {
            "event_id": name,
            "topic": "t.plans",
            "key": name,
            "headers": headers,
            "payload": b"",
            "created_at": NOW,
        }
        for name, headers in documents.items()
    ]
    try:
        with db.transaction() as uow:
            for row in rows:
                insert_rows(uow.session, OutboxRecord, [row])
        with db.reading() as session:
            kept = dict(session.exec(select(OutboxRecord.event_id, OutboxRecord.headers)).all())
        assert kept == documents
        assert all(type(value) is int for _, value in kept["long"])
    finally:
        db.dispose()


def test_tables_that_outgrow_their_statistics_are_analyzed(database_url: str) -> None:
    """PostgreSQL plans by each table's statistics: a table changed by many rows since it was last analyzed
    is analyzed again (at every tick), whether or not autovacuum runs. SQLite keeps none to refresh."""
    db = Database(database_url.format(service="awards"), source="/test", prefix="t", clock=ManualClock(NOW))
    upgrade(db.engine, DEFINITIONS["awards"].migrations)
    postgresql = db.engine.dialect.name == "postgresql"
    inbox = [
        {"consumer": "awards", "event_id": f"e{n}", "outcome": "processed", "processed_at": NOW}
        for n in range(3000)
    ]
    try:
        with db.transaction() as uow:
            insert_rows(uow.session, InboxRecord, inbox)
            if postgresql:  # the counts of changed rows reach the statistics with this commit, not later
                uow.session.execute(text("SELECT pg_stat_force_next_flush()"))
        if not postgresql:
            assert db.refresh_statistics() == []
            return
        assert db.refresh_statistics() == ["inbox"]
        assert db.refresh_statistics() == []
        with db.reading() as session:
            analyzed = session.execute(
                text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'inbox'")
            ).scalar_one()
            # From a small sample: a histogram of STATISTICS_TARGET buckets (the default would make 100).
            bounds = session.execute(
                text(
                    "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats "
                    "WHERE tablename = 'inbox' AND attname = 'event_id'"
                )
            ).scalar_one()
        assert analyzed
        assert bounds == STATISTICS_TARGET + 1
    finally:
        db.dispose()


def test_a_closed_phase_asks_only_the_units_that_have_not_reported(database_url: str) -> None:
    db = Database(
        database_url.format(service="notifications"), source="/test", prefix="t", clock=ManualClock(NOW)
    )
    upgrade(db.engine, DEFINITIONS["notifications"].migrations)
    other = plan().data.model_copy(update={"plan_id": "other-plan"})
    try:
        with db.transaction() as uow:
            remember_plan(uow.session, plan().data)  # type: ignore[arg-type]
            remember_plan(uow.session, other)
            for plan_id, unit_id in (("lb-plan", "lb-02"), ("other-plan", "lb-01")):
                reported = uow.session.get(Expectation, (plan_id, 1, unit_id))
                assert reported is not None
                reported.reported = True
                uow.session.add(reported)
        with db.reading() as session:
            asked = report_requests(session, PhaseClosed(plan_id="lb-plan", phase_seq=1, at=NOW))
            elsewhere = report_requests(session, PhaseClosed(plan_id="other-plan", phase_seq=1, at=NOW))
        assert sorted(m.recipient_unit_id for m in asked) == ["lb-01", "lb-03"]
        assert sorted(m.recipient_unit_id for m in elsewhere) == ["lb-02", "lb-03"]
        assert all(m.kind == "report_request" and "19/KH-LĐLĐ" in m.subject for m in asked)
        assert all("05/06/2023" in m.subject for m in asked)
    finally:
        db.dispose()
