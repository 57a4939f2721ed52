"""Who may do what: every API call needs a token, and an officer acts only for their own unit and reads
only their unit's subtree. The matrix of (officer's unit, action, target) is walked whole: every
forbidden combination is refused with 403 naming the field, and no allowed one is."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from shared.security import issue_token, secret_key
from tests.integration.helpers import api_client

ROOT = Path(__file__).parent.parent.parent
PARENT = {
    "vn": None,
    "hn": "vn",
    "lb": "hn",
    "lb-1": "lb",
    "lb-2": "lb",
    "hk": "hn",
    "hk-1": "hk",
    "dn": "vn",
    "hc": "dn",
    "hc-1": "hc",
}
LEVEL = {
    "vn": "national",
    "hn": "province",
    "dn": "province",
    "lb": "district",
    "hk": "district",
    "hc": "district",
}
UNITS = [
    {
        "id": unit,
        "name": f"Công đoàn {unit}",
        "level": LEVEL.get(unit, "grassroots"),
        "parent_id": parent,
        "valid_from": "2020-01-01",
    }
    for unit, parent in PARENT.items()
]
PASSWORD = "mat-khau-an-toan"
GOOD_FACTS = {"members": 20, "members_completing": 20, "lao_dong_tien_tien": 15, "chien_si_thi_dua": 1}


def chain(unit: str | None) -> list[str]:
    found = []
    while unit is not None:
        found.append(unit)
        unit = PARENT[unit]
    return found


def reaches(officer: str, unit: str) -> bool:
    """The unit is in the officer's unit's subtree."""
    return officer in chain(unit)


@dataclass
class Action:
    """One thing an officer may try on a target unit: the request, and whether the rules allow it."""

    name: str
    request: Callable[[str], tuple[str, str, dict[str, Any] | None]]
    allowed: Callable[[str, str], bool]
    field: str


def plan_body(issuer: str) -> dict[str, Any]:
    return {
        "number": "5/KH-CĐ",
        "issuer_unit_id": issuer,
        "title": "Thi đua lao động giỏi",
        "issued_on": "2023-02-21",
        "phases": [
            {
                "seq": 1,
                "label": "Đợt 1",
                "start": "2023-03-01",
                "end": "2023-05-31",
                "report_due": "2023-06-10",
            }
        ],
        "indicators": [{"code": "works", "name": "Công trình", "kind": "count"}],
        "award_quota": {"collectives": 1, "individuals": 1},
        "auto_derive": True,
    }


async def test_every_api_call_needs_a_token_this_deployment_signed(runtime: Runtime) -> None:
    app = create_app(runtime, manage_lifecycle=False)
    forged = issue_token(b"another deployment's key", {"sub": "x", "role": "service"}, 3600)
    expired = issue_token(secret_key(runtime.settings), {"sub": "x", "role": "service"}, -10)
    operations = json.loads((ROOT / "docs" / "openapi.json").read_text())["paths"]
    public = {("post", "/plans/auth/token"), ("get", "/healthz"), ("get", "/readyz")}
    checked = 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path, methods in operations.items():
            url = path.replace("{phase_seq}", "1")
            for part in ("plan_id", "unit_id", "draft_id", "document_id", "delivery_id", "nomination_id"):
                url = url.replace("{" + part + "}", "x")
            url = url.replace("{milestone_id}", "x")
            for method in methods:
                if (method, path) in public:
                    continue
                for token in (None, forged, expired, "not-a-token"):
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    answer = await client.request(method, url, headers=headers)
                    assert answer.status_code == 401, (method, url, token, answer.text)
                    assert answer.headers["www-authenticate"] == "Bearer"
                    checked += 1
    assert checked >= 4 * 60  # four tokens on each of the 60 operations


async def test_officers_act_for_their_unit_and_read_their_subtree(runtime: Runtime) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    app = create_app(runtime, manage_lifecycle=False)
    service = api_client(app, runtime.settings)
    await expect(service, "POST", "/plans/org/units", 201, json=UNITS)
    for unit in PARENT:
        body = {"username": f"officer-{unit}", "password": PASSWORD}
        await expect(service, "POST", f"/plans/org/units/{unit}/officers", 201, json=body)

    # The city plans down to its districts, which derive theirs for their grassroots unions.
    hn_plan = (await expect(service, "POST", "/plans/plans", 201, json=plan_body("hn")))["plan_id"]

    async def plan_of(unit: str) -> str | None:
        plans = await expect(service, "GET", "/plans/plans", 200, params={"issuer_unit_id": unit})
        return plans[0]["id"] if plans else None

    lb_plan = await wait_for(lambda: plan_of("lb"), "Long Biên to derive its plan")
    hk_plan = await wait_for(lambda: plan_of("hk"), "Hoàn Kiếm to derive its plan")
    plans = {hn_plan: ("hn", {"lb", "hk"}), lb_plan: ("lb", {"lb-1", "lb-2"}), hk_plan: ("hk", {"hk-1"})}

    async def known(path: str) -> bool:
        return (await service.get(path)).status_code == 200

    await wait_for(lambda: known(f"/reporting/plans/{lb_plan}/phases/1/completeness"), "reporting")
    await wait_for(lambda: known(f"/awards/plans/{lb_plan}/quota?unit_id=lb-1"), "awards")
    clock.set(local("2023-06-03"))
    report = {"plan_id": lb_plan, "phase_seq": 1, "unit_id": "lb-1", "values": {"works": 2}}
    await expect(service, "POST", "/reporting/reports", 202, json=report)
    nomination = await expect(
        service,
        "POST",
        "/awards/nominations",
        201,
        json={
            "plan_id": lb_plan,
            "unit_id": "lb-1",
            "nominee_kind": "collective",
            "nominee_name": "CĐCS Long Biên 1",
            "award": "tap_the_lao_dong_xuat_sac",
            "nominee_unit_id": "lb-1",
            "facts": GOOD_FACTS,
        },
    )

    def own(officer: str, target: str) -> bool:
        return officer == target

    actions = [
        Action(
            "read the subtree", lambda t: ("GET", f"/plans/org/units/{t}/subtree", None), reaches, "unit_id"
        ),
        Action(
            "list the units below",
            lambda t: ("GET", "/plans/org/units", {"params": {"parent_id": t}}),
            reaches,
            "parent_id",
        ),
        Action(
            "add an officer",
            lambda t: (
                "POST",
                f"/plans/org/units/{t}/officers",
                {"json": {"username": f"new-{t}", "password": PASSWORD}},
            ),
            lambda officer, target: reaches(officer, target) and officer != target,
            "unit_id",
        ),
        Action(
            "move a unit",
            lambda t: (
                "POST",
                f"/plans/org/units/{t}/move",
                {"json": {"new_parent_id": t, "effective_on": "2024-01-01"}},
            ),
            lambda officer, target: reaches(officer, target) and officer != target,
            "unit_id",
        ),
        Action(
            "issue a plan",
            lambda t: (
                "POST",
                "/plans/plans",
                {"json": plan_body(t) | {"target_unit_ids": ["no-such-unit"]}},
            ),
            own,
            "issuer_unit_id",
        ),
        Action(
            "save a draft",
            lambda t: ("POST", "/plans/drafts", {"json": {"unit_id": t, "body": {}}}),
            own,
            "unit_id",
        ),
        Action(
            "list plans issued",
            lambda t: ("GET", "/plans/plans", {"params": {"issuer_unit_id": t}}),
            reaches,
            "issuer_unit_id",
        ),
        Action(
            "acknowledge a plan",
            lambda t: ("POST", f"/plans/plans/{hn_plan}/acknowledgements", {"json": {"unit_id": t}}),
            own,
            "unit_id",
        ),
        Action(
            "register a work",
            lambda t: (
                "POST",
                f"/plans/plans/{hn_plan}/registrations",
                {"json": {"unit_id": t, "kind": "work", "title": "Công trình"}},
            ),
            own,
            "unit_id",
        ),
        Action(
            "draft a derived plan",
            lambda t: ("GET", f"/plans/plans/{hn_plan}/derived-draft", {"params": {"unit_id": t}}),
            own,
            "unit_id",
        ),
        Action(
            "submit a report",
            lambda t: (
                "POST",
                "/reporting/reports",
                {"json": report | {"unit_id": t, "values": {"works": 1}}},
            ),
            own,
            "unit_id",
        ),
        Action(
            "review a report",
            lambda t: (
                "POST",
                f"/reporting/plans/{lb_plan}/phases/1/reviews",
                {"json": {"unit_id": "lb-9", "action": "approve", "by_unit_id": t}},
            ),
            own,
            "by_unit_id",
        ),
        Action(
            "read a unit's reports",
            lambda t: ("GET", "/reporting/reports", {"params": {"plan_id": hk_plan, "unit_id": t}}),
            lambda officer, target: reaches(officer, "hk") or reaches(officer, target),
            "unit_id",
        ),
        Action(
            "read the refused reports",
            lambda t: ("GET", "/reporting/rejections", {"params": {"unit_id": t}}),
            reaches,
            "unit_id",
        ),
        Action(
            "read the delivery log",
            lambda t: ("GET", "/notifications/deliveries", {"params": {"recipient_unit_id": t}}),
            reaches,
            "recipient_unit_id",
        ),
        Action(
            "read preferences",
            lambda t: ("GET", f"/notifications/units/{t}/preferences", None),
            reaches,
            "unit_id",
        ),
        Action(
            "set preferences",
            lambda t: (
                "PUT",
                f"/notifications/units/{t}/preferences",
                {"json": {"opted_out": [], "digest": True}},
            ),
            own,
            "unit_id",
        ),
        Action(
            "nominate",
            lambda t: (
                "POST",
                "/awards/nominations",
                {
                    "json": {
                        "plan_id": hk_plan,
                        "unit_id": t,
                        "nominee_kind": "individual",
                        "nominee_name": "A",
                        "award": "x",
                    }
                },
            ),
            own,
            "unit_id",
        ),
        Action(
            "vote in council",
            lambda t: (
                "POST",
                f"/awards/nominations/{nomination['nomination_id']}/votes",
                {"json": {"by_unit_id": t, "members": 9, "yes": 0, "no": 0}},
            ),
            own,
            "by_unit_id",
        ),
        Action(
            "forward a nomination",
            lambda t: (
                "POST",
                f"/awards/nominations/{nomination['nomination_id']}/forward",
                {"json": {"by_unit_id": t}},
            ),
            own,
            "by_unit_id",
        ),
        Action(
            "decide an award",
            lambda t: (
                "POST",
                f"/awards/nominations/{nomination['nomination_id']}/decision",
                {"json": {"by_unit_id": t}},
            ),
            own,
            "by_unit_id",
        ),
        Action(
            "read a quota",
            lambda t: ("GET", f"/awards/plans/{hn_plan}/quota", {"params": {"unit_id": t}}),
            reaches,
            "unit_id",
        ),
    ]
    # Per plan: read it, read what its recipients sent back, and act as its issuer.
    for plan_id, (issuer, targets) in plans.items():

        def concerns(officer: str, _target: str, issuer: str = issuer, targets: set[str] = targets) -> bool:
            return reaches(officer, issuer) or officer in targets

        def issued_below(officer: str, _target: str, issuer: str = issuer) -> bool:
            return reaches(officer, issuer)

        def issued_by(officer: str, _target: str, issuer: str = issuer) -> bool:
            return officer == issuer

        for name, method, path, allowed in (
            ("read the plan", "GET", "", concerns),
            ("read its deployment", "GET", "/deployment", concerns),
            ("read its deadlines", "GET", "/deadlines", concerns),
            ("read its amendments", "GET", "/amendments", concerns),
            ("read its registrations", "GET", "/registrations", concerns),
            ("date a milestone", "POST", "/milestones/no-such-milestone", issued_by),
        ):
            body = {"json": {"on": "2023-08-01"}} if method == "POST" else None
            actions.append(
                Action(
                    f"{name} ({issuer})",
                    lambda _t, m=method, p=f"/plans/plans/{plan_id}{path}", b=body: (m, p, b),
                    allowed,
                    "plan_id",
                )
            )
        for name, method, path, allowed in (
            ("read its completeness", "GET", "/completeness", issued_below),
            ("read its consolidations", "GET", "/consolidations", issued_below),
            ("export it", "GET", "/export.csv", issued_below),
            ("consolidate it", "POST", "/consolidation", issued_by),
        ):
            actions.append(
                Action(
                    f"{name} ({issuer})",
                    lambda _t, m=method, p=f"/reporting/plans/{plan_id}/phases/1{path}": (m, p, None),
                    allowed,
                    "plan_id",
                )
            )
        actions.append(
            Action(
                f"read the reports owed ({issuer})",
                lambda _t, p=f"/notifications/plans/{plan_id}/expected": ("GET", p, None),
                issued_below,
                "plan_id",
            )
        )

    async def officer_of(unit: str) -> httpx.AsyncClient:
        body = {"username": f"officer-{unit}", "password": PASSWORD}
        signed = await expect(service, "POST", "/plans/auth/token", 200, json=body)
        client = api_client(app, runtime.settings)
        client.headers["Authorization"] = f"Bearer {signed['token']}"
        return client

    # Each service learns the tree from the org events: wait until every one places every unit under vn.
    national = await officer_of("vn")

    async def tree_known() -> bool:
        paths = [
            *(f"/reporting/rejections?unit_id={unit}" for unit in PARENT),
            *(f"/notifications/units/{unit}/preferences" for unit in PARENT),
            *(f"/awards/plans/{hn_plan}/quota?unit_id={unit}" for unit in PARENT),
        ]
        return all([(await national.get(path)).status_code == 200 for path in paths])

    await wait_for(tree_known, "every service to learn the federation's tree")

    refused = allowed_count = 0
    for officer in PARENT:
        client = await officer_of(officer)
        for action in actions:
            for target in PARENT:
                method, path, extra = action.request(target)
                answer = await client.request(method, path, **(extra or {}))
                where = (officer, action.name, target, answer.status_code, answer.text[:300])
                if action.allowed(officer, target):
                    assert answer.status_code not in (401, 403), where
                    allowed_count += 1
                else:
                    assert answer.status_code == 403, where
                    assert answer.json()["detail"][0]["field"] == action.field, where
                    refused += 1
        # Work for the whole federation is not an officer's.
        for method, path, extra in (
            ("POST", "/plans/org/units", {"json": UNITS[:1]}),
            ("GET", "/notifications/deliveries/summary", None),
            ("POST", "/plans/edxml/status", {"content": b"<x/>"}),
            ("GET", "/awards/statistics", None),
        ):
            answer = await client.request(method, path, **(extra or {}))
            assert answer.status_code == 403, (officer, path, answer.text)
            refused += 1
    assert refused > 1000 and allowed_count > 300


async def test_listings_show_an_officer_only_their_subtree(runtime: Runtime) -> None:
    app = create_app(runtime, manage_lifecycle=False)
    service = api_client(app, runtime.settings)
    await expect(service, "POST", "/plans/org/units", 201, json=UNITS)
    await expect(
        service,
        "POST",
        "/plans/org/units/lb/officers",
        201,
        json={"username": "officer-lb", "password": PASSWORD},
    )
    hn_plan = (await expect(service, "POST", "/plans/plans", 201, json=plan_body("hn")))["plan_id"]

    async def derived() -> list[dict[str, Any]] | None:
        found = await expect(service, "GET", "/plans/plans", 200, params={"parent_plan_id": hn_plan})
        return found if len(found) == 2 else None

    await wait_for(derived, "the districts to derive their plans")
    signed = await expect(
        service, "POST", "/plans/auth/token", 200, json={"username": "officer-lb", "password": PASSWORD}
    )
    officer = api_client(app, runtime.settings)
    officer.headers["Authorization"] = f"Bearer {signed['token']}"
    units = await expect(officer, "GET", "/plans/org/units", 200)
    assert sorted(unit["unit_id"] for unit in units) == ["lb", "lb-1", "lb-2"]
    plans = await expect(officer, "GET", "/plans/plans", 200)
    # The city's plan, sent to Long Biên, and Long Biên's own; not Hoàn Kiếm's.
    assert sorted(plan["issuer_unit_id"] for plan in plans) == ["hn", "lb"]
    me = await expect(officer, "GET", "/plans/auth/me", 200)
    assert (me["unit_id"], sorted(me["subtree"])) == ("lb", ["lb", "lb-1", "lb-2"])
