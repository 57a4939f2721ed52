"""The four services as separate processes (`thidua serve …`) on one broker, in real time: a plan
cascades, units report and nominate, and each service's own /metrics shows its business moving."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from shared.access import service_headers
from shared.clock import Clock
from shared.local_broker import free_port
from shared.settings import SERVICES, Settings

UNITS = [
    {"id": "dn", "name": "LĐLĐ thành phố Đà Nẵng", "level": "province"},
    {"id": "dn-hc", "name": "LĐLĐ quận Hải Châu", "level": "district", "parent_id": "dn"},
    *(
        {"id": f"dn-hc-{n}", "name": f"CĐCS Hải Châu {n}", "level": "grassroots", "parent_id": "dn-hc"}
        for n in (1, 2, 3)
    ),
]


KEY = secrets.token_hex(32)


class ByPrefix(httpx.BaseTransport):
    """Sends /<service>/… to that service's own process, as the compose gateway does."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.path.split("/")[1]
        request.url = request.url.copy_with(host="127.0.0.1", port=self.ports[service])
        return self.inner.handle_request(request)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def until(check, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def processes(settings: Settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("THIDUA_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
            "THIDUA_TOPIC_PREFIX": settings.topic_prefix,
            "THIDUA_DATABASE_URL": settings.database_url,
            "THIDUA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "THIDUA_TICK_SECONDS": "0.3",
            "THIDUA_RELAY_POLL_SECONDS": "0.05",
            "THIDUA_LOG_LEVEL": "WARNING",
            # The services check each other's callers' tokens with one key, as a deployment sets it.
            "THIDUA_SECRET_KEY": KEY,
        }
    )
    ports = {service: free_port() for service in SERVICES}
    running = {
        service: subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", service, "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{service}.log").open("w"),
        )
        for service, port in ports.items()
    }
    try:
        for service, port in ports.items():

            def ready(port: int = port, service: str = service) -> bool:
                assert running[service].poll() is None, (tmp_path / f"{service}.log").read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
                except httpx.TransportError:
                    return False

            until(ready, f"{service} to be ready", timeout=90)
        yield ports
    finally:
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        for process in running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_each_service_runs_alone_and_its_metrics_move(processes: dict[str, int]) -> None:
    before = {service: scrape(port) for service, port in processes.items()}
    assert value(before["reporting"], "thidua_reports_received_total", timeliness="on_time") == 0
    assert ("thidua_outbox_pending", (("service", "plans"),)) in before["plans"]
    headers = service_headers(Settings(secret_key=SecretStr(KEY), _env_file=None), "tests")  # type: ignore[call-arg]
    client = httpx.Client(
        transport=ByPrefix(processes), base_url="http://gateway", timeout=10, headers=headers
    )

    today = Clock().today()
    assert (
        client.post("/plans/org/units", json=[{**u, "valid_from": "2020-01-01"} for u in UNITS]).status_code
        == 201
    )
    phase = {
        "seq": 1,
        "label": "Đợt 1",
        "start": (today - timedelta(days=30)).isoformat(),
        "end": (today - timedelta(days=1)).isoformat(),
        "report_due": (today + timedelta(days=5)).isoformat(),
    }
    issued = client.post(
        "/plans/plans",
        json={
            "number": "12/KH-LĐLĐ",
            "issuer_unit_id": "dn",
            "title": "Thi đua lao động giỏi",
            "issued_on": (today - timedelta(days=30)).isoformat(),
            "phases": [phase],
            "indicators": [{"code": "new_members", "name": "Đoàn viên mới", "kind": "count"}],
            "award_quota": {"collectives": 1, "individuals": 1},
            "auto_derive": True,
        },
    )
    assert issued.status_code == 201, issued.text
    city_plan = issued.json()["plan_id"]

    def district_plan() -> str | None:
        plans = client.get("/plans/plans", params={"issuer_unit_id": "dn-hc"}).json()
        return plans[0]["id"] if plans else None

    plan_id = until(district_plan, "the district to cascade the plan")
    until(
        lambda: client.get(f"/reporting/plans/{plan_id}/phases/1/completeness").status_code == 200,
        "reporting to learn the district plan",
    )
    for n, members in ((1, 4), (2, 6), (1, 5)):  # unit 1 corrects itself: 5 counts, once
        body = {
            "plan_id": plan_id,
            "phase_seq": 1,
            "unit_id": f"dn-hc-{n}",
            "values": {"new_members": members},
        }
        submitted = client.post("/reporting/reports", json=body)
        assert submitted.status_code == 202 and submitted.json()["on_time"], submitted.text
    quota = f"/awards/plans/{city_plan}/quota"
    until(
        lambda: client.get(quota, params={"unit_id": "dn-hc"}).status_code == 200,
        "awards to learn the city plan",
    )
    nominated = client.post(
        "/awards/nominations",
        json={
            "plan_id": city_plan,
            "unit_id": "dn-hc",
            "nominee_kind": "collective",
            "nominee_name": "Tổ công đoàn Phòng Kế toán",
            "award": "bang_khen_ldld_tinh",
        },
    )
    assert nominated.status_code == 201, nominated.text

    def totals_settled() -> dict | None:
        """Unit 1's correction counted (5 + 6): two units received is true before it is, with 4 + 6."""
        table = client.get(f"/reporting/plans/{city_plan}/phases/1/completeness").json()
        return table if table["total"]["figures"] == {"new_members": 11} else None

    table = until(totals_settled, "the city's completeness to count unit 1's correction once")
    assert (table["total"]["received"], table["total"]["expected"], table["total"]["on_time"]) == (2, 3, 2)

    def moved() -> dict | None:
        """Every series the test reads has caught up (relays publish a moment after consumers apply)."""
        after = {service: scrape(port) for service, port in processes.items()}
        # The plan goes to the four units on paper (no iOffice or mail server here), the nomination to the
        # city's log; report requests and reminders follow, to whoever has not reported at that moment.
        posted = value(
            after["notifications"], "thidua_notifications_total", channel="paper", state="to_be_posted"
        )
        logged = value(after["notifications"], "thidua_notifications_total", channel="log", state="sent")
        level = value(after["reporting"], "thidua_reporting_completeness_ratio", level="district")
        relayed = value(after["notifications"], "thidua_outbox_published_total", service="notifications")
        issued = value(after["plans"], "thidua_outbox_published_total", service="plans")
        nominated = value(
            after["awards"], "thidua_events_processed_total", consumer="awards", type="PlanIssued"
        )
        done = (
            posted == 4
            and logged >= 1
            and abs(level - 2 / 3) < 1e-9
            and relayed >= 5
            and issued >= 7
            and nominated == 2
        )
        return after if done else None

    after = until(moved, "every service's metrics to show the flow")
    assert value(after["reporting"], "thidua_reports_received_total", timeliness="on_time") == 2
    assert value(
        after["reporting"], "thidua_reporting_completeness_ratio", level="province"
    ) == pytest.approx(2 / 3)
    # A business gauge, not a timing: the district's deadline is three days after today.
    deadline_in = value(after["reporting"], "thidua_reporting_seconds_to_next_deadline")
    assert 0 < deadline_in <= 6 * 86400
    assert value(after["plans"], "thidua_outbox_published_total", service="plans") >= 7
    assert value(after["plans"], "thidua_events_processed_total", consumer="plans", type="PlanIssued") == 2
    # The scheduler went on running while the campaign did.
    last_run = "thidua_scheduler_last_run_timestamp_seconds"
    assert value(after["plans"], last_run, service="plans") > value(
        before["plans"], last_run, service="plans"
    )
    assert value(after["awards"], "thidua_nominations_total", state="nominated") == 1
    assert value(after["awards"], "thidua_events_processed_total", consumer="awards", type="PlanIssued") == 2
    assert value(after["notifications"], "thidua_outbox_published_total", service="notifications") >= 5
    for service in SERVICES:
        received = [
            v
            for (name, labels), v in after[service].items()
            if name == "faststream_received_messages_total" and ("app_name", service) in labels
        ]
        assert sum(received) > 0, f"{service}: FastStream's series did not move"
        outbox = {labels for (name, labels) in after[service] if name.startswith("thidua_outbox")}
        assert outbox and all(("service", service) in labels for labels in outbox), service
