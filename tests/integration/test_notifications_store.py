"""Reminders against both databases: a unit that owes several reports gets one digest a day, and the
letter names its own delivery, as an officer quotes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from services.notifications.handlers import remember_plan, send_reminders
from services.notifications.models import Contact, Delivery
from services.runtime import DEFINITIONS
from shared.clock import ManualClock
from shared.events import PlanIssued
from shared.metrics import Metrics
from shared.migrations import upgrade
from shared.service import ServiceContext
from shared.settings import Settings
from shared.storage import Database
from tests.unit.test_events import plan_issued as sample_plan

UNIT = "hn-lb-01"


def plan_issued(plan_id: str, number: str) -> PlanIssued:
    """A plan to the unit, its report due on 2 June 2023."""
    return sample_plan().model_copy(update={"plan_id": plan_id, "number": number})


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    # 09:00 in Hà Nội, three days before the reports are due: outside the quiet hours.
    clock = ManualClock(datetime(2023, 5, 30, 2, tzinfo=UTC))
    database = Database(
        database_url.format(service="notifications"), source="/thidua/notifications", prefix="t", clock=clock
    )
    upgrade(database.engine, DEFINITIONS["notifications"].migrations)
    yield database
    database.dispose()


def test_a_unit_owing_two_reports_gets_one_digest_that_names_its_delivery(db: Database) -> None:
    ctx = ServiceContext("notifications", Settings(_env_file=None), db, db.clock, Metrics())  # type: ignore[call-arg]
    with db.transaction() as uow:
        uow.session.add(Contact(unit_id=UNIT, name="CĐCS 01"))
        for plan_id, number in (("p-1", "19/KH-LĐLĐ"), ("p-2", "20/KH-LĐLĐ")):
            remember_plan(uow.session, plan_issued(plan_id, number))

    assert send_reminders(ctx) == 1
    with db.reading() as session:
        deliveries = session.exec(select(Delivery)).all()
    assert [(d.kind, d.recipient_unit_id, d.channel) for d in deliveries] == [("reminder", UNIT, "log")]
    body = deliveries[0].body
    assert "19/KH-LĐLĐ" in body and "20/KH-LĐLĐ" in body
    assert f"(mã {deliveries[0].id})" in body

    assert send_reminders(ctx) == 0  # the same day again: nothing more
