"""Reporting end to end: a unit that moves mid-plan, reports arriving out of order and twice, corrections,
approval and return, consolidation up the chain with acceptance, and the XLSX officers send upward."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import openpyxl

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from shared.events import Envelope, ReportSubmitted
from shared.topics import topic_name
from tests.integration.helpers import api_client, produce_events

UNITS = [
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "valid_from": "2020-01-01"},
    {
        "id": "lb",
        "name": "LĐLĐ quận Long Biên",
        "level": "district",
        "parent_id": "hn",
        "valid_from": "2020-01-01",
    },
    {
        "id": "hk",
        "name": "LĐLĐ quận Hoàn Kiếm",
        "level": "district",
        "parent_id": "hn",
        "valid_from": "2020-01-01",
    },
    *(
        {
            "id": unit,
            "name": f"CĐCS {unit}",
            "level": "grassroots",
            "parent_id": unit[:2],
            "valid_from": "2020-01-01",
        }
        for unit in ("lb-1", "lb-2", "lb-3", "hk-1", "hk-2")
    ),
]
PHASES = [
    {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-05-31", "report_due": "2023-06-07"},
    {"seq": 2, "label": "Đợt 2", "start": "2023-06-01", "end": "2023-09-30", "report_due": "2023-10-07"},
]
INDICATORS = [
    {"code": "new_members", "name": "Đoàn viên mới", "kind": "count"},
    {"code": "staff", "name": "CNVCLĐ có sáng kiến / tổng số", "kind": "ratio"},
]


def values(members: int, numerator: int = 1, denominator: int = 10) -> dict[str, Any]:
    return {"new_members": members, "staff": {"numerator": numerator, "denominator": denominator}}


def counts(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(row[name] for name in ("expected", "received", "on_time", "late", "missing"))


async def test_reports_move_up_exactly_through_moves_reordering_review_and_consolidation(
    runtime: Runtime,
) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    client = api_client(create_app(runtime, manage_lifecycle=False), runtime.settings)
    await expect(client, "POST", "/plans/org/units", 201, json=UNITS)
    city = await expect(
        client,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "80/KH-LĐLĐ",
            "issuer_unit_id": "hn",
            "title": "Thi đua chào mừng Đại hội",
            "issued_on": "2023-02-21",
            "phases": PHASES,
            "indicators": INDICATORS,
            "auto_derive": True,
        },
    )
    city_id = city["plan_id"]

    async def derived() -> dict[str, str] | None:
        plans = await expect(client, "GET", f"/plans/plans?campaign_id={city_id}", 200)
        found = {p["issuer_unit_id"]: p["id"] for p in plans if p["parent_plan_id"] == city_id}
        return found if len(found) == 2 else None

    plan = await wait_for(derived, "the districts' plans")

    async def table(plan_id: str, phase: int) -> dict[str, Any]:
        return await expect(client, "GET", f"/reporting/plans/{plan_id}/phases/{phase}/completeness", 200)

    async def targets(plan_id: str, phase: int) -> list[str] | None:
        response = await client.get(f"/reporting/plans/{plan_id}/phases/{phase}/completeness")
        return [row["unit_id"] for row in response.json()["units"]] if response.status_code == 200 else None

    await wait_for(lambda: targets(plan["hk"], 1), "reporting to learn the plans")

    # lb-3 moves to Hoàn Kiếm from 1 June: phase 1 stays with Long Biên, phase 2 goes to Hoàn Kiếm.
    move = {"new_parent_id": "hk", "effective_on": "2023-06-01"}
    await expect(client, "POST", "/plans/org/units/lb-3/move", 204, json=move)

    async def moved() -> bool:
        return await targets(plan["hk"], 2) == ["hk-1", "hk-2", "lb-3"]

    await wait_for(moved, "reporting to learn the move")
    assert await targets(plan["lb"], 1) == ["lb-1", "lb-2", "lb-3"]
    assert await targets(plan["lb"], 2) == ["lb-1", "lb-2"]
    assert counts((await table(city_id, 2))["total"])[0] == 5

    # Phase 1 reports, through the API.
    clock.set(local("2023-06-03"))
    for unit, members in (("lb-1", 3), ("lb-2", 4), ("lb-3", 5)):
        body = {"plan_id": plan["lb"], "phase_seq": 1, "unit_id": unit, "values": values(members)}
        await expect(client, "POST", "/reporting/reports", 202, json=body)
    # hk-1's report comes from another system: a newer version first, then an older one, then a repeat.
    newer = report(plan["hk"], "hk-1", 7, clock, hours=5)
    older = report(plan["hk"], "hk-1", 2, clock, hours=1)
    reports_topic = topic_name(runtime.settings.topic_prefix, "reports")
    await produce_events(runtime.bootstrap_servers, reports_topic, [newer, older, newer])

    async def hk_counted() -> dict[str, Any] | None:
        hk = await table(plan["hk"], 1)
        return hk if hk["total"]["received"] == 1 else None

    hk = await wait_for(hk_counted, "hk-1's report")
    assert hk["total"]["figures"]["new_members"] == 7  # the latest version, counted once

    # A report on the wrong plan is refused, naming the field.
    wrong = await client.post(
        "/reporting/reports",
        json={"plan_id": plan["lb"], "phase_seq": 2, "unit_id": "lb-3", "values": values(1)},
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["field"] == "unit_id"

    # Long Biên is complete: its consolidated report goes up by itself.
    async def consolidated(version: int) -> dict[str, Any] | None:
        rows = await expect(client, "GET", f"/reporting/plans/{city_id}/phases/1/consolidations", 200)
        lb = next((row for row in rows if row["unit_id"] == "lb"), None)
        return lb if lb and lb["version"] == version else None

    lb_sent = await wait_for(lambda: consolidated(1), "Long Biên's consolidated report")
    assert (
        lb_sent["automatic"]
        and lb_sent["counts"]["received"] == 3
        and lb_sent["figures"]["new_members"] == 12
    )

    # Review: only the issuer reviews; approve locks; return (with a reason) reopens.
    reviews = f"/reporting/plans/{plan['lb']}/phases/1/reviews"
    stranger = await client.post(reviews, json={"unit_id": "lb-1", "action": "approve", "by_unit_id": "hk"})
    assert stranger.status_code == 422 and stranger.json()["detail"][0]["field"] == "by_unit_id"
    await expect(
        client, "POST", reviews, 204, json={"unit_id": "lb-1", "action": "approve", "by_unit_id": "lb"}
    )
    locked = await client.post(
        "/reporting/reports",
        json={"plan_id": plan["lb"], "phase_seq": 1, "unit_id": "lb-1", "values": values(9)},
    )
    assert locked.status_code == 422 and "approved by lb" in locked.json()["detail"][0]["message"]
    no_reason = await client.post(reviews, json={"unit_id": "lb-2", "action": "return", "by_unit_id": "lb"})
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["field"] == "reason"
    back = {"unit_id": "lb-2", "action": "return", "by_unit_id": "lb", "reason": "Số đoàn viên mới chưa khớp"}
    await expect(client, "POST", reviews, 204, json=back)
    assert (await table(plan["lb"], 1))["units"][1]["review"] == "returned"
    clock.set(local("2023-06-04"))
    body = {"plan_id": plan["lb"], "phase_seq": 1, "unit_id": "lb-2", "values": values(6)}
    await expect(client, "POST", "/reporting/reports", 202, json=body)
    lb_sent = await wait_for(lambda: consolidated(2), "Long Biên's corrected consolidated report")
    assert lb_sent["figures"]["new_members"] == 14

    # The city accepts Long Biên's report: the whole subtree is locked, until the city returns it.
    city_reviews = f"/reporting/plans/{city_id}/phases/1/reviews"
    await expect(
        client, "POST", city_reviews, 204, json={"unit_id": "lb", "action": "accept", "by_unit_id": "hn"}
    )
    body = {"plan_id": plan["lb"], "phase_seq": 1, "unit_id": "lb-3", "values": values(8)}
    refused = await client.post("/reporting/reports", json=body)
    assert refused.status_code == 422 and "accepted by hn" in refused.json()["detail"][0]["message"]
    again = {"unit_id": "lb", "action": "return", "by_unit_id": "hn", "reason": "Bổ sung số liệu CĐCS lb-3"}
    await expect(client, "POST", city_reviews, 204, json=again)
    await expect(client, "POST", "/reporting/reports", 202, json=body)
    await wait_for(lambda: consolidated(3), "Long Biên's report after the city returned it")

    # The phase-1 deadline passes: hk-2 is missing. Phase 2: lb-3 reports to Hoàn Kiếm.
    clock.set(local("2023-06-09"))
    await runtime.tick()
    clock.set(local("2023-10-02"))
    for unit, plan_of in (("lb-3", "hk"), ("hk-1", "hk"), ("lb-1", "lb")):
        body = {"plan_id": plan[plan_of], "phase_seq": 2, "unit_id": unit, "values": values(10, 2, 20)}
        await expect(client, "POST", "/reporting/reports", 202, json=body)

    async def settled() -> tuple[dict, dict] | None:
        first, second = await table(city_id, 1), await table(city_id, 2)
        return (
            (first, second) if first["total"]["missing"] == 1 and second["total"]["received"] == 3 else None
        )

    first, second = await wait_for(settled, "the city's figures")
    assert counts(first["total"]) == (5, 4, 4, 0, 1)
    assert first["total"]["figures"] == {
        "new_members": 3 + 6 + 8 + 7,
        "staff.denominator": 40,
        "staff.numerator": 4,
    }
    by_unit = {row["unit_id"]: row for row in first["units"]}
    assert counts(by_unit["lb"]) == (3, 3, 3, 0, 0) and counts(by_unit["hk"]) == (2, 1, 1, 0, 1)
    assert by_unit["lb"]["review"] == "submitted"  # returned by the city, consolidated again
    assert counts(second["total"])[:2] == (5, 3)
    by_unit = {row["unit_id"]: row for row in second["units"]}
    assert counts(by_unit["hk"])[:2] == (3, 2) and counts(by_unit["lb"])[:2] == (2, 1)

    # The unit whose report was returned was told why.
    async def told() -> list[dict[str, Any]] | None:
        rows = await expect(client, "GET", "/notifications/deliveries?kind=report_returned", 200)
        return rows if len(rows) == 2 else None

    returned = await wait_for(told, "the units whose reports were returned to be told")
    assert {
        (row["recipient_unit_id"], "chưa khớp" in row["subject"] or "lb-3" in row["subject"])
        for row in returned
    } == {
        ("lb-2", True),
        ("lb", True),
    }

    # The XLSX and CSV carry the same figures as the API.
    xlsx = await client.get(f"/reporting/plans/{city_id}/phases/1/export.xlsx")
    assert xlsx.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    lines = [list(row) for row in sheet.iter_rows(values_only=True)]
    heading_at = next(i for i, row in enumerate(lines) if row and row[0] == "Đơn vị")
    heading, body_rows = lines[heading_at], lines[heading_at + 1 :]
    total = next(row for row in body_rows if row[0] == "Tổng cộng")
    assert tuple(total[1:6]) == counts(first["total"])
    column = heading.index("Đoàn viên mới")
    assert total[column] == first["total"]["figures"]["new_members"]
    districts = [row for row in body_rows if row[0] in ("LĐLĐ quận Hoàn Kiếm", "LĐLĐ quận Long Biên")]
    assert sum(row[column] for row in districts) == total[column]
    assert total[heading.index("CNVCLĐ có sáng kiến / tổng số — tỷ lệ (%)")] == 10.0
    exported = list(
        csv.reader(io.StringIO((await client.get(f"/reporting/plans/{city_id}/phases/1/export.csv")).text))
    )
    assert exported[-1][:6] == ["Tổng cộng", *map(str, counts(first["total"]))]
    await client.aclose()


def report(plan_id: str, unit: str, members: int, clock: ManualClock, hours: int) -> Envelope:
    data = ReportSubmitted(
        report_id=f"{unit}-{members}",
        plan_id=plan_id,
        phase_seq=1,
        unit_id=unit,
        values=values(members),
        submitted_at=clock.now() + timedelta(hours=hours),
    )
    return Envelope.wrap(data, source="/another-system", unit=unit, time=clock.now())
