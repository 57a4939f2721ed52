"""Notifications reach people: email through a real SMTP server (aiosmtpd), plans through a local HTTP
endpoint playing the iOffice exchange, a signed webhook, print batches; exactly once under redelivery and
restarts; retries, bounces and the dead state; reminders only to units that have not reported."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from docx import Document
from pydantic import SecretStr
from sqlmodel import select

from services.demo import expect, local, wait_for
from services.notifications.domain import signature
from services.notifications.handlers import build_handlers
from services.runtime import Runtime, create_app
from shared.clock import ManualClock
from shared.documents.edxml import Status, read_package, write_status
from shared.events import from_kafka
from shared.local_broker import free_port
from shared.settings import SERVICES, Settings
from shared.storage import OutboxRecord
from tests.integration.helpers import api_client, produce

SECRET = "bí mật chung"
UNITS = [
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province"},
    {
        "id": "lb",
        "name": "LĐLĐ quận Long Biên",
        "level": "district",
        "parent_id": "hn",
        "email": "lb@ldld.vn",
    },
    {"id": "lb-1", "name": "CĐCS Long Biên 1", "level": "grassroots", "parent_id": "lb", "has_ioffice": True},
    {
        "id": "lb-2",
        "name": "CĐCS Long Biên 2",
        "level": "grassroots",
        "parent_id": "lb",
        "email": "lb2@cd.vn",
    },
    {"id": "lb-3", "name": "CĐCS Long Biên 3", "level": "grassroots", "parent_id": "lb"},
    {
        "id": "lb-4",
        "name": "CĐCS Long Biên 4",
        "level": "grassroots",
        "parent_id": "lb",
        "email": "bounce@cd.vn",
    },
]
PLAN = {
    "number": "5/KH-LĐLĐ",
    "issuer_unit_id": "lb",
    "title": "Thi đua lao động giỏi năm 2023",
    "issued_on": "2023-02-21",
    "place": "Long Biên",
    "phases": [
        {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-05-31", "report_due": "2023-06-10"}
    ],
    "indicators": [{"code": "works", "name": "Công trình", "kind": "count"}],
    "signer": {"authority": "TM.", "position": "Chủ tịch", "name": "Phan Thị Thu Hằng"},
}


class MailServer:
    """aiosmtpd handler: keeps every message; refuses bounce@ for good, as a real server would."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 <bounce@cd.vn>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@dataclass
class Exchange:
    """The iOffice exchange and another system's webhook: records every request; the exchange is away
    for its first `failures` calls, the webhook always fails."""

    failures: int = 2
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append((path, headers, body))
            calls = sum(1 for p, _, _ in self.requests if p == path)
        if path == "/hook":
            return 500, b"broken"
        if calls <= self.failures:
            return 503, b"busy"
        package = read_package(body)
        status = Status(
            document_id=package.document_id, sender=package.receivers[0], code="01", status="received"
        )
        return 200, write_status(status)

    def received(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]


@pytest.fixture
def mail() -> Iterator[tuple[MailServer, int]]:
    handler, port = MailServer(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def exchange() -> Iterator[tuple[Exchange, int]]:
    state = Exchange()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, answer = state.answer(self.path, dict(self.headers), body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, server.server_address[1]
    finally:
        server.shutdown()


@pytest.fixture
async def told(
    settings: Settings, mail: tuple[MailServer, int], exchange: tuple[Exchange, int]
) -> AsyncIterator[Runtime]:
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mail[1],
            "ioffice_url": f"http://127.0.0.1:{exchange[1]}/exchange",
            "webhook_url": f"http://127.0.0.1:{exchange[1]}/hook",
            "webhook_secret": SecretStr(SECRET),
            "notify_backoff_seconds": 60.0,
            "notify_max_attempts": 3,
        }
    )
    runtime = Runtime(configured, SERVICES, clock=ManualClock(local("2023-02-21")))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_plans_reminders_and_failures_reach_people_once(
    told: Runtime, mail: tuple[MailServer, int], exchange: tuple[Exchange, int]
) -> None:
    runtime, (inbox, _), (far_end, _) = told, mail, exchange
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    client = api_client(create_app(runtime, manage_lifecycle=False), runtime.settings, "http://t")

    async def deliveries(**query: str) -> list[dict[str, Any]]:
        return await expect(client, "GET", "/notifications/deliveries", 200, params=query)

    async def settle(count: int, **query: str) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            rows = await deliveries(**query)
            return rows if len(rows) >= count else None

        return await wait_for(enough, f"{count} deliveries {query}")

    await expect(
        client, "POST", "/plans/org/units", 201, json=[{**u, "valid_from": "2020-01-01"} for u in UNITS]
    )
    await wait_for(lambda: deliveries_known(runtime), "the contacts to reach notifications")
    optional = await client.put("/notifications/units/lb-4/preferences", json={"opted_out": ["plan_issued"]})
    assert optional.status_code == 422 and optional.json()["detail"][0]["field"] == "opted_out[0]"
    await expect(
        client, "PUT", "/notifications/units/lb-4/preferences", 200, json={"opted_out": ["reminder"]}
    )
    plan = await expect(client, "POST", "/plans/plans", 201, json=PLAN)

    # Each unit gets the plan on the first channel that reaches it; the webhook hears of each message.
    await settle(4, kind="plan_issued", channel="webhook")
    rows = await settle(1, kind="plan_issued", channel="email", state="sent")
    await settle(1, recipient_unit_id="lb-4", channel="paper")  # after its email bounced (below)
    channels: dict[str, set[str]] = {}
    for row in await deliveries(kind="plan_issued"):
        if row["channel"] != "webhook":
            channels.setdefault(row["recipient_unit_id"], set()).add(row["channel"])
    assert channels == {"lb-1": {"ioffice"}, "lb-2": {"email"}, "lb-3": {"paper"}, "lb-4": {"email", "paper"}}
    (sent,) = [m for m in inbox.messages if m["To"] == "lb2@cd.vn"]
    assert sent["Subject"] == "Kế hoạch số 5/KH-LĐLĐ: Thi đua lao động giỏi năm 2023"
    assert sent["Message-ID"] == f"<{rows[0]['id']}@thidua>"
    assert "Kính gửi: CĐCS Long Biên 2" in sent.get_body(("plain",)).get_content()
    (attachment,) = list(sent.iter_attachments())
    assert attachment.get_filename() == "5-KH-LĐLĐ.docx"
    assert "Số: 5/KH-LĐLĐ" in Document(io.BytesIO(attachment.get_content())).tables[0].rows[0].cells[0].text

    # The mail server refuses lb-4's address for good: bounced, and the plan goes on paper instead.
    bounced = await settle(1, recipient_unit_id="lb-4", state="bounced")
    assert "no such user" in bounced[0]["last_error"]
    paper = await settle(2, kind="plan_issued", channel="paper", state="to_be_posted")
    batches = {row["external_status"] for row in paper}
    copies = sorted(
        (Path(folder) / name).read_bytes()[:2] + name.encode()
        for folder in batches
        for name in ("lb-3.docx", "lb-4.docx")
        if (Path(folder) / name).exists()
    )
    assert copies == [b"PKlb-3.docx", b"PKlb-4.docx"]
    cover = [
        row
        for folder in batches
        for row in csv.DictReader((Path(folder) / "danh-sach-gui.csv").open(encoding="utf-8-sig"))
    ]
    assert sorted((row["Mã đơn vị"], row["Đơn vị nhận"]) for row in cover) == [
        ("lb-3", "CĐCS Long Biên 3"),
        ("lb-4", "CĐCS Long Biên 4"),
    ]
    posted = await expect(client, "POST", f"/notifications/deliveries/{paper[0]['id']}/posted", 200)
    assert posted["state"] == "posted"

    # The exchange is away twice: retried with backoff, then sent, its status message kept.
    first = (await settle(1, recipient_unit_id="lb-1", channel="ioffice", state="failed"))[0]
    assert first["attempts"] == 1 and "503" in first["last_error"]
    for attempt in (2, 3):  # each retry is due a backoff later: 1 minute, then 2
        clock.advance(timedelta(minutes=3))

        async def tried(attempt: int = attempt) -> bool:
            row = (await deliveries(recipient_unit_id="lb-1", channel="ioffice"))[0]
            return row["attempts"] >= attempt and row["claimed_until"] is None  # tried, and recorded

        await wait_for(tried, f"attempt {attempt} at the exchange")
    done = (await settle(1, recipient_unit_id="lb-1", channel="ioffice", state="sent"))[0]
    assert (done["attempts"], done["external_status"]) == (3, "01 received")
    package = read_package(far_end.received("/exchange")[-1][1])
    assert (package.number, package.receivers[0].organ_id) == ("5/KH-LĐLĐ", "lb-1")

    # The webhook always fails: after three attempts its deliveries are dead, and counted so.
    clock.advance(timedelta(minutes=10))
    dead = await settle(4, kind="plan_issued", channel="webhook", state="dead")
    assert all(row["attempts"] == 3 for row in dead)
    headers, body = far_end.received("/hook")[0]
    assert headers["X-Thidua-Signature"] == signature(SECRET, body)
    assert json.loads(body)["kind"] == "plan_issued"
    metrics = (await client.get("/metrics")).text
    assert 'thidua_notifications_total{channel="webhook",state="dead"} 4.0' in metrics

    # Redelivered: the PlanIssued again on the broker, and straight into the handler past the inbox.
    before = {row["id"] for row in await deliveries(limit="10000")}
    sent_mail = len(inbox.messages)
    with runtime.contexts["plans"].db.reading() as session:
        record = next(
            r for r in session.exec(select(OutboxRecord)) if r.event_id and "PlanIssued" in str(r.headers)
        )
    await produce(
        runtime.settings.kafka_bootstrap_servers,
        record.topic,
        [(record.key.encode(), record.payload, [(k, v.encode()) for k, v in record.headers])],
    )
    envelope = from_kafka(record.payload, dict(map(tuple, record.headers)))
    notifications = runtime.contexts["notifications"]
    with notifications.db.transaction() as uow:
        build_handlers(notifications).handlers[envelope.type](uow, envelope)
    clock.advance(timedelta(minutes=10))
    await anyio.sleep(1.5)
    assert {row["id"] for row in await deliveries(limit="10000")} == before
    assert len(inbox.messages) == sent_mail

    # Reminders three days before the deadline, only to units that have not reported; lb-4 opted out.
    await expect(
        client,
        "POST",
        "/reporting/reports",
        202,
        json={"plan_id": plan["plan_id"], "phase_seq": 1, "unit_id": "lb-2", "values": {"works": 1}},
    )

    async def reported() -> bool:
        owed = await expect(client, "GET", f"/notifications/plans/{plan['plan_id']}/expected", 200)
        return [row["unit_id"] for row in owed if row["reported"]] == ["lb-2"]

    await wait_for(reported, "notifications to learn that lb-2 reported")
    clock.set(local("2023-06-07", 22))  # in the quiet hours
    reminders = await settle(2, kind="reminder")
    assert sorted(row["recipient_unit_id"] for row in reminders if row["channel"] != "webhook") == [
        "lb-1",
        "lb-3",
    ]
    assert all(row["state"] == "queued" for row in reminders)  # quiet hours: they wait for the morning
    clock.set(local("2023-06-08", 7))
    await settle(2, kind="reminder", channel="log", state="sent")
    reminder = (await deliveries(kind="reminder", recipient_unit_id="lb-1", channel="log"))[0]
    body = (await expect(client, "GET", f"/notifications/deliveries/{reminder['id']}", 200))["body"]
    assert "Báo cáo đợt 1, kế hoạch số 5/KH-LĐLĐ — hạn 10/06/2023 (còn 3 ngày)" in body
    assert f"(mã {reminder['id']})" in body  # the letter names its delivery, as an officer quotes it
    clock.set(local("2023-06-09", 9))  # one day before: the nearer reminder, once
    await settle(4, kind="reminder", channel="log")
    clock.advance(timedelta(hours=2))
    await anyio.sleep(1.0)
    assert len(await deliveries(kind="reminder", channel="log")) == 4
    await client.aclose()


async def deliveries_known(runtime: Runtime) -> bool:
    from services.notifications.models import Contact

    with runtime.contexts["notifications"].db.reading() as session:
        return len(session.exec(select(Contact)).all()) == len(UNITS)
