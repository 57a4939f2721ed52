"""The plans service against a real database (SQLite and PostgreSQL): validation that needs the registry,
and a scheduler that emits each phase event exactly once — after downtime, across a restart, and with
two instances at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlmodel import select

from services.plans.handlers import (
    IssuePlan,
    Register,
    acknowledge,
    build_handlers,
    derived_draft,
    issue_plan,
    record_acknowledgements,
    register,
    register_units,
    revoke_plan,
    run_phase_scheduler,
    subtree_deployment,
)
from services.plans.models import Plan, PlanPhase, PlanTarget
from services.runtime import DEFINITIONS, Runtime, create_app
from shared.api import install_error_handlers
from shared.clock import ManualClock
from shared.errors import EventRejected, FieldError
from shared.events import Envelope, Level, OrgUnit, PlanAcknowledged, PlanIssued, Target, from_kafka
from shared.metrics import Metrics
from shared.migrations import upgrade
from shared.service import ServiceContext
from shared.settings import Settings
from shared.storage import Database, OutboxRecord
from tests.integration.helpers import api_client

UNITS = [
    ("hn", "LĐLĐ thành phố Hà Nội", Level.province, None),
    ("lb", "LĐLĐ quận Long Biên", Level.district, "hn"),
    ("hk", "LĐLĐ quận Hoàn Kiếm", Level.district, "hn"),
    ("lb-1", "CĐCS Long Biên 1", Level.grassroots, "lb"),
    ("hk-1", "CĐCS Hoàn Kiếm 1", Level.grassroots, "hk"),
]
PHASES = [
    {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-05-31", "report_due": "2023-06-07"},
    {"seq": 2, "label": "Đợt 2", "start": "2023-06-01", "end": "2023-09-30", "report_due": "2023-10-07"},
]


@pytest.fixture
def url(database_url: str) -> str:
    return database_url.format(service="plans")


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(
        url, source="/thidua/plans", prefix="t", clock=ManualClock(datetime(2023, 2, 20, tzinfo=UTC))
    )
    upgrade(database.engine, DEFINITIONS["plans"].migrations)
    with database.transaction() as uow:
        register_units(
            uow,
            [
                OrgUnit(id=i, name=n, level=level, parent_id=parent, valid_from=date(2020, 1, 1))
                for i, n, level, parent in UNITS
            ],
        )
    yield database
    database.dispose()


def plan(**changes: Any) -> IssuePlan:
    body = {
        "number": "80/KH-LĐLĐ",
        "issuer_unit_id": "hn",
        "title": "Thi đua",
        "issued_on": "2023-02-21",
        "phases": PHASES,
    }
    return IssuePlan.model_validate({**body, **changes})


def issued_events(db: Database) -> int:
    with db.reading() as session:
        return sum("PlanIssued" in str(row.headers) for row in session.exec(select(OutboxRecord)))


def refused(db: Database, command: IssuePlan) -> FieldError:
    before = issued_events(db)
    with pytest.raises(FieldError) as error, db.transaction() as uow:
        issue_plan(uow, command)
    assert issued_events(db) == before  # nothing of a refused plan is kept
    return error.value


def test_a_number_is_used_once_per_body_per_year(db: Database) -> None:
    with db.transaction() as uow:
        issue_plan(uow, plan())
    error = refused(db, plan(title="Another"))
    assert (error.field, error.value) == ("number", "80/KH-LĐLĐ")
    assert error.expected == "a number not yet used by LĐLĐ thành phố Hà Nội in 2023"
    with db.transaction() as uow:  # numbering restarts every 1 January
        issue_plan(
            uow,
            plan(
                issued_on="2024-01-02",
                phases=[
                    {
                        **p,
                        "start": p["start"].replace("2023", "2024"),
                        "end": p["end"].replace("2023", "2024"),
                        "report_due": p["report_due"].replace("2023", "2024"),
                    }
                    for p in PHASES
                ],
            ),
        )


@pytest.mark.parametrize(
    ("recipients", "field", "expected"),
    [
        (
            [{"name": "CĐCS Hoàn Kiếm 1", "unit_id": "hk-1", "purpose": "execute"}],
            "recipients[1].unit_id",
            None,
        ),
        (
            [{"name": "LĐLĐ Hoàn Kiếm", "unit_id": "hk", "purpose": "report"}],
            "recipients[1].unit_id",
            "a unit above lb: a plan is reported upward",
        ),
        (
            [{"name": "Đâu đó", "unit_id": "xx", "purpose": "report"}],
            "recipients[1].unit_id",
            "a unit registered on 2023-02-21",
        ),
    ],
)
def test_recipients_are_below_for_execution_and_above_for_report(
    db: Database, recipients: list[dict], field: str, expected: str | None
) -> None:
    error = refused(db, plan(number="5/KH-LĐLĐ", issuer_unit_id="lb", recipients=recipients))
    assert error.field == field
    assert error.expected == (expected or "a unit below lb: a plan is executed by its own subtree")


def test_good_recipients_and_soft_problems_pass_with_warnings(db: Database) -> None:
    recipients = [
        {"name": "LĐLĐ Thành phố (b/c)", "unit_id": "hn", "purpose": "report"},
        {"name": "CĐCS Long Biên 1 (t/h)", "unit_id": "lb-1", "purpose": "execute"},
        {"name": "Lưu VT", "purpose": "archive"},
    ]
    phases = [{**PHASES[0], "report_due": PHASES[0]["end"]}]
    with db.transaction() as uow:
        issued = issue_plan(
            uow, plan(number="5/QĐ-LĐLĐ", issuer_unit_id="lb", recipients=recipients, phases=phases)
        )
    assert [w["code"] for w in issued.warnings] == ["not_a_plan", "no_time_to_report"]
    assert [r.purpose for r in issued.recipients] == ["report", "execute", "archive"]


def test_a_child_plan_keeps_within_its_parent_and_reports_before_it(db: Database) -> None:
    with db.transaction() as uow:
        parent = issue_plan(uow, plan())
    late = [{**PHASES[0], "report_due": "2023-06-07"}, {**PHASES[1], "report_due": "2023-10-01"}]
    error = refused(
        db, plan(number="3/KH-LĐLĐ", issuer_unit_id="lb", parent_plan_id=parent.plan_id, phases=late)
    )
    assert (error.field, error.value) == ("phases[1].report_due", "2023-06-07")
    assert error.expected.startswith("2023-06-06 or earlier")
    overlapping = [PHASES[0], {**PHASES[1], "start": "2023-05-20"}]
    error = refused(db, plan(number="4/KH-LĐLĐ", phases=overlapping))
    assert (error.field, error.value) == ("phases[2].start", "2023-05-20")


async def test_a_date_that_does_not_exist_is_refused_in_plain_words(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{service}}.db", var_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    app = create_app(Runtime(settings), manage_lifecycle=False)
    body = plan().model_dump(mode="json")
    body["phases"][0]["report_due"] = "2023-02-30"
    async with api_client(app, settings) as client:
        answer = await client.post("/plans/plans", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {
            "field": "phases.0.report_due",
            "value": "2023-02-30",
            "message": "a date that exists, written YYYY-MM-DD",
        }
    ]


# ------------------------------------------------------------------ the scheduler


def phase_events(db: Database) -> list[tuple[str, str]]:
    with db.reading() as session:
        rows = session.exec(select(OutboxRecord).order_by(OutboxRecord.seq)).all()  # type: ignore[arg-type]
    events = []
    for row in rows:
        headers = dict(map(tuple, row.headers))
        if headers["ce_type"] in ("PhaseOpened", "PhaseClosed"):
            events.append((headers["ce_type"], row.payload.decode()))
    return events


def context(url: str, clock: ManualClock) -> ServiceContext:
    """One instance of the plans service: its own engine on the shared database."""
    database = Database(url, source="/thidua/plans", prefix="t", clock=clock)
    return ServiceContext("plans", Settings(_env_file=None), database, clock, Metrics())  # type: ignore[call-arg]


def test_the_scheduler_catches_up_after_downtime_and_never_repeats_after_a_restart(
    db: Database, url: str
) -> None:
    with db.transaction() as uow:
        issue_plan(uow, plan())
    clock = ManualClock(datetime(2023, 6, 15, 2, tzinfo=UTC))  # down since before phase 1 began
    first = context(url, clock)
    assert run_phase_scheduler(first) == 3  # phase 1 opened and closed, phase 2 opened
    assert first.metrics.scheduler_lag.labels("plans")._value.get() > 86400 * 100  # that late
    assert run_phase_scheduler(first) == 0
    first.db.dispose()
    restarted = context(url, clock)  # a new process
    assert run_phase_scheduler(restarted) == 0
    clock.set(datetime(2023, 10, 1, 2, tzinfo=UTC))
    assert run_phase_scheduler(restarted) == 1
    restarted.db.dispose()
    kinds = [kind for kind, _ in phase_events(db)]
    assert kinds == ["PhaseOpened", "PhaseClosed", "PhaseOpened", "PhaseClosed"]


def test_two_instances_emit_each_phase_event_once(db: Database, url: str) -> None:
    with db.transaction() as uow:
        for number in range(1, 6):
            issue_plan(uow, plan(number=f"{number}/KH-LĐLĐ"))
    clock = ManualClock(datetime(2023, 10, 9, 2, tzinfo=UTC))
    instances = [context(url, clock), context(url, clock)]
    counts: list[int] = []
    start = threading.Barrier(2)

    def run(instance: ServiceContext) -> None:
        start.wait()
        counts.append(run_phase_scheduler(instance))

    threads = [threading.Thread(target=run, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for instance in instances:
        instance.db.dispose()
    assert sum(counts) == 5 * 4  # five plans, two phases, opened and closed: each once
    events = phase_events(db)
    assert len(events) == len(set(events)) == 20


# ------------------------------------------------------------------ cascade across three levels


def cascade_all(db: Database, settings: Settings) -> None:
    """Run the plans consumer's cascade on every PlanIssued in the outbox, as the consumer would."""
    ctx = ServiceContext("plans", settings, db, db.clock, Metrics())
    handle = build_handlers(ctx).handlers["PlanIssued"]
    done: set[str] = set()
    while True:
        with db.reading() as session:
            rows = [row for row in session.exec(select(OutboxRecord)) if row.event_id not in done]
        issued = [row for row in rows if dict(map(tuple, row.headers))["ce_type"] == "PlanIssued"]
        if not issued:
            return
        for row in issued:
            done.add(row.event_id)
            with db.transaction() as uow:
                handle(uow, from_kafka(row.payload, dict(map(tuple, row.headers))))


def test_a_plan_cascades_three_levels_with_earlier_deadlines_deployment_and_registrations(url: str) -> None:
    clock = ManualClock(datetime(2023, 2, 20, 2, tzinfo=UTC))
    db = Database(url, source="/thidua/plans", prefix="t", clock=clock)
    upgrade(db.engine, DEFINITIONS["plans"].migrations)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    try:
        tree = [
            ("vn", Level.national, None),
            ("hn", Level.province, "vn"),
            ("lb", Level.district, "hn"),
            ("lb-1", Level.grassroots, "lb"),
            ("lb-2", Level.grassroots, "lb"),
        ]
        with db.transaction() as uow:
            register_units(
                uow,
                [
                    OrgUnit(id=i, name=i, level=lv, parent_id=p, valid_from=date(2020, 1, 1))
                    for i, lv, p in tree
                ],
            )
            top = issue_plan(
                uow,
                plan(
                    number="1/KH-TLĐ",
                    issuer_unit_id="vn",
                    phases=[{k: v for k, v in PHASES[0].items() if k != "report_due"}],
                    deadlines=[
                        {"kind": "after_phase", "days": 10},
                        {"kind": "fixed", "purpose": "registration", "due_on": "2023-03-20"},
                    ],
                    auto_derive=True,
                ),
            )
        assert top.phases[0].report_due == date(2023, 6, 10)  # from the after-phase rule
        cascade_all(db, settings)
        with db.reading() as session:
            plans = {p.issuer_unit_id: p for p in session.exec(select(Plan))}
            dues = {u: session.get(PlanPhase, (p.id, 1)).report_due for u, p in plans.items()}  # type: ignore[union-attr]
            draft = derived_draft(session, plans["hn"].id, "lb", settings)
        assert sorted(plans) == ["hn", "lb", "vn"]
        assert [ref["issuer_unit_id"] for ref in plans["lb"].lineage] == ["vn", "hn"]
        assert dues == {"vn": date(2023, 6, 10), "hn": date(2023, 6, 8), "lb": date(2023, 6, 6)}
        assert [r["due_on"] for r in plans["lb"].deadlines if r["kind"] == "fixed"] == ["2023-03-16"]
        assert draft.phases[0].report_due == date(2023, 6, 6) and draft.parent_plan_id == plans["hn"].id

        with db.reading() as session:
            assert subtree_deployment(session, top.plan_id) == (2, 0)  # two grassroots unions, none yet
        with db.transaction() as uow:
            acknowledge(uow, plans["lb"].id, "lb-1")
        with db.reading() as session:
            assert subtree_deployment(session, top.plan_id) == (2, 1)
            assert subtree_deployment(session, plans["lb"].id) == (2, 1)
        # The same unit again, by its own system; the other by its system, twice in one batch.
        acks = [("lb-1", plans["lb"].id), ("lb-2", plans["lb"].id), ("lb-2", plans["lb"].id)]
        events = [
            Envelope.wrap(
                PlanAcknowledged(plan_id=plan_id, unit_id=unit_id, acknowledged_at=clock.now()),
                source="/ioffice",
                unit=unit_id,
                time=clock.now(),
            )
            for unit_id, plan_id in acks
        ]
        with db.transaction() as uow:
            assert acknowledge(uow, plans["lb"].id, "lb-1") is False
            assert record_acknowledgements(uow, events) == {}
        with db.reading() as session:
            assert subtree_deployment(session, top.plan_id) == (2, 2)
            assert subtree_deployment(session, plans["hn"].id) == (2, 2)
            counted = session.exec(select(Plan.grassroots_sent, Plan.grassroots_deployed)).all()
            targets = session.exec(select(PlanTarget).where(PlanTarget.level == "grassroots")).all()
        assert sorted(counted) == [(0, 0), (0, 0), (2, 2)]  # the grassroots unions have the district's plan
        assert len(targets) == 2 and all(t.acknowledged_at for t in targets)

        clock.set(datetime(2023, 3, 16, 2, tzinfo=UTC))
        with db.transaction() as uow:
            on_time = register(
                uow, plans["lb"].id, Register(unit_id="lb-1", kind="work", title="Công trình chào mừng")
            )
        clock.set(datetime(2023, 3, 17, 2, tzinfo=UTC))
        with db.transaction() as uow:
            late = register(
                uow, plans["lb"].id, Register(unit_id="lb-2", kind="commitment", title="Đăng ký thi đua")
            )
        assert (on_time.late, late.late, late.due_on) == (False, True, date(2023, 3, 16))
        with pytest.raises(FieldError) as error, db.transaction() as uow:
            register(uow, plans["lb"].id, Register(unit_id="hn", kind="work", title="Không đúng chỗ"))
        assert (error.value.field, error.value.value) == ("unit_id", "hn")
    finally:
        db.dispose()


def test_an_event_reusing_the_id_of_a_plan_issued_here_cascades_only_where_the_plan_was_sent(
    db: Database,
) -> None:
    """The plans service does not check its own plans' events again: one that reuses such a plan's id
    with another target still cascades only to the units the stored plan was sent to."""
    with db.transaction() as uow:
        issue_plan(uow, plan(target_unit_ids=["lb"], auto_derive=True))
    with db.reading() as session:
        records = [
            from_kafka(row.payload, dict(map(tuple, row.headers)))
            for row in session.exec(select(OutboxRecord))
        ]
    (genuine,) = [record for record in records if record.type == "PlanIssued"]
    assert isinstance(genuine.data, PlanIssued)
    hk = Target(unit_id="hk", name="LĐLĐ quận Hoàn Kiếm", level=Level.district)
    forged = Envelope.wrap(
        genuine.data.model_copy(update={"targets": [*genuine.data.targets, hk]}),
        source="/elsewhere",
        unit="hn",
        time=db.clock.now(),
    )
    ctx = ServiceContext("plans", Settings(_env_file=None), db, db.clock, Metrics())  # type: ignore[call-arg]
    handle = build_handlers(ctx).handlers["PlanIssued"]
    with pytest.raises(EventRejected) as refused, db.transaction() as uow:
        handle(uow, forged)
    assert refused.value.reason == "rule_violation" and "hk cannot cascade it" in refused.value.detail
    with db.transaction() as uow:
        handle(uow, genuine)
    with db.reading() as session:
        assert sorted(session.exec(select(Plan.issuer_unit_id))) == ["hn", "lb"]


def test_acknowledgements_from_the_units_systems_are_kept_once_and_the_wrong_ones_refused(
    db: Database,
) -> None:
    with db.transaction() as uow:
        plan_id = issue_plan(uow, plan()).plan_id  # sent to the districts lb and hk

    def ack(sender: str, unit_id: str, plan: str = plan_id) -> Envelope:
        event = PlanAcknowledged(plan_id=plan, unit_id=unit_id, acknowledged_at=db.clock.now())
        return Envelope.wrap(event, source="/ioffice", unit=sender, time=db.clock.now())

    def acknowledged() -> dict[str, datetime | None]:
        with db.reading() as session:
            targets = session.exec(select(PlanTarget).where(PlanTarget.plan_id == plan_id))
            return {t.unit_id: t.acknowledged_at and t.acknowledged_at.replace(tzinfo=UTC) for t in targets}

    first = [ack("lb", "lb"), ack("lb", "lb"), ack("lb", "hk"), ack("lb-1", "lb-1"), ack("hk", "hk", "nope")]
    with db.transaction() as uow:
        refused = record_acknowledgements(uow, first)
    assert {event_id: rejection.reason for event_id, rejection in refused.items()} == {
        first[2].id: "unauthorized",  # lb acknowledging for hk
        first[3].id: "rule_violation",  # lb-1 was not sent the plan
    }  # a plan of another registry's subtree is passed over, not refused
    assert "lb-1" in str(refused[first[3].id])
    assert acknowledged() == {"lb": datetime(2023, 2, 20, tzinfo=UTC), "hk": None}

    db.clock.set(datetime(2023, 2, 22, tzinfo=UTC))  # type: ignore[attr-defined]
    with db.transaction() as uow:
        assert record_acknowledgements(uow, [ack("lb", "lb"), ack("hk", "hk")]) == {}
    # The first acknowledgement stands: a unit's system sending it again changes nothing.
    assert acknowledged() == {
        "lb": datetime(2023, 2, 20, tzinfo=UTC),
        "hk": datetime(2023, 2, 22, tzinfo=UTC),
    }

    with db.transaction() as uow:
        revoke_plan(uow, plan_id, "thay bằng kế hoạch khác")
    late = ack("hk", "hk")
    with db.transaction() as uow:
        refused = record_acknowledgements(uow, [late])
    assert refused[late.id].reason == "rule_violation" and "this one is revoked" in str(refused[late.id])


# ------------------------------------------------------------------ drafts


async def test_a_draft_is_kept_as_written_checked_without_issuing_then_issued(db: Database) -> None:
    app = FastAPI()
    install_error_handlers(app)
    settings = Settings(secret_key=SecretStr("drafts"), _env_file=None)  # type: ignore[call-arg]
    app.state.settings = settings
    ctx = ServiceContext("plans", settings, db, db.clock, Metrics())
    app.include_router(DEFINITIONS["plans"].api(ctx), prefix="/plans")
    client = api_client(app, settings, "http://plans")
    body: dict[str, Any] = {
        "number": "12/KH-LĐLĐ",
        "issuer_unit_id": "hn",
        "title": "Thi đua",
        "issued_on": "2023-02-21",
    }
    draft = (
        await client.post("/plans/drafts", json={"unit_id": "hn", "body": body, "source": "19-KH.txt"})
    ).json()

    async def check() -> dict[str, Any]:
        return (await client.post(f"/plans/drafts/{draft['id']}/check")).json()

    unfinished = await check()
    assert not unfinished["ready"]
    assert unfinished["errors"] == [
        {"field": "phases", "value": None, "message": "a value: this field is required"}
    ]

    body.update(
        phases=PHASES,
        indicators=[{"code": "staff", "name": "CNVCLĐ có sáng kiến / tổng số", "kind": "ratio"}],
        goals=[
            {
                "text": "≥ 20% CNVCLĐ có sáng kiến",
                "indicator": "staf",
                "comparator": ">=",
                "value": 20,
                "unit": "%",
            }
        ],
        movements=["Lao động giỏi, Lao động sáng tạo", "Giỏi việc nước, đảm việc nhà"],
        content={"enterprise": "Năng suất, chất lượng, hiệu quả", "school": "Dạy tốt, học tốt"},
        signer={"authority": "TM.", "position": "CHỦ TỊCH", "name": "Nguyễn Văn A"},
        place="Hà Nội",
    )
    assert (await client.put(f"/plans/drafts/{draft['id']}", json=body)).status_code == 200
    assert (await check())["errors"][0]["field"] == "goals[1].indicator"
    with db.reading() as session:  # checking kept nothing
        assert session.exec(select(Plan)).all() == []

    body["goals"][0]["indicator"] = "staff"
    await client.put(f"/plans/drafts/{draft['id']}", json=body)
    assert (await check()) == {"ready": True, "errors": [], "warnings": []}
    issued = await client.post(f"/plans/drafts/{draft['id']}/issue")
    assert issued.status_code == 201, issued.text
    plan_id = issued.json()["plan_id"]
    assert issued.json()["signer"]["name"] == "Nguyễn Văn A"
    stored = (await client.get(f"/plans/drafts/{draft['id']}")).json()
    assert (stored["status"], stored["plan_id"], stored["source"]) == ("issued", plan_id, "19-KH.txt")
    again = await client.post(f"/plans/drafts/{draft['id']}/issue")
    assert again.status_code == 422 and again.json()["detail"][0]["field"] == "draft_id"
    details = (await client.get(f"/plans/plans/{plan_id}")).json()["details"]
    assert (
        details["movements"][1] == "Giỏi việc nước, đảm việc nhà"
        and details["content"]["school"] == "Dạy tốt, học tốt"
    )

    # A unit below inherits movements, content and goals in its derived draft.
    derived = (await client.get(f"/plans/plans/{plan_id}/derived-draft", params={"unit_id": "lb"})).json()
    assert (derived["movements"], derived["goals"][0]["indicator"]) == (body["movements"], "staff")
    await client.aclose()
