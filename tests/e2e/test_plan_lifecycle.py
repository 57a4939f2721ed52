"""A plan's life over the real broker: an open start, a phase ending at a milestone dated later (and
moved), the cascade re-planning, an amendment, and a revocation that takes the whole cascade with it."""

from __future__ import annotations

from typing import Any

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from tests.integration.helpers import api_client

UNITS = [
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "valid_from": "2020-01-01"},
    {
        "id": "lb",
        "name": "LĐLĐ quận Long Biên",
        "level": "district",
        "parent_id": "hn",
        "valid_from": "2020-01-01",
    },
    {"id": "lb-1", "name": "CĐCS 1", "level": "grassroots", "parent_id": "lb", "valid_from": "2020-01-01"},
    {"id": "lb-2", "name": "CĐCS 2", "level": "grassroots", "parent_id": "lb", "valid_from": "2020-01-01"},
]
CONGRESS = {"id": "dai-hoi-v", "name": "Đại hội Công đoàn quận Long Biên lần thứ V"}


async def test_milestones_replan_the_cascade_and_revocation_takes_it_down(runtime: Runtime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    client = api_client(create_app(runtime, manage_lifecycle=False), runtime.settings, "http://t")
    await expect(client, "POST", "/plans/org/units", 201, json=UNITS)
    city = await expect(
        client,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "19/KH-LĐLĐ",
            "issuer_unit_id": "hn",
            "title": "Đợt thi đua cao điểm chào mừng Đại hội",
            "issued_on": "2023-03-02",
            "phases": [
                {"seq": 1, "label": "Đợt 1: từ khi phát động", "end": "2023-04-30"},
                {
                    "seq": 2,
                    "label": "Đợt 2: đến Đại hội",
                    "start": "2023-05-01",
                    "end_milestone": "dai-hoi-v",
                },
            ],
            "milestones": [CONGRESS],
            "deadlines": [
                {"kind": "after_phase", "days": 5, "text": "chậm nhất sau 5 ngày kết thúc từng đợt"}
            ],
            "indicators": [{"code": "new_members", "name": "Đoàn viên mới", "kind": "count"}],
            "auto_derive": True,
        },
    )
    city_id = city["plan_id"]
    assert city["phases"][0]["start"] == "2023-03-02" and city["phases"][0]["report_due"] == "2023-05-05"
    assert city["phases"][1]["end"] is None and city["phases"][1]["report_due"] is None

    async def district() -> dict[str, Any] | None:
        plans = await expect(client, "GET", "/plans/plans?issuer_unit_id=lb", 200)
        return plans[0] if plans else None

    lb_id = (await wait_for(district, "Long Biên's plan"))["id"]

    async def phases(plan_id: str) -> list[dict[str, Any]]:
        return (await expect(client, "GET", f"/plans/plans/{plan_id}", 200))["phases"]

    lb_phases = await phases(lb_id)
    assert (lb_phases[0]["report_due"], lb_phases[1]["end"]) == ("2023-05-03", None)

    async def reporting_due(phase: int, want: str | None) -> bool:
        response = await client.get(f"/reporting/plans/{lb_id}/phases/{phase}/completeness")
        return response.status_code == 200 and response.json()["report_due"] == want

    await wait_for(lambda: reporting_due(2, None), "reporting to learn the plan")
    clock.set(local("2023-06-01"))
    early = await client.post(
        "/reporting/reports",
        json={"plan_id": lb_id, "phase_seq": 2, "unit_id": "lb-1", "values": {"new_members": 1}},
    )
    assert early.status_code == 422
    assert "ends at a milestone not yet dated" in early.json()["detail"][0]["message"]

    # The congress is dated: the city's phase 2 ends then and falls due by its rule; Long Biên follows.
    milestone = f"/plans/plans/{city_id}/milestones/dai-hoi-v"
    await expect(client, "POST", milestone, 204, json={"on": "2023-07-15"})
    assert [(p["end"], p["report_due"]) for p in await phases(city_id)][1] == ("2023-07-15", "2023-07-20")
    await wait_for(lambda: reporting_due(2, "2023-07-18"), "Long Biên's phase 2 to follow the congress")
    assert (await phases(lb_id))[1]["end"] == "2023-07-15"

    # The congress moves: everything moves with it.
    await expect(client, "POST", milestone, 204, json={"on": "2023-07-20"})
    await wait_for(lambda: reporting_due(2, "2023-07-23"), "Long Biên's phase 2 to follow the moved congress")
    too_soon = await client.post(milestone, json={"on": "2023-04-01"})
    assert too_soon.status_code == 422 and too_soon.json()["detail"][0]["field"] == "on"

    clock.set(local("2023-07-21"))
    report = {"plan_id": lb_id, "phase_seq": 2, "unit_id": "lb-1", "values": {"new_members": 4}}
    sent = await expect(client, "POST", "/reporting/reports", 202, json=report)
    assert sent["on_time"]  # due 23/7 now; it would have been late against 18/7

    # Long Biên amends its plan: a new indicator, a new version, the reason kept.
    amended = await expect(
        client,
        "POST",
        f"/plans/plans/{lb_id}/amendments",
        201,
        json={
            "reason": "Bổ sung chỉ tiêu công trình",
            "indicators": [
                {"code": "new_members", "name": "Đoàn viên mới", "kind": "count"},
                {"code": "works", "name": "Công trình, phần việc", "kind": "count"},
            ],
        },
    )
    assert (amended["version"], amended["changed"]) == (2, ["indicators"])
    history = await expect(client, "GET", f"/plans/plans/{lb_id}/amendments", 200)
    assert [(h["version"], h["reason"]) for h in history] == [(2, "Bổ sung chỉ tiêu công trình")]

    async def takes_works() -> bool:
        body = {"plan_id": lb_id, "phase_seq": 2, "unit_id": "lb-2", "values": {"new_members": 2, "works": 1}}
        return (await client.post("/reporting/reports", json=body)).status_code == 202

    await wait_for(takes_works, "reporting to learn the amendment")

    async def city_total(phase: int) -> dict[str, Any]:
        return (await expect(client, "GET", f"/reporting/plans/{city_id}/phases/{phase}/completeness", 200))[
            "total"
        ]

    async def counted() -> bool:
        return (await city_total(2))["figures"] == {"new_members": 6, "works": 1}

    await wait_for(counted, "both reports at the city")
    assert ((await city_total(2))["expected"], (await city_total(1))["expected"]) == (2, 2)

    # The city revokes its plan: Long Biên's is revoked with it, and nothing is expected any more.
    await expect(
        client, "POST", f"/plans/plans/{city_id}/revocation", 204, json={"reason": "Thay bằng kế hoạch mới"}
    )

    async def revoked() -> bool:
        return (await expect(client, "GET", f"/plans/plans/{lb_id}", 200))["status"] == "revoked"

    await wait_for(revoked, "the revocation to cascade")

    async def emptied() -> bool:
        first, second = await city_total(1), await city_total(2)
        nothing = not any(second["figures"].values())
        return (first["expected"], second["expected"], second["received"]) == (0, 0, 0) and nothing

    await wait_for(emptied, "reporting to stop expecting the revoked plans' reports")
    refused = await client.post("/reporting/reports", json={**report, "values": {"new_members": 9}})
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "plan_id"
    ack = await client.post(f"/plans/plans/{lb_id}/acknowledgements", json={"unit_id": "lb-1"})
    assert ack.status_code == 422 and "revoked" in ack.json()["detail"][0]["message"]
    await client.aclose()
