"""The commands a person types: `thidua demo` and `thidua up`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openpyxl
import pytest

from shared.access import service_headers
from shared.local_broker import free_port
from shared.settings import Settings

THIDUA = [sys.executable, "-m", "services.cli"]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("THIDUA_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the embedded defaults
    env["THIDUA_VAR_DIR"] = str(tmp_path / "var")
    return env


def operator(tmp_path: Path) -> dict[str, str]:
    """An operator's token, signed with the key `thidua up` keeps in its var folder."""
    settings = Settings(var_dir=tmp_path / "var", _env_file=None)  # type: ignore[call-arg]
    return service_headers(settings, "tests")


def test_demo_prints_the_tables_and_exits_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [*THIDUA, "demo"],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LĐLĐ thành phố Hà Nội" in done.stdout
    assert "Every figure equals the figure expected from what was submitted." in done.stdout


def test_plan_parse_reads_a_document_without_services(tmp_path: Path) -> None:
    seed = next((Path(__file__).parent.parent / "fixtures" / "seeds").glob("004_*.txt"))
    done = subprocess.run(
        [*THIDUA, "plan", "parse", str(seed), "--json"],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    keys = "document_type number issuer place issued_on title implements movements phases targets deadlines"
    assert set(keys.split()) | {"award_quotas", "recipients", "signer", "warnings"} <= set(parsed)
    assert (parsed["place"], parsed["issued_on"]) == ("Long Biên", "2023-01-18")
    assert "invalid_date" in [warning["code"] for warning in parsed["warnings"]]
    vni = tmp_path / "vni.txt"
    vni.write_text("Keá hoaïch thi ñua naêm 2024 cuûa Lieân ñoaøn Lao ñoäng quaän", encoding="utf-8")
    refused = subprocess.run(
        [*THIDUA, "plan", "parse", str(vni)], env=environment(tmp_path), capture_output=True, text=True
    )
    assert refused.returncode == 1 and "VNI" in refused.stdout


ORG_CSV = """id,name,level,parent_id,sector,email,has_ioffice,valid_from,valid_to
hn,LĐLĐ thành phố Hà Nội,province,,,,yes,2020-01-01,
hn-lb,LĐLĐ quận Long Biên,district,hn,,,yes,2020-01-01,
hn-hk,LĐLĐ quận Hoàn Kiếm,district,hn,,,yes,2020-01-01,
hn-lb-01,CĐCS Trường THCS Gia Thụy,grassroots,hn-lb,school,gt@example.vn,no,2020-01-01,
"""


def check_org_import_and_move(base: str, tmp_path: Path) -> None:
    """`thidua org import` registers a CSV; a bad one is refused naming the row; a move keeps history."""
    # The command line signs its calls with the key `thidua up` keeps in its var folder.
    env = {**environment(tmp_path), "THIDUA_API_URL": base}
    good = tmp_path / "units.csv"
    good.write_text(ORG_CSV, encoding="utf-8")
    done = subprocess.run([*THIDUA, "org", "import", str(good)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Registered 4 units." in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(ORG_CSV.replace("hn-lb-01,CĐCS Trường THCS Gia Thụy,grassroots", "hn-lb-02,CĐCS,cơ sở"))
    refused = subprocess.run([*THIDUA, "org", "import", str(bad)], env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "row 4: level" in refused.stdout and "cơ sở" in refused.stdout

    moved = httpx.post(
        f"{base}/plans/org/units/hn-lb-01/move",
        headers=operator(tmp_path),
        json={"new_parent_id": "hn-hk", "effective_on": "2024-01-01"},
    )
    assert moved.status_code == 204, moved.text

    def children(parent: str, on: str) -> list[str]:
        rows = httpx.get(
            f"{base}/plans/org/units", headers=operator(tmp_path), params={"parent_id": parent, "on": on}
        ).json()
        return [row["unit_id"] for row in rows]

    assert children("hn-lb", "2023-12-31") == ["hn-lb-01"] and children("hn-hk", "2023-12-31") == []
    assert children("hn-lb", "2024-01-01") == [] and children("hn-hk", "2024-01-01") == ["hn-lb-01"]
    below_itself = {"new_parent_id": "hn-lb-01", "effective_on": "2024-02-01"}
    wrong = httpx.post(f"{base}/plans/org/units/hn-lb-01/move", headers=operator(tmp_path), json=below_itself)
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["field"] == "new_parent_id"


def check_status(base: str, tmp_path: Path) -> None:
    """`thidua status PLAN` prints the completeness table and saves it as a workbook."""
    plan = {
        "number": "7/KH-LĐLĐ",
        "issuer_unit_id": "hn",
        "title": "Thi đua lao động giỏi",
        "issued_on": "2023-02-01",
        "phases": [
            {
                "seq": 1,
                "label": "Đợt 1",
                "start": "2023-03-01",
                "end": "2023-05-31",
                "report_due": "2023-06-07",
            }
        ],
        "indicators": [{"code": "new_members", "name": "Đoàn viên mới", "kind": "count"}],
        "auto_derive": True,
    }
    issued = httpx.post(f"{base}/plans/plans", headers=operator(tmp_path), json=plan)
    assert issued.status_code == 201, issued.text
    plan_id = issued.json()["plan_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        table = httpx.get(
            f"{base}/reporting/plans/{plan_id}/phases/1/completeness", headers=operator(tmp_path)
        )
        # thidua up runs on the wall clock: the 2023 deadline has passed, so the unit is missing.
        if table.status_code == 200 and table.json()["total"]["missing"] == 1:
            break
        time.sleep(0.2)
    workbook = tmp_path / "status.xlsx"
    # The command line signs its calls with the key `thidua up` keeps in its var folder.
    env = {**environment(tmp_path), "THIDUA_API_URL": base}
    shown = subprocess.run(
        [*THIDUA, "status", plan_id, "--export", str(workbook)], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "LĐLĐ quận Long Biên" in shown.stdout and "LĐLĐ thành phố Hà Nội" in shown.stdout
    sheet = openpyxl.load_workbook(workbook).active
    total = next(row for row in sheet.iter_rows(values_only=True) if row[0] == "Tổng cộng")
    assert list(total[:6]) == ["Tổng cộng", 1, 0, 0, 0, 1]  # expected 1, missing 1
    unknown = subprocess.run([*THIDUA, "status", "no-such-plan"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 1 and "no plan no-such-plan" in unknown.stdout


PLAN_YAML = """
number: 9/KH-LĐLĐ
issuer_unit_id: hn
title: Đợt thi đua chào mừng Đại hội
issued_on: 2023-02-01
milestones:
  - {id: dai-hoi, name: Đại hội Công đoàn Thành phố lần thứ XVII}
phases:
  - {seq: 1, label: Đợt 1, end: 2023-04-30}
  - {seq: 2, label: Đợt 2, start: 2023-05-01, end_milestone: dai-hoi}
deadlines:
  - {kind: after_phase, days: 3}
  - {kind: fixed, purpose: registration, due_on: 2023-02-20}
"""


def check_plan_verbs(base: str, tmp_path: Path) -> None:
    """`thidua plan …` issues, shows, dates a milestone, derives, acknowledges and revokes, over HTTP."""
    # The command line signs its calls with the key `thidua up` keeps in its var folder.
    env = {**environment(tmp_path), "THIDUA_API_URL": base}

    def plan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*THIDUA, "plan", *args], env=env, capture_output=True, text=True, timeout=60)

    source = tmp_path / "plan.yaml"
    source.write_text(PLAN_YAML, encoding="utf-8")
    issued = plan("issue", str(source))
    assert issued.returncode == 0, issued.stdout + issued.stderr
    plan_id = issued.stdout.split(": ")[-1].strip()
    assert "(dai-hoi)" in plan("show", plan_id).stdout
    assert plan("milestone", plan_id, "dai-hoi", "--on", "2023-08-01").returncode == 0
    shown = plan("show", plan_id).stdout
    assert "2023-08-01" in shown and "2023-08-04" in shown
    assert "2023-08-04" in plan("deadlines", plan_id).stdout
    draft_file = tmp_path / "draft.json"
    assert plan("derive", plan_id, "--unit", "hn-lb", "--output", str(draft_file)).returncode == 0
    draft = json.loads(draft_file.read_text())
    assert (draft["parent_plan_id"], draft["issuer_unit_id"]) == (plan_id, "hn-lb")
    assert plan("ack", plan_id, "--unit", "hn-lb").returncode == 0
    assert "✓ LĐLĐ quận Long Biên" in plan("deployment", plan_id).stdout
    registered = plan("register", plan_id, "--unit", "hn-hk", "--kind", "work", "--title", "Công trình")
    assert "Registered (late): Công trình" in registered.stdout  # the 2023 deadline has passed
    bad = tmp_path / "bad.yaml"
    bad.write_text(PLAN_YAML.replace("9/KH-LĐLĐ", "kế hoạch chín"), encoding="utf-8")
    refused = plan("issue", str(bad))
    assert refused.returncode == 1 and "number: 'kế hoạch chín'" in refused.stdout
    award = tmp_path / "nomination.yaml"
    award.write_text(
        f"plan_id: {plan_id}\nunit_id: hn-hk\nnominee_kind: collective\nnominee_name: Tổ công đoàn A\n"
        "award: tap_the_lao_dong_xuat_sac\nnominee_unit_id: hn-hk\n"
        "facts: {members: 10, members_completing: 9}\n",
        encoding="utf-8",
    )

    def awards(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*THIDUA, "award", *args], env=env, capture_output=True, text=True, timeout=60)

    made = awards("nominate", str(award))
    assert made.returncode == 0, made.stdout + made.stderr
    nomination = made.stdout.strip().rsplit(": ", 1)[-1]
    shown = awards("show", nomination).stdout
    assert "nominated at hn" in shown and "fails min_members_completing_share" in shown
    assert "passed" in awards("vote", nomination, "--by", "hn", "--members", "7", "--yes", "5").stdout
    refused = awards("decide", nomination, "--by", "hn")
    assert refused.returncode == 1 and "a district unit" in refused.stdout
    assert "Decided: 0" in awards("stats").stdout
    docx = tmp_path / "plan.docx"
    assert plan("docx", plan_id, "--output", str(docx)).returncode == 0
    assert docx.read_bytes().startswith(b"PK")
    seed = next((Path(__file__).parent.parent / "fixtures" / "seeds").glob("000_*.txt"))
    imported = plan("import", str(seed), "--unit", "hn-lb")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "19/KH-LĐLĐ" in imported.stdout and "inconsistent_name" in imported.stdout
    assert "Draft " in imported.stdout
    assert plan("revoke", plan_id, "--reason", "Thay thế").returncode == 0
    assert "revoked" in plan("show", plan_id).stdout


def check_web_alone(base: str, tmp_path: Path) -> None:
    """`thidua web` serves the officers' pages as a client of the APIs at --api, as compose runs it."""
    port = free_port()
    pages = subprocess.Popen(
        [*THIDUA, "web", "--api", base, "--port", str(port)],
        env=environment(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    site = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{site}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        officer = {"username": "hoankiem", "password": "mat-khau-an-toan"}
        assert (
            httpx.post(
                f"{base}/plans/org/units/hn-hk/officers", headers=operator(tmp_path), json=officer
            ).status_code
            == 201
        )
        signed = httpx.post(f"{site}/dang-nhap", data=officer, follow_redirects=True)
        assert signed.status_code == 200 and "Kế hoạch của tôi" in signed.text
        assert "LĐLĐ quận Hoàn Kiếm" in signed.text
        wrong = httpx.post(f"{site}/dang-nhap", data={**officer, "password": "sai-mat-khau"})
        assert wrong.status_code == 401 and "Sai tên đăng nhập" in wrong.text
    finally:
        pages.terminate()
        pages.wait(timeout=30)


def test_up_serves_health_readiness_metrics_and_the_apis(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*THIDUA, "up", "--port", str(port)],
        env=environment(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, ready.text if ready else "no answer"
        assert ready.json()["checks"]["reporting.database"] == "ok"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        metrics = httpx.get(f"{base}/metrics").text
        assert 'thidua_outbox_pending{service="plans"}' in metrics
        assert 'thidua_reports_received_total{timeliness="late"} 0.0' in metrics
        assert httpx.get(f"{base}/plans/org/units").status_code == 401  # every API call needs a token
        assert httpx.get(f"{base}/plans/org/units", headers=operator(tmp_path)).json() == []
        check_org_import_and_move(base, tmp_path)
        check_status(base, tmp_path)
        check_plan_verbs(base, tmp_path)
        check_web_alone(base, tmp_path)
        openapi = httpx.get(f"{base}/openapi.json").json()
        assert "/reporting/reports" in openapi["paths"] and "/awards/nominations" in openapi["paths"]
        assert (tmp_path / "var" / "plans.db").exists()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    # A graceful stop (uvicorn re-raises the signal once it has shut down) that takes the broker along.
    assert server.returncode in (0, 130, -signal.SIGINT)
    started = [json.loads(line) for line in output.splitlines() if "embedded broker started" in line]
    host, broker_port = started[0]["bootstrap_servers"].split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(broker_port)), timeout=2)
