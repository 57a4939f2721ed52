"""The skeleton campaign over the real broker, every service with its own database (SQLite, PostgreSQL)."""

from __future__ import annotations

from sqlmodel import col, select

from services import demo
from services.plans.models import PlanPhase
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from shared.storage import OutboxRecord
from tests.integration.helpers import api_client


async def test_a_campaign_cascades_down_and_its_figures_add_up_exactly(runtime: Runtime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    async with api_client(create_app(runtime, manage_lifecycle=False), runtime.settings) as client:
        result = await demo.run_flow(client, clock, runtime.tick)
        assert demo.mismatches(result) == []

        truth = result["truth"]
        city = result["city"]
        assert city["total"]["expected"] == 36
        assert city["total"]["received"] == truth.city_row()["received"] > 0
        assert city["total"]["late"] > 0 and city["total"]["missing"] > 0
        assert [row["unit_id"] for row in city["units"]] == ["hn-cg", "hn-hk", "hn-lb"]
        assert city["rules"]["initiative_staff"] == "sum of numerators / sum of denominators"

        # Every district derived its own plan with an earlier deadline, and every union deployed it.
        for district_id, plan in result["derived"].items():
            detail = (await client.get(f"/plans/plans/{plan['id']}")).json()
            assert detail["phases"][0]["report_due"] == "2023-06-05"
            assert detail["lineage"] == [{"plan_id": result["city_plan"]["plan_id"], "issuer_unit_id": "hn"}]
            deployment = (await client.get(f"/plans/plans/{plan['id']}/deployment")).json()
            assert (deployment["expected"], deployment["deployed"]) == (12, 12), district_id
        city_deployment = (
            await client.get(f"/plans/plans/{result['city_plan']['plan_id']}/deployment")
        ).json()
        assert city_deployment["deployed"] == 3

        # The corrected reports count once, with their latest figures; every version is kept.
        versions = (await client.get(f"/reporting/reports?plan_id={result['derived']['hn-lb']['id']}")).json()
        by_unit: dict[str, int] = {}
        for version in versions:
            by_unit[version["unit_id"]] = by_unit.get(version["unit_id"], 0) + 1
        corrected = [unit for unit, count in by_unit.items() if count > 1]
        for unit in corrected:
            row = next(r for r in result["districts"]["hn-lb"]["units"] if r["unit_id"] == unit)
            assert row["figures"] == truth.figures[unit]

        # Notifications: one per (event, recipient, channel), of each kind.
        kinds: dict[str, int] = {}
        for delivery in result["deliveries"]:
            kinds[delivery["kind"]] = kinds.get(delivery["kind"], 0) + 1
        overdue = sum(state != "on_time" for state in truth.status.values())
        assert kinds == {"plan_issued": 39, "overdue": 2 * overdue, "nomination": 6}

    # Each phase event was written once, however many ticks ran.
    with runtime.contexts["plans"].db.reading() as session:
        closed = session.exec(select(PlanPhase).where(col(PlanPhase.closed_at).is_not(None))).all()
        assert len(closed) == 4  # phase 1 of the city plan and of the three district plans
        phase_events = [
            row
            for row in session.exec(select(OutboxRecord)).all()
            if dict(map(tuple, row.headers))["ce_type"] in ("PhaseOpened", "PhaseClosed")
        ]
        assert len(phase_events) == 4 + 4 + 4  # phase 1 opened and closed, phase 2 opened, per plan

    # Each service published only what it declares (the AsyncAPI document is built from that).
    for definition in runtime.definitions:
        with runtime.contexts[definition.name].db.reading() as session:
            published = {
                dict(map(tuple, row.headers))["ce_type"]
                for row in session.exec(select(OutboxRecord)).all()
                if not row.topic.endswith(".dlq")
            }
        declared = {event_type.type_name() for event_type in definition.publishes}
        assert published and published <= declared, definition.name
