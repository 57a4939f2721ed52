"""Reporting's rules against a real database (SQLite and PostgreSQL), without the broker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from services.reporting.handlers import (
    completeness,
    dirty_keys,
    keep_version,
    record_plans,
    record_reports,
    refresh_contributions,
    report_problems,
    revoke,
)
from services.reporting.models import PlanView
from services.runtime import DEFINITIONS
from shared.clock import ManualClock
from shared.events import (
    Envelope,
    Indicator,
    IndicatorKind,
    Level,
    Phase,
    PlanIssued,
    ReportSubmitted,
    Target,
)
from shared.migrations import upgrade
from shared.storage import Database

PHASE = Phase(
    seq=1, label="Đợt 1", start=date(2023, 3, 1), end=date(2023, 5, 31), report_due=date(2023, 6, 5)
)


def issued(plan_id: str, units: tuple[str, ...], report_after_phase_end: bool = False) -> Envelope:
    """District d's plan `plan_id` to its grassroots units `units`, as the plans service sends it."""
    plan = PlanIssued(
        plan_id=plan_id,
        number=f"{plan_id}/KH-CĐ",
        issuer_unit_id="d",
        title="Kết quả thi đua",
        issued_on=date(2023, 2, 1),
        phases=[PHASE],
        targets=[Target(unit_id=u, name=u, level=Level.grassroots) for u in units],
        indicators=[Indicator(code="works", name="Công trình", kind=IndicatorKind.count)],
        report_after_phase_end=report_after_phase_end,
    )
    return Envelope.wrap(plan, source="/thidua/plans", unit="d", time=datetime(2023, 2, 1, tzinfo=UTC))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    clock = ManualClock(datetime(2023, 6, 1, 2, tzinfo=UTC))
    database = Database(database_url.format(service="reporting"), source="/test", prefix="t", clock=clock)
    upgrade(database.engine, DEFINITIONS["reporting"].migrations)
    with database.transaction() as uow:
        record_plans(uow, [issued("p", ("g1", "g2"), report_after_phase_end=True)])
        refresh_contributions(uow, dirty_keys(uow))
    yield database
    database.dispose()


def report(unit: str, when: datetime, works: int = 1) -> ReportSubmitted:
    return ReportSubmitted(
        report_id=f"{unit}-{when:%d%H}",
        plan_id="p",
        phase_seq=1,
        unit_id=unit,
        values={"works": works},
        submitted_at=when,
    )


def test_a_plan_that_asks_for_results_refuses_reports_before_the_phase_ends(db: Database) -> None:
    with db.reading() as session:
        plan = session.get(PlanView, "p")
        assert plan is not None
        early = report_problems(session, plan, report("g1", datetime(2023, 5, 31, 10, tzinfo=UTC)))
        assert [(e.field, e.value) for e in early] == [("phase_seq", 1)]
        assert "a phase that has ended: this one ends on 2023-05-31" in early[0].expected
        assert report_problems(session, plan, report("g1", datetime(2023, 5, 31, 17, 30, tzinfo=UTC))) == []


def test_a_late_report_says_how_late_and_a_missing_one_counts_until_it_comes(db: Database) -> None:
    with db.transaction() as uow:
        keep_version(uow, report("g1", datetime(2023, 6, 2, 3, tzinfo=UTC)))
        keep_version(uow, report("g2", datetime(2023, 6, 8, 3, tzinfo=UTC), works=4))
        refresh_contributions(uow, dirty_keys(uow))
    with db.reading() as session:
        plan = session.get(PlanView, "p")
        assert plan is not None
        table = completeness(session, plan, 1, date(2023, 6, 9))
    rows = {row["unit_id"]: row for row in table["units"]}
    assert (rows["g1"]["status"], rows["g1"]["days_late"]) == ("on_time", 0)
    assert (rows["g2"]["status"], rows["g2"]["days_late"]) == ("late", 3)
    assert rows["g2"]["submitted_at"].startswith("2023-06-08T03:00")
    assert (table["total"]["expected"], table["total"]["on_time"], table["total"]["late"]) == (2, 1, 1)
    assert table["total"]["figures"] == {"works": 5}
    assert table["deadline_passed"]


def totals(db: Database) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    """Each unit's row and the issuer's total in the completeness table, seen on 9 June."""
    with db.reading() as session:
        plan = session.get(PlanView, "p")
        assert plan is not None
        table = completeness(session, plan, 1, date(2023, 6, 9))
    return {row["unit_id"]: row for row in table["units"]}, table["total"]


def test_a_report_sent_late_in_the_evening_vietnam_time_stays_on_time_when_corrected(db: Database) -> None:
    # 23:30 on the due day in Hà Nội is 16:30 UTC: on time. The correction comes the next morning, in
    # another batch, and the first version, read back from the database, still decides timeliness.
    evening = datetime.fromisoformat("2023-06-05T23:30:00+07:00")
    with db.transaction() as uow:
        keep_version(uow, report("g1", evening))
        refresh_contributions(uow, dirty_keys(uow))
    with db.transaction() as uow:
        keep_version(uow, report("g1", datetime.fromisoformat("2023-06-06T09:00:00+07:00"), works=3))
        refresh_contributions(uow, dirty_keys(uow))
    rows, total = totals(db)
    assert rows["g1"]["status"] == "on_time"
    assert rows["g1"]["submitted_at"].startswith("2023-06-05T16:30")
    assert (total["on_time"], total["late"], total["figures"]) == (1, 0, {"works": 3})


def test_a_report_and_its_correction_count_the_same_in_one_batch_as_in_two(db: Database) -> None:
    first, correction = (
        report("g1", datetime(2023, 6, 2, 3, tzinfo=UTC)),
        report("g1", datetime(2023, 6, 7, 3, tzinfo=UTC), works=6),
    )
    with db.transaction() as uow:
        keep_version(uow, first)
        keep_version(uow, correction)
        refresh_contributions(uow, dirty_keys(uow))
    together = totals(db)
    with db.transaction() as uow:
        keep_version(uow, report("g2", datetime(2023, 6, 2, 3, tzinfo=UTC)))
        refresh_contributions(uow, dirty_keys(uow))
    with db.transaction() as uow:
        keep_version(uow, report("g2", datetime(2023, 6, 7, 3, tzinfo=UTC), works=6))
        refresh_contributions(uow, dirty_keys(uow))
    rows, total = totals(db)
    assert together[0]["g1"]["status"] == rows["g2"]["status"] == "on_time"
    assert together[0]["g1"]["figures"] == rows["g2"]["figures"] == {"works": 6}
    assert (total["received"], total["on_time"], total["figures"]) == (2, 2, {"works": 12})


def test_a_report_rolled_back_with_its_savepoint_does_not_count(db: Database) -> None:
    with db.transaction() as uow:
        with pytest.raises(RuntimeError), uow.savepoint():
            keep_version(uow, report("g1", datetime(2023, 6, 2, 3, tzinfo=UTC)))
            raise RuntimeError("the handler failed after keeping the report")
        keep_version(uow, report("g2", datetime(2023, 6, 2, 3, tzinfo=UTC), works=2))
        refresh_contributions(uow, dirty_keys(uow))
    rows, total = totals(db)
    assert (rows["g1"]["status"], rows["g2"]["status"]) == ("pending", "on_time")
    assert (total["expected"], total["received"], total["figures"]) == (2, 1, {"works": 2})


def test_reports_sent_before_their_plan_count_once_it_arrives(db: Database) -> None:
    """Reports on a plan reporting has not heard of yet are kept; when the plan comes, in a later batch,
    they count, with those kept in its own batch before it and after it, corrections included."""

    def on_q(unit: str, day: int, works: int) -> ReportSubmitted:
        sent = report(unit, datetime(2023, 6, day, 3, tzinfo=UTC), works)
        return sent.model_copy(update={"plan_id": "q", "report_id": f"q-{unit}-{day}"})

    with db.transaction() as uow:
        keep_version(uow, on_q("g1", 2, works=2))  # a batch before the plan's
        refresh_contributions(uow, dirty_keys(uow))
    with db.transaction() as uow:
        keep_version(uow, on_q("g2", 2, works=3))  # the plan's batch, before it
        record_plans(uow, [issued("q", ("g1", "g2", "g3"))])
        keep_version(uow, on_q("g3", 2, works=4))  # the plan's batch, after it
        keep_version(uow, on_q("g1", 3, works=5))  # g1 corrects its report
        refresh_contributions(uow, dirty_keys(uow))
    with db.reading() as session:
        plan = session.get(PlanView, "q")
        assert plan is not None
        table = completeness(session, plan, 1, date(2023, 6, 9))
    total = table["total"]
    assert (total["expected"], total["received"], total["on_time"]) == (3, 3, 3)
    assert total["figures"] == {"works": 5 + 3 + 4}


def test_a_plan_revoked_on_another_instance_refuses_reports_on_this_one(db: Database) -> None:
    # Two instances of reporting on one database: this one keeps the plan between batches, the other
    # revokes it; the next report this one reads on the plan is refused.
    other = Database(db.url, source="/test", prefix="t", clock=db.clock)

    def sent(unit: str) -> Envelope:
        event = report(unit, datetime(2023, 6, 2, 3, tzinfo=UTC))
        return Envelope.wrap(event, source="/units", unit=unit, time=datetime(2023, 6, 2, 3, tzinfo=UTC))

    with db.transaction() as uow:
        assert record_reports(uow, [sent("g1")]) == {}
    with other.transaction() as uow:
        revoke(uow, "p")
    other.dispose()
    with db.transaction() as uow:
        late = sent("g2")
        refused = record_reports(uow, [late])
    assert refused[late.id].reason == "rule_violation"
    assert "a plan in force (this one was revoked)" in refused[late.id].detail
