"""Awards over the real broker: nominations checked against the year's rules, council votes, decisions
numbered per body per year, forwarding up to the national level within each plan's quota, revocation,
and the statistics."""

from __future__ import annotations

from typing import Any

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from tests.integration.helpers import api_client

UNITS = [
    {"id": "vn", "name": "Tổng LĐLĐ Việt Nam", "level": "national"},
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "parent_id": "vn"},
    {"id": "lb", "name": "LĐLĐ quận Long Biên", "level": "district", "parent_id": "hn"},
    {"id": "lb-1", "name": "CĐCS Long Biên 1", "level": "grassroots", "parent_id": "lb"},
    {"id": "lb-2", "name": "CĐCS Long Biên 2", "level": "grassroots", "parent_id": "lb"},
]
GOOD_FACTS = {"members": 20, "members_completing": 20, "lao_dong_tien_tien": 15, "chien_si_thi_dua": 1}


async def test_nominations_go_up_to_the_level_that_may_grant_them(runtime: Runtime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    client = api_client(create_app(runtime, manage_lifecycle=False), runtime.settings, "http://t")
    await expect(
        client, "POST", "/plans/org/units", 201, json=[{**u, "valid_from": "2020-01-01"} for u in UNITS]
    )
    national = await expect(
        client,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "1/KH-TLĐ",
            "issuer_unit_id": "vn",
            "title": "Lao động giỏi, lao động sáng tạo",
            "issued_on": "2023-02-21",
            "phases": [
                {
                    "seq": 1,
                    "label": "Năm 2023",
                    "start": "2023-03-01",
                    "end": "2023-05-31",
                    "report_due": "2023-06-10",
                }
            ],
            "indicators": [{"code": "works", "name": "Công trình", "kind": "count"}],
            "award_quota": {"collectives": 1, "individuals": 1},
            "auto_derive": True,
        },
    )

    async def plan_of(unit: str) -> str | None:
        plans = await expect(client, "GET", f"/plans/plans?issuer_unit_id={unit}", 200)
        return plans[0]["id"] if plans else None

    lb_plan = await wait_for(lambda: plan_of("lb"), "the cascade down to the district")
    hn_plan = await plan_of("hn")

    async def known(path: str) -> bool:
        return (await client.get(path)).status_code == 200

    await wait_for(lambda: known(f"/reporting/plans/{lb_plan}/phases/1/completeness"), "reporting")

    async def awards_knows_the_plans() -> bool:
        quotas = [(lb_plan, "lb-1"), (hn_plan, "lb"), (national["plan_id"], "hn")]
        return all([await known(f"/awards/plans/{plan}/quota?unit_id={unit}") for plan, unit in quotas])

    await wait_for(awards_knows_the_plans, "awards to learn the plans of every level")
    clock.set(local("2023-06-03"))
    await expect(
        client,
        "POST",
        "/reporting/reports",
        202,
        json={"plan_id": lb_plan, "phase_seq": 1, "unit_id": "lb-1", "values": {"works": 2}},
    )
    clock.set(local("2023-06-08"))  # after Long Biên's deadline (6/6): late
    await expect(
        client,
        "POST",
        "/reporting/reports",
        202,
        json={"plan_id": lb_plan, "phase_seq": 1, "unit_id": "lb-2", "values": {"works": 1}},
    )
    clock.set(local("2023-06-20"))

    async def nominate(unit: str, kind: str, name: str, award: str, **extra: Any) -> dict[str, Any]:
        body = {
            "plan_id": lb_plan,
            "unit_id": unit,
            "nominee_kind": kind,
            "nominee_name": name,
            "award": award,
        }
        return await expect(client, "POST", "/awards/nominations", 201, json={**body, **extra})

    async def passes(nomination: str, by: str, yes: int = 5, members: int = 9) -> dict[str, Any]:
        ballot = {"by_unit_id": by, "members": members, "yes": yes, "no": members - yes}
        return await expect(client, "POST", f"/awards/nominations/{nomination}/votes", 201, json=ballot)

    first = await nominate(
        "lb-1",
        "collective",
        "CĐCS Long Biên 1",
        "tap_the_lao_dong_xuat_sac",
        nominee_unit_id="lb-1",
        facts=GOOD_FACTS,
        achievement_ids=["sk-1"],
    )
    collective = first["nomination_id"]
    assert first["to_unit_id"] == "lb"

    async def eligible() -> bool:  # awards learns the reports from the reports stream
        return (await expect(client, "GET", f"/awards/nominations/{collective}", 200))["failed_rules"] == []

    await wait_for(eligible, "awards to learn that lb-1 reported on time")

    # Vote thresholds: more than half of the council's members.
    weak = await nominate(
        "lb-2",
        "collective",
        "CĐCS Long Biên 2",
        "tap_the_lao_dong_xuat_sac",
        nominee_unit_id="lb-2",
        facts=GOOD_FACTS,
        achievement_ids=["sk-9"],
    )
    failed = await passes(weak["nomination_id"], "lb", yes=4, members=8)
    assert failed["passed"] is False
    wrong_council = await client.post(
        f"/awards/nominations/{collective}/votes", json={"by_unit_id": "hn", "members": 5, "yes": 5, "no": 0}
    )
    assert wrong_council.status_code == 422 and wrong_council.json()["detail"][0]["field"] == "by_unit_id"
    assert (await passes(collective, "lb"))["passed"] is True

    # The district grants Tập thể lao động xuất sắc itself: decision 1/QĐ-lb.
    decided = await expect(
        client, "POST", f"/awards/nominations/{collective}/decision", 201, json={"by_unit_id": "lb"}
    )
    assert decided["decision_number"] == "1/QĐ-lb"

    # An individual for the national federation's Bằng khen goes up three levels.
    person = await nominate(
        "lb-1",
        "individual",
        "Nguyễn Văn B",
        "bang_khen_tong_ldld",
        nominee_unit_id="lb-1",
        achievement_ids=["sk-2"],
        direct_production=True,
    )
    pid = person["nomination_id"]
    over_quota = await client.post(
        "/awards/nominations",
        json={
            "plan_id": lb_plan,
            "unit_id": "lb-1",
            "nominee_kind": "individual",
            "nominee_name": "Một người nữa",
            "award": "bang_khen_tong_ldld",
        },
    )
    assert over_quota.status_code == 422 and over_quota.json()["detail"][0]["field"] == "nominee_kind"
    await passes(pid, "lb")
    too_low = await client.post(f"/awards/nominations/{pid}/decision", json={"by_unit_id": "lb"})
    assert too_low.status_code == 422 and "a national unit" in too_low.json()["detail"][0]["message"]
    up = await expect(client, "POST", f"/awards/nominations/{pid}/forward", 200, json={"by_unit_id": "lb"})
    assert (up["to_unit_id"], up["plan_id"]) == ("hn", hn_plan)
    await passes(pid, "hn", yes=7, members=11)
    up = await expect(client, "POST", f"/awards/nominations/{pid}/forward", 200, json={"by_unit_id": "hn"})
    assert (up["to_unit_id"], up["plan_id"]) == ("vn", national["plan_id"])
    await passes(pid, "vn", yes=10, members=15)
    top = await expect(client, "POST", f"/awards/nominations/{pid}/decision", 201, json={"by_unit_id": "vn"})
    assert top["decision_number"] == "1/QĐ-vn"
    assert (await expect(client, "GET", f"/awards/nominations/{pid}", 200))["path"] == [
        "lb-1",
        "lb",
        "hn",
        "vn",
    ]

    # Long Biên may forward only one individual to the city: the next is refused.
    second = await nominate("lb-2", "individual", "Trần Thị C", "bang_khen_ldld_tinh", nominee_unit_id="lb-2")
    await passes(second["nomination_id"], "lb")
    refused = await client.post(
        f"/awards/nominations/{second['nomination_id']}/forward", json={"by_unit_id": "lb"}
    )
    assert refused.status_code == 422
    assert (
        refused.json()["detail"][0]["field"] == "nominee_kind"
        and "at most 1 individual" in refused.json()["detail"][0]["message"]
    )

    # A rule that fails stops the decision, named with its facts: lb-2's report was late.
    strict = (await expect(client, "GET", f"/awards/nominations/{weak['nomination_id']}", 200))[
        "failed_rules"
    ]
    assert [rule["rule"] for rule in strict] == ["reports_on_time"] and strict[0]["facts"] == {
        "reports_on_time": False
    }

    # The quota state, as Long Biên sees it at the city.
    state = await expect(client, "GET", f"/awards/plans/{hn_plan}/quota?unit_id=lb", 200)
    assert (state["to_unit_id"], state["individuals"]["allowed"], state["individuals"]["used"]) == (
        "hn",
        1,
        1,
    )
    assert state["collectives"]["used"] == 0
    no_phase = await client.post(
        "/awards/nominations",
        json={
            "plan_id": lb_plan,
            "unit_id": "lb-2",
            "nominee_kind": "collective",
            "nominee_name": "Tổ 3",
            "award": "giay_khen_ldld_quan",
            "phase_seq": 4,
        },
    )
    assert no_phase.status_code == 422 and no_phase.json()["detail"][0]["field"] == "phase_seq"

    # Decisions are numbered per body, restarting every 1 January.
    second_lb = await nominate("lb-2", "collective", "Tổ 3", "giay_khen_ldld_quan", phase_seq=1)
    await passes(second_lb["nomination_id"], "lb")
    assert (
        await expect(
            client,
            "POST",
            f"/awards/nominations/{second_lb['nomination_id']}/decision",
            201,
            json={"by_unit_id": "lb"},
        )
    )["decision_number"] == "2/QĐ-lb"
    # Revocation by the deciding unit only; the statistics follow.
    stats = await expect(client, "GET", "/awards/statistics", 200)
    assert (stats["decided"], stats["by_level"]) == (3, {"district": 2, "national": 1})
    assert (stats["individuals"], stats["direct_production"], stats["direct_production_share"]) == (1, 1, 1.0)
    assert stats["shares_by_level"] == {
        "district": {"direct_production_share": None, "small_collective_share": 0.0},
        "national": {"direct_production_share": 1.0, "small_collective_share": None},
    }
    wrong = await client.post(
        f"/awards/nominations/{collective}/revocation", json={"by_unit_id": "hn", "reason": "x"}
    )
    assert wrong.status_code == 422
    revocation = {"by_unit_id": "lb", "reason": "Sai thành tích"}
    await expect(client, "POST", f"/awards/nominations/{collective}/revocation", 200, json=revocation)
    stats = await expect(client, "GET", "/awards/statistics", 200)
    assert (stats["decided"], stats["by_award"]) == (2, {"bang_khen_tong_ldld": 1, "giay_khen_ldld_quan": 1})

    # The revoked award frees lb-1's quota; in 2024 Long Biên's numbering starts again.
    clock.set(local("2024-01-03"))
    again = await nominate("lb-1", "collective", "CĐCS Long Biên 1", "giay_khen_ldld_quan", year=2023)
    await passes(again["nomination_id"], "lb")
    decided = await expect(
        client,
        "POST",
        f"/awards/nominations/{again['nomination_id']}/decision",
        201,
        json={"by_unit_id": "lb"},
    )
    assert decided["decision_number"] == "1/QĐ-lb"

    async def told() -> list[dict[str, Any]] | None:
        rows = await expect(client, "GET", "/notifications/deliveries?recipient_unit_id=lb-1", 200)
        kinds = sorted(row["kind"] for row in rows if row["kind"].startswith("award"))
        return rows if kinds == ["award_decided"] * 3 + ["award_revoked"] else None

    await wait_for(told, "lb-1 to be told of its awards")
    await client.aclose()
