"""The transactional outbox and its relay, on SQLite and PostgreSQL, over a real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from services.plans.models import OrgUnitVersion
from services.runtime import DEFINITIONS
from shared.clock import ManualClock
from shared.events import PlanAcknowledged
from shared.kafka import KafkaConnection
from shared.local_broker import LocalBroker
from shared.metrics import Metrics
from shared.migrations import upgrade
from shared.outbox import OutboxRelay
from shared.storage import Database, OutboxRecord
from shared.topics import all_topics, connect_admin, topic_name
from tests.integration.helpers import eventually, read_topic

NOW = datetime(2023, 6, 1, 2, tzinfo=UTC)


def plans_database(database_url: str, prefix: str = "thidua") -> Database:
    db = Database(
        database_url.format(service="plans"), source="/thidua/plans", prefix=prefix, clock=ManualClock(NOW)
    )
    upgrade(db.engine, DEFINITIONS["plans"].migrations)
    return db


def unit(unit_id: str) -> OrgUnitVersion:
    return OrgUnitVersion(unit_id=unit_id, name=unit_id, level="province", valid_from=date(2020, 1, 1))


def test_state_and_its_events_commit_together_or_not_at_all(database_url: str) -> None:
    db = plans_database(database_url)
    try:
        with pytest.raises(RuntimeError), db.transaction() as uow:
            uow.session.add(unit("hn"))
            uow.publish(PlanAcknowledged(plan_id="p", unit_id="hn", acknowledged_at=NOW), unit="hn")
            raise RuntimeError("the database said no halfway")
        with db.reading() as session:
            assert session.exec(select(OrgUnitVersion)).all() == []
            assert session.exec(select(OutboxRecord)).all() == []
        with db.transaction() as uow:
            uow.session.add(unit("hn"))
            uow.publish(PlanAcknowledged(plan_id="p", unit_id="hn", acknowledged_at=NOW), unit="hn")
        with db.reading() as session:
            assert len(session.exec(select(OrgUnitVersion)).all()) == 1
            (row,) = session.exec(select(OutboxRecord)).all()
            assert row.topic == "thidua.plans" and row.key == "p" and row.published_at is None
    finally:
        db.dispose()


def acknowledgements(db: Database, count: int) -> None:
    with db.transaction() as uow:
        for n in range(count):
            plan = f"plan-{n % 3}"
            uow.publish(
                PlanAcknowledged(plan_id=plan, unit_id=f"u{n:03d}", acknowledged_at=NOW), unit=f"u{n:03d}"
            )


def units_by_plan(records: list[dict]) -> dict[bytes, list[str]]:
    """Per key, the units in the order their events stand on the partition (a replayed copy of an
    event the partition already holds adds nothing: consumers' inboxes ignore it)."""
    out: dict[bytes, list[str]] = {}
    for record in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        units = out.setdefault(record["key"], [])
        if record["headers"]["ce_unit"] not in units:
            units.append(record["headers"]["ce_unit"])
    return out


async def lose_and_replay(
    broker: LocalBroker, topic: str, metrics: Metrics, expect: int
) -> list[dict[str, Any]]:
    """Delete `topic` under the relay; once the relay has published it again, read it back."""
    admin = await connect_admin(KafkaConnection(broker.bootstrap_servers))
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    # The relay notices the topic is gone and publishes it again; only then does a reader look
    # (a reader asking for a missing topic would have the broker create it under the relay).
    await eventually(
        lambda: asyncio.sleep(0, metrics.outbox_replays.labels("plans", "topic_emptied")._value.get() >= 1),
        timeout=60,
    )
    return await read_topic(broker.bootstrap_servers, topic, expect=expect, timeout=60, distinct=True)


async def test_the_relay_publishes_in_order_and_replays_to_a_broker_that_lost_everything(
    database_url: str,
) -> None:
    db = plans_database(database_url, prefix="relay")
    metrics = Metrics()
    topics = all_topics("relay")
    topic = topic_name("relay", "plans")
    with LocalBroker() as broker:
        relay = OutboxRelay(
            "plans",
            db,
            KafkaConnection(broker.bootstrap_servers),
            topics,
            metrics,
            check_seconds=0.3,
            poll_seconds=0.05,
        )
        await relay.start()
        try:
            acknowledgements(db, 30)
            first = await read_topic(broker.bootstrap_servers, topic, expect=30)
            by_plan = units_by_plan(first)
            assert by_plan[b"plan-0"] == [f"u{n:03d}" for n in range(0, 30, 3)]  # per key, in commit order
            assert sorted(by_plan) == [b"plan-0", b"plan-1", b"plan-2"]

            await asyncio.to_thread(broker.restart)  # comes back empty, with another cluster id
            again = await read_topic(broker.bootstrap_servers, topic, expect=30, timeout=60, distinct=True)
            assert units_by_plan(again) == by_plan
            assert metrics.outbox_replays.labels("plans", "new_cluster")._value.get() == 1

            assert units_by_plan(await lose_and_replay(broker, topic, metrics, expect=30)) == by_plan
        finally:
            await relay.stop()
            db.dispose()


async def test_the_relay_reads_once_where_its_kept_rows_went_and_still_notices_a_lost_topic(
    database_url: str,
) -> None:
    """The kept rows span the retention window (a week of a federation's events): the relay reads where
    they went once, then keeps count as it publishes, instead of reading them all at every check."""
    db = plans_database(database_url, prefix="written")
    metrics = Metrics()
    topic = topic_name("written", "plans")
    statements: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def counted(start: str) -> int:
        return sum(statement.startswith(start) for statement in statements)

    for engine in {db.engine, db.reader}:
        sa.event.listen(engine, "before_cursor_execute", seen)
    with LocalBroker() as broker:
        relay = OutboxRelay(
            "plans",
            db,
            KafkaConnection(broker.bootstrap_servers),
            all_topics("written"),
            metrics,
            check_seconds=0.1,
            poll_seconds=0.05,
        )
        await relay.start()
        try:
            acknowledgements(db, 30)
            first = await read_topic(broker.bootstrap_servers, topic, expect=30)
            await eventually(lambda: asyncio.sleep(0, counted("DELETE FROM outbox") >= 5))  # 5 checks
            assert counted("SELECT DISTINCT outbox.topic") == 1

            # The relay knows the topic from its one read and from what it has published since.
            replayed = await lose_and_replay(broker, topic, metrics, expect=30)
            assert units_by_plan(replayed) == units_by_plan(first)
        finally:
            await relay.stop()
            db.dispose()


async def test_published_rows_are_kept_for_the_retention_window_then_purged(database_url: str) -> None:
    db = plans_database(database_url, prefix="retain")
    clock = db.clock
    assert isinstance(clock, ManualClock)
    metrics = Metrics()
    with LocalBroker() as broker:
        relay = OutboxRelay(
            "plans",
            db,
            KafkaConnection(broker.bootstrap_servers),
            all_topics("retain"),
            metrics,
            check_seconds=0.2,
            poll_seconds=0.05,
            retention=timedelta(hours=1),
        )
        await relay.start()
        try:
            acknowledgements(db, 5)

            async def published() -> bool:
                with db.reading() as session:
                    rows = session.exec(select(OutboxRecord)).all()
                    return len(rows) == 5 and all(row.published_at for row in rows)

            await eventually(published)
            clock.advance(timedelta(hours=2))

            async def purged() -> bool:
                with db.reading() as session:
                    return session.exec(select(OutboxRecord)).all() == []

            await eventually(purged)
            assert metrics.outbox_pending.labels("plans")._value.get() == 0
        finally:
            await relay.stop()
            db.dispose()
