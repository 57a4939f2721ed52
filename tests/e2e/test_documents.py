"""Documents through the plans service: a real plan imported as a draft (its document kept), an issued plan
exported as DOCX and as edXML per recipient with iOffice, the package imported back as the same plan, and
the exchange's status messages moving each delivery."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from docx import Document

from services.demo import expect
from services.runtime import Runtime, create_app
from shared.documents.edxml import NAMESPACE, Organ, Status, read_package, write_status
from tests.integration.helpers import api_client

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"
UNITS = [
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province", "has_ioffice": True},
    {"id": "lb", "name": "LĐLĐ quận Long Biên", "level": "district", "parent_id": "hn", "has_ioffice": True},
    {"id": "lb-1", "name": "CĐCS Long Biên 1", "level": "grassroots", "parent_id": "lb", "has_ioffice": True},
    {"id": "lb-2", "name": "CĐCS Long Biên 2", "level": "grassroots", "parent_id": "lb"},
]
CITY_PLAN = {
    "number": "80/KH-LĐLĐ",
    "issuer_unit_id": "hn",
    "title": "Đợt thi đua cao điểm chào mừng Đại hội Công đoàn Thành phố Hà Nội lần thứ XVII",
    "issued_on": "2023-02-21",
    "phases": [
        {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-07-31"},
        {"seq": 2, "label": "Đợt 2", "start": "2023-08-01", "end": "2023-10-31"},
    ],
    "deadlines": [{"kind": "after_phase", "days": 10}],
}
DISTRICT_PLAN = {
    "number": "19/KH-LĐLĐ",
    "issuer_unit_id": "lb",
    "title": "Phát động đợt thi đua cao điểm chào mừng Đại hội Công đoàn quận Long Biên lần thứ V",
    "issued_on": "2023-03-02",
    "place": "Long Biên",
    "movements": ["Lao động giỏi, Lao động sáng tạo"],
    "phases": [
        {"seq": 1, "label": "Giai đoạn I", "start": "2023-05-01", "end_milestone": "dai-hoi-v"},
        {"seq": 2, "label": "Giai đoạn II", "start": "2023-08-01", "end": "2023-09-30"},
    ],
    "milestones": [{"id": "dai-hoi-v", "name": "Đại hội Công đoàn quận Long Biên lần thứ V"}],
    "deadlines": [{"kind": "after_phase", "days": 2}],
    "award_quota": {"collectives": 1, "individuals": 1},
    "recipients": [
        {"name": "LĐLĐ thành phố Hà Nội", "unit_id": "hn", "purpose": "report"},
        {"name": "Các CĐCS trực thuộc", "purpose": "execute"},
        {"name": "VP", "purpose": "archive"},
    ],
    "signer": {"authority": "TM.", "position": "Chủ tịch", "name": "Phan Thị Thu Hằng"},
}


async def test_plans_in_and_out_as_documents(runtime: Runtime) -> None:
    client = api_client(create_app(runtime, manage_lifecycle=False), runtime.settings, "http://t")
    await expect(
        client, "POST", "/plans/org/units", 201, json=[{**u, "valid_from": "2020-01-01"} for u in UNITS]
    )
    city = await expect(client, "POST", "/plans/plans", 201, json=CITY_PLAN)

    # A real plan, as Long Biên wrote it, becomes a draft; the document is kept exactly as it arrived.
    seed = next(SEEDS.glob("000_*.txt")).read_bytes()
    imported = await expect(
        client,
        "POST",
        "/plans/documents?unit_id=lb&filename=19-KH.txt",
        201,
        content=seed,
        headers={"Content-Type": "text/plain"},
    )
    body = imported["draft"]["body"]
    assert (body["number"], body["issued_on"], body["parent_plan_id"]) == (
        "19/KH-LĐLĐ",
        "2023-03-02",
        city["plan_id"],
    )
    assert [p.get("end_milestone") for p in body["phases"]] == [
        "dai-hoi-cong-doan-quan-long-bien-lan-thu-v",
        "dai-hoi-cong-doan-thanh-pho-ha-noi-lan-thu-xvii",
    ]
    assert {"inconsistent_name", "inconsistent_ordinal"} <= {
        w["code"] for w in imported["parsed"]["warnings"]
    }
    assert "phase_start_at_event" in {note["code"] for note in imported["notes"]}
    stored = await client.get(f"/plans/documents/{imported['document_id']}/content")
    assert stored.content == seed
    document = await expect(client, "GET", f"/plans/documents/{imported['document_id']}", 200)
    assert (document["draft_id"], document["kind"]) == (imported["draft"]["id"], "text")

    # Bad documents are refused with the reason, and nothing is kept.
    vni = await client.post(
        "/plans/documents?unit_id=lb", content="Keá hoaïch thi ñua naêm 2024 cuûa Lieân ñoaøn".encode()
    )
    assert vni.status_code == 422 and vni.json()["detail"][0]["field"] == "document"
    xxe = await client.post(
        "/plans/edxml",
        content=b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><edXMLEnvelope xmlns="'
        + NAMESPACE.encode()
        + b'">&e;</edXMLEnvelope>',
    )
    assert xxe.status_code == 422 and "DTD or entities" in xxe.json()["detail"][0]["message"]
    assert len(await expect(client, "GET", "/plans/drafts?unit_id=lb", 200)) == 1

    # Issuing prepares one edXML package per recipient with iOffice: lb-1 and the city, not lb-2.
    plan = await expect(
        client, "POST", "/plans/plans", 201, json={**DISTRICT_PLAN, "parent_plan_id": city["plan_id"]}
    )
    plan_id = plan["plan_id"]
    deliveries = await expect(client, "GET", f"/plans/plans/{plan_id}/edxml", 200)
    assert [(d["unit_id"], d["status"]) for d in deliveries] == [("hn", "prepared"), ("lb-1", "prepared")]
    xml = await client.get(f"/plans/plans/{plan_id}/edxml/lb-1")
    package = read_package(xml.content)
    assert (package.code_number, package.code_notation, package.document_id) == (
        "19",
        "KH-LĐLĐ",
        "lb,2023/03/02,19/KH-LĐLĐ",
    )
    assert (package.sender.organ_id, [r.organ_id for r in package.receivers]) == ("lb", ["lb-1"])
    assert (package.place, package.signer_competence, package.signer_name) == (
        "Long Biên",
        "TM. Ban Thường vụ",
        "Phan Thị Thu Hằng",
    )
    assert package.to_places == ["LĐLĐ thành phố Hà Nội", "Các CĐCS trực thuộc"]
    assert package.response_for == "hn,2023/02/21,80/KH-LĐLĐ"  # the parent plan, as exchanges name it
    attached = Document(io.BytesIO(package.attachments[0].content))
    assert "Số: 19/KH-LĐLĐ" in attached.tables[0].rows[0].cells[0].text

    docx = await client.get(f"/plans/plans/{plan_id}/docx")
    assert docx.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert docx.headers["content-disposition"] == (
        "attachment; filename=\"19-kh-ldld.docx\"; filename*=UTF-8''19-KH-L%C4%90L%C4%90.docx"
    )
    assert Document(io.BytesIO(docx.content)).paragraphs[0].text == "KẾ HOẠCH"

    # Round trip: the package imported back is the same plan (only its number is now taken).
    again = await expect(client, "POST", "/plans/edxml", 201, content=xml.content)
    assert again["draft"]["unit_id"] == "lb" and again["kind"] == "edxml"
    returned = again["draft"]["body"]
    same = ("number", "title", "issued_on", "place", "movements", "parent_plan_id")
    assert {k: returned[k] for k in same} == {k: plan[k] for k in same}
    assert [(p["seq"], p["label"], p.get("start"), p.get("end")) for p in returned["phases"]] == [
        (1, "Giai đoạn I", "2023-05-01", None),
        (2, "Giai đoạn II", "2023-08-01", "2023-09-30"),
    ]
    assert returned["milestones"][0]["name"] == "Đại hội Công đoàn quận Long Biên lần thứ V"
    assert [(d["kind"], d["days"]) for d in returned["deadlines"]] == [("after_phase", 2)]
    assert returned["award_quota"] == DISTRICT_PLAN["award_quota"]
    assert [(r["name"], r["purpose"]) for r in returned["recipients"]] == [
        (r["name"], r["purpose"]) for r in DISTRICT_PLAN["recipients"]
    ]
    assert returned["signer"] == DISTRICT_PLAN["signer"]
    assert [p["field"] for p in again["problems"]] == ["number"]

    # Status messages from the exchange move each delivery; one about an unknown document is refused.
    async def report(code: str, organ: str = "lb-1", document: str = package.document_id) -> httpx.Response:
        status = Status(
            document_id=document,
            sender=Organ(organ_id=organ),
            code=code,
            status="received",
            at=datetime(2023, 3, 2, 9, 30),
        )
        return await client.post("/plans/edxml/status", content=write_status(status))

    assert (await report("01")).json()["status"] == "received"
    accepted: dict[str, Any] = (await report("03")).json()
    assert (accepted["status"], accepted["status_code"]) == ("accepted", "03")
    assert (await report("02", organ="hn")).json()["status"] == "refused"
    unknown = await report("01", document="lb,2023/03/02,99/KH-LĐLĐ")
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "ResponseFor.DocumentId"
    deliveries = await expect(client, "GET", f"/plans/plans/{plan_id}/edxml", 200)
    assert [(d["unit_id"], d["status"]) for d in deliveries] == [("hn", "refused"), ("lb-1", "accepted")]
