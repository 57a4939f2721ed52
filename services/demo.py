"""`thidua demo`: the skeleton flow of a campaign over the real stack, checked against ground truth.

Hà Nội issues a plan with two phases; Long Biên, Hoàn Kiếm and Cầu Giấy cascade it to their grassroots
unions, which acknowledge it and report phase 1 — most on time, some late, some not at all, a few
correcting themselves. Each district nominates one collective and one individual. The demo then waits
for the services' figures and compares every one with the figures computed from what it submitted.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.clock import LOCAL_TZ, ManualClock

CITY = ("hn", "LĐLĐ thành phố Hà Nội")
DISTRICTS = (
    ("hn-lb", "LĐLĐ quận Long Biên"),
    ("hn-hk", "LĐLĐ quận Hoàn Kiếm"),
    ("hn-cg", "LĐLĐ quận Cầu Giấy"),
)
GRASSROOTS_PER_DISTRICT = 12
SECTORS = (("school", "CĐCS Trường"), ("enterprise", "CĐCS Công ty"), ("administration", "CĐCS Phường"))

INDICATORS = [
    {"code": "new_members", "name": "Đoàn viên kết nạp mới", "kind": "count"},
    {"code": "initiatives", "name": "Sáng kiến được công nhận", "kind": "count"},
    {"code": "initiative_staff", "name": "CNVCLĐ có sáng kiến / tổng số CNVCLĐ", "kind": "ratio"},
    {"code": "plan_deployed", "name": "Đã triển khai kế hoạch", "kind": "yes_no"},
    {"code": "narrative", "name": "Báo cáo tóm tắt", "kind": "text"},
]
PHASES = [
    {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-05-31", "report_due": "2023-06-07"},
    {"seq": 2, "label": "Đợt 2", "start": "2023-06-01", "end": "2023-09-30", "report_due": "2023-10-07"},
]


def local(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=LOCAL_TZ).astimezone(UTC)


def sample_federation() -> list[dict[str, Any]]:
    """Hà Nội → three districts → a dozen grassroots unions each."""
    units: list[dict[str, Any]] = [
        {"id": CITY[0], "name": CITY[1], "level": "province", "has_ioffice": True, "valid_from": "2020-01-01"}
    ]
    for district_id, district_name in DISTRICTS:
        units.append(
            {
                "id": district_id,
                "name": district_name,
                "level": "district",
                "parent_id": CITY[0],
                "has_ioffice": True,
                "valid_from": "2020-01-01",
            }
        )
        place = district_name.removeprefix("LĐLĐ quận ")
        for n in range(1, GRASSROOTS_PER_DISTRICT + 1):
            sector, prefix = SECTORS[n % 3]
            units.append(
                {
                    "id": f"{district_id}-{n:02d}",
                    "name": f"{prefix} {place} {n:02d}",
                    "level": "grassroots",
                    "parent_id": district_id,
                    "sector": sector,
                    "email": f"cdcs{n:02d}@{district_id}.congdoan.vn",
                    "has_ioffice": n % 4 != 0,
                    "valid_from": "2020-01-01",
                }
            )
    return units


# Report requests and reminders go to the units that have not reported yet when they are made: the demo
# submits while they are being made, so their number is not part of its ground truth (their own tests pin it).
TIMED_KINDS = ("report_request", "reminder")


def told_of_events(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deliveries one per event and recipient: plans, deadlines passed, nominations, decisions."""
    return [row for row in deliveries if row["kind"] not in TIMED_KINDS]


@dataclass
class Truth:
    """What the figures must be, computed by the demo from what it submitted."""

    status: dict[str, str] = field(default_factory=dict)  # grassroots unit -> on_time | late | missing
    figures: dict[str, dict[str, int]] = field(default_factory=dict)  # grassroots unit -> latest figures
    deliveries: int = 0

    def district_row(self, district_id: str) -> dict[str, Any]:
        units = [u for u in self.status if u.startswith(f"{district_id}-")]
        return self._row(units)

    def city_row(self) -> dict[str, Any]:
        return self._row(list(self.status))

    def _row(self, units: list[str]) -> dict[str, Any]:
        states = [self.status[u] for u in units]
        sums: dict[str, int] = defaultdict(int)
        for unit in units:
            for code, value in self.figures.get(unit, {}).items():
                sums[code] += value
        return {
            "expected": len(units),
            "received": sum(s != "missing" for s in states),
            "on_time": states.count("on_time"),
            "late": states.count("late"),
            "missing": states.count("missing"),
            "figures": dict(sorted(sums.items())),
        }


def report_values(rng: random.Random) -> dict[str, Any]:
    staff = rng.randint(20, 400)
    return {
        "new_members": rng.randint(0, 30),
        "initiatives": rng.randint(0, 10),
        "initiative_staff": {"numerator": rng.randint(0, staff // 2), "denominator": staff},
        "plan_deployed": rng.random() < 0.9,
        "narrative": "Đơn vị đã tổ chức phát động thi đua.",
    }


def figures_of(values: dict[str, Any]) -> dict[str, int]:
    return {
        "new_members": values["new_members"],
        "initiatives": values["initiatives"],
        "initiative_staff.numerator": values["initiative_staff"]["numerator"],
        "initiative_staff.denominator": values["initiative_staff"]["denominator"],
        "plan_deployed": 1 if values["plan_deployed"] else 0,
    }


async def expect(client: httpx.AsyncClient, method: str, url: str, status: int, **kwargs: Any) -> Any:
    response = await client.request(method, url, **kwargs)
    if response.status_code != status:
        raise RuntimeError(f"{method} {url}: expected {status}, got {response.status_code}: {response.text}")
    return response.json() if response.content else None


async def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll `check()` until it returns something truthy; fail loudly with `what` if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


async def run_flow(
    client: httpx.AsyncClient, clock: ManualClock, tick: Any, seed: int = 2023
) -> dict[str, Any]:
    """The skeleton flow; returns the city plan, the completeness tables and the ground truth."""
    rng = random.Random(seed)
    truth = Truth()
    clock.set(local("2023-02-21"))
    await expect(client, "POST", "/plans/org/units", 201, json=sample_federation())

    city_plan = await expect(
        client,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "80/KH-LĐLĐ",
            "issuer_unit_id": CITY[0],
            "title": "Đợt thi đua cao điểm chào mừng Đại hội Công đoàn Thành phố Hà Nội lần thứ XVII",
            "issued_on": "2023-02-21",
            "phases": PHASES,
            "indicators": INDICATORS,
            "award_quota": {"collectives": 1, "individuals": 1},
            "auto_derive": True,
        },
    )
    truth.deliveries += len(DISTRICTS)

    async def district_plans() -> dict[str, dict[str, Any]] | None:
        plans = await expect(client, "GET", f"/plans/plans?campaign_id={city_plan['plan_id']}", 200)
        derived = {p["issuer_unit_id"]: p for p in plans if p["parent_plan_id"] == city_plan["plan_id"]}
        return derived if len(derived) == len(DISTRICTS) else None

    derived = await wait_for(district_plans, "the districts to cascade the city plan")
    truth.deliveries += len(DISTRICTS) * GRASSROOTS_PER_DISTRICT

    for district_id, _ in DISTRICTS:
        plan_id = derived[district_id]["id"]

        async def known_to_reporting(plan_id: str = plan_id) -> bool:
            return (await client.get(f"/reporting/plans/{plan_id}/phases/1/completeness")).status_code == 200

        await wait_for(known_to_reporting, f"reporting to learn the plan of {district_id}")
        for n in range(1, GRASSROOTS_PER_DISTRICT + 1):
            unit = f"{district_id}-{n:02d}"
            await expect(
                client, "POST", f"/plans/plans/{plan_id}/acknowledgements", 202, json={"unit_id": unit}
            )

    # Phase 1 ends on 31/5; district deadlines are two days before the city's (7/6): 5/6.
    clock.set(local("2023-06-01"))
    await tick()
    plan_of = {
        unit: derived[unit.rsplit("-", 1)[0]]["id"]
        for unit in (f"{d}-{n:02d}" for d, _ in DISTRICTS for n in range(1, GRASSROOTS_PER_DISTRICT + 1))
    }
    fate = {unit: rng.choices(["on_time", "late", "missing"], weights=[75, 15, 10])[0] for unit in plan_of}

    async def submit(unit: str) -> dict[str, Any]:
        values = report_values(rng)
        truth.figures[unit] = figures_of(values)
        body = {"plan_id": plan_of[unit], "phase_seq": 1, "unit_id": unit, "values": values}
        return await expect(client, "POST", "/reporting/reports", 202, json=body)

    clock.set(local("2023-06-03"))
    for unit, kind in fate.items():
        if kind == "on_time":
            await submit(unit)
            truth.status[unit] = "on_time"
    clock.set(local("2023-06-04"))
    for unit in rng.sample(sorted(u for u, k in fate.items() if k == "on_time"), 4):
        await submit(unit)  # a correction: the latest version counts, the unit stays on time

    clock.set(local("2023-06-06"))
    await tick()  # the district deadline (5/6) has passed: units without a report are overdue
    overdue = [u for u, k in fate.items() if k != "on_time"]
    truth.deliveries += 2 * len(overdue)  # the unit, and its district
    for unit in overdue:
        truth.status[unit] = "missing"
    clock.set(local("2023-06-06", 15))
    for unit, kind in fate.items():
        if kind == "late":
            await submit(unit)
            truth.status[unit] = "late"

    async def awards_knows(unit: str) -> bool:
        quota = await client.get(f"/awards/plans/{city_plan['plan_id']}/quota", params={"unit_id": unit})
        return quota.status_code == 200

    await wait_for(lambda: awards_knows(DISTRICTS[0][0]), "awards to learn the city plan")
    for district_id, _ in DISTRICTS:
        for kind, name in (
            ("collective", f"Tập thể {district_id}"),
            ("individual", f"Cá nhân {district_id}"),
        ):
            await expect(
                client,
                "POST",
                "/awards/nominations",
                201,
                json={
                    "plan_id": city_plan["plan_id"],
                    "unit_id": district_id,
                    "nominee_kind": kind,
                    "nominee_name": name,
                    "award": "bang_khen_ldld_tinh",
                    "direct_production": kind == "individual",
                },
            )
            truth.deliveries += 1
    refused = await client.post(
        "/awards/nominations",
        json={
            "plan_id": city_plan["plan_id"],
            "unit_id": DISTRICTS[0][0],
            "nominee_kind": "collective",
            "nominee_name": "Một tập thể nữa",
            "award": "bang_khen_ldld_tinh",
        },
    )
    if refused.status_code != 422:
        raise RuntimeError(
            f"a nomination over the quota was not refused: {refused.status_code} {refused.text}"
        )

    async def settled() -> dict[str, Any] | None:
        city = await expect(
            client, "GET", f"/reporting/plans/{city_plan['plan_id']}/phases/1/completeness", 200
        )
        deliveries = told_of_events(await expect(client, "GET", "/notifications/deliveries?limit=10000", 200))
        if _row_figures(city["total"]) != truth.city_row() or len(deliveries) < truth.deliveries:
            return None
        return {"city": city, "deliveries": deliveries}

    try:
        final = await wait_for(settled, "the national picture to equal what was submitted", timeout=60)
    except TimeoutError:
        final = {
            "city": await expect(
                client, "GET", f"/reporting/plans/{city_plan['plan_id']}/phases/1/completeness", 200
            ),
            "deliveries": told_of_events(
                await expect(client, "GET", "/notifications/deliveries?limit=10000", 200)
            ),
        }
    districts = {
        district_id: await expect(
            client, "GET", f"/reporting/plans/{derived[district_id]['id']}/phases/1/completeness", 200
        )
        for district_id, _ in DISTRICTS
    }
    return {"city_plan": city_plan, "derived": derived, "truth": truth, "districts": districts, **final}


def _row_figures(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("expected", "received", "on_time", "late", "missing", "figures")}


def mismatches(result: dict[str, Any]) -> list[str]:
    """Every figure the services report that differs from the ground truth."""
    truth: Truth = result["truth"]
    problems = []

    def compare(where: str, got: dict[str, Any], want: dict[str, Any]) -> None:
        for key, value in want.items():
            if got.get(key) != value:
                problems.append(f"{where} {key}: services say {got.get(key)!r}, submitted {value!r}")

    compare("Hà Nội", _row_figures(result["city"]["total"]), truth.city_row())
    city_units = {row["unit_id"]: row for row in result["city"]["units"]}
    for district_id, _ in DISTRICTS:
        want = truth.district_row(district_id)
        compare(f"{district_id} (in the city table)", city_units.get(district_id, {}), want)
        table = result["districts"][district_id]
        compare(district_id, _row_figures(table["total"]), want)
        for row in table["units"]:
            expected = truth.status.get(row["unit_id"])
            if expected != row["status"]:
                problems.append(f"{row['unit_id']} status: services say {row['status']}, expected {expected}")
    if len(result["deliveries"]) != truth.deliveries:
        problems.append(f"notifications: {len(result['deliveries'])} deliveries, expected {truth.deliveries}")
    return problems
