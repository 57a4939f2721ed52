"""Two stacks bridged as MirrorMaker 2 bridges them: a national stack and a province stack, each with
its own topic prefix, databases and registry, each consuming the other's mirrored streams.

On one broker the mirrored topics are the other stack's own topics, which is exactly what MirrorMaker 2
with the identity replication policy delivers to the other cluster (deploy/mirrormaker/)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from shared.settings import Settings
from tests.integration.helpers import api_client

NATIONAL_UNITS = [
    {"id": "vn", "name": "Tổng LĐLĐ Việt Nam", "level": "national"},
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "parent_id": "vn"},
]
PROVINCE_UNITS = [
    *NATIONAL_UNITS,
    {"id": "hn-lb", "name": "LĐLĐ quận Long Biên", "level": "district", "parent_id": "hn"},
    {"id": "hn-hk", "name": "LĐLĐ quận Hoàn Kiếm", "level": "district", "parent_id": "hn"},
    {"id": "hn-lb-1", "name": "CĐCS Long Biên 1", "level": "grassroots", "parent_id": "hn-lb"},
    {"id": "hn-lb-2", "name": "CĐCS Long Biên 2", "level": "grassroots", "parent_id": "hn-lb"},
    {"id": "hn-hk-1", "name": "CĐCS Hoàn Kiếm 1", "level": "grassroots", "parent_id": "hn-hk"},
]


def stack_settings(kafka: str, tmp_path: Path, prefix: str, mirrored: str, name: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka,
        topic_prefix=prefix,
        mirrored_prefixes=mirrored,
        database_url=f"sqlite:///{tmp_path.as_posix()}/{name}-{{service}}.db",
        consumer_session_timeout_ms=6000,
        tick_seconds=0.2,
        relay_poll_seconds=0.05,
        relay_check_seconds=0.5,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def stacks(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runtime]]:
    federation = f"f{uuid.uuid4().hex[:8]}"
    national_prefix, province_prefix = f"{federation}.vn", f"{federation}.hn"
    clock = ManualClock(local("2023-02-21"))
    national = Runtime(
        stack_settings(kafka_bootstrap, tmp_path, national_prefix, province_prefix, "vn"), clock=clock
    )
    province = Runtime(
        stack_settings(kafka_bootstrap, tmp_path, province_prefix, national_prefix, "hn"), clock=clock
    )
    await asyncio.gather(national.start(), province.start())
    try:
        yield national, province
    finally:
        await asyncio.gather(national.stop(), province.stop())


def client_of(runtime: Runtime) -> httpx.AsyncClient:
    return api_client(create_app(runtime, manage_lifecycle=False), runtime.settings, "http://stack")


async def test_a_province_stack_cascades_the_national_plan_and_its_reports_add_up_nationally(
    stacks: tuple[Runtime, Runtime],
) -> None:
    national_runtime, province_runtime = stacks
    national, province = client_of(national_runtime), client_of(province_runtime)
    await expect(
        national,
        "POST",
        "/plans/org/units",
        201,
        json=[{**u, "valid_from": "2020-01-01"} for u in NATIONAL_UNITS],
    )
    await expect(
        province,
        "POST",
        "/plans/org/units",
        201,
        json=[{**u, "valid_from": "2020-01-01"} for u in PROVINCE_UNITS],
    )
    plan = await expect(
        national,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "1/KH-TLĐ",
            "issuer_unit_id": "vn",
            "title": "Phong trào thi đua lao động giỏi, lao động sáng tạo",
            "issued_on": "2023-02-21",
            "phases": [
                {
                    "seq": 1,
                    "label": "Đợt 1",
                    "start": "2023-03-01",
                    "end": "2023-05-31",
                    "report_due": "2023-06-09",
                }
            ],
            "indicators": [{"code": "initiatives", "name": "Sáng kiến", "kind": "count"}],
            "auto_derive": True,
        },
    )
    campaign = plan["plan_id"]

    # The province stack receives the national plan and cascades it through its own registry.
    async def cascaded() -> list[dict[str, Any]] | None:
        plans = await expect(province, "GET", f"/plans/plans?campaign_id={campaign}", 200)
        return plans if len(plans) == 4 else None

    province_plans = await cascaded_plans(cascaded)
    received = [p for p in province_plans if p["received"]]
    assert [p["id"] for p in received] == [campaign]
    issued_here = {p["issuer_unit_id"]: p for p in province_plans if not p["received"]}
    assert sorted(issued_here) == ["hn", "hn-hk", "hn-lb"]
    assert issued_here["hn"]["parent_plan_id"] == campaign

    # Hà Nội's acknowledgement reaches the national stack: the national plan shows it deployed.
    async def deployed() -> bool:
        state = await expect(national, "GET", f"/plans/plans/{campaign}/deployment", 200)
        return state["deployed"] == 1

    await wait_for(deployed, "Hà Nội's acknowledgement at the national stack")

    # Grassroots unions report to their district, in the province stack.
    async def known(plan_id: str) -> bool:
        return (await province.get(f"/reporting/plans/{plan_id}/phases/1/completeness")).status_code == 200

    for district in ("hn-lb", "hn-hk"):
        await wait_for(
            lambda d=district: known(issued_here[d]["id"]), f"reporting to learn {district}'s plan"
        )
    national_runtime.clock.set(local("2023-06-02"))  # type: ignore[attr-defined]
    for unit, count in (("hn-lb-1", 3), ("hn-lb-2", 1), ("hn-hk-1", 4), ("hn-lb-2", 2)):
        national_runtime.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
        district = unit.rsplit("-", 1)[0]
        body = {
            "plan_id": issued_here[district]["id"],
            "phase_seq": 1,
            "unit_id": unit,
            "values": {"initiatives": count},
        }
        await expect(province, "POST", "/reporting/reports", 202, json=body)

    # The national picture: every report of the province's subtree, counted once, nationally.
    async def national_total() -> dict[str, Any] | None:
        table = await expect(national, "GET", f"/reporting/plans/{campaign}/phases/1/completeness", 200)
        done = table["total"]["received"] == 3 and table["total"]["figures"] == {"initiatives": 9}
        return table if done else None

    table = await wait_for(national_total, "the national completeness")
    assert (table["total"]["expected"], table["total"]["on_time"]) == (3, 3)
    assert table["total"]["figures"] == {"initiatives": 9}
    assert [(row["unit_id"], row["expected"], row["received"]) for row in table["units"]] == [("hn", 3, 3)]

    async def province_total() -> dict[str, Any] | None:
        path = f"/reporting/plans/{issued_here['hn']['id']}/phases/1/completeness"
        table = await expect(province, "GET", path, 200)
        return table if table["total"]["figures"] == {"initiatives": 9} else None

    province_table = await wait_for(province_total, "the province's own completeness")
    assert (province_table["total"]["expected"], province_table["total"]["received"]) == (3, 3)

    # Each unit is told once of the plan it receives, by the stack that issued it.
    async def told(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]] | None:
        rows = await expect(client, "GET", "/notifications/deliveries?kind=plan_issued", 200)
        return rows if len(rows) >= count else None

    national_told = await wait_for(lambda: told(national, 1), "the national stack's notifications")
    province_told = await wait_for(lambda: told(province, 5), "the province stack's notifications")
    assert [row["recipient_unit_id"] for row in national_told] == ["hn"]
    assert sorted(row["recipient_unit_id"] for row in province_told) == [
        "hn-hk",
        "hn-hk-1",
        "hn-lb",
        "hn-lb-1",
        "hn-lb-2",
    ]

    # Nothing was refused on either side: each stack ignores what concerns only the other's registry.
    for runtime in stacks:
        dead = sum(
            sample.value
            for sample in runtime.metrics.dead_letters.collect()[0].samples
            if sample.name.endswith("_total")
        )
        assert dead == 0
    await national.aclose()
    await province.aclose()


async def cascaded_plans(check: Any) -> list[dict[str, Any]]:
    plans: list[dict[str, Any]] = await wait_for(check, "the province stack to cascade the national plan")
    return plans
