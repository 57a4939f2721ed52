"""Web pages for union officers (Vietnamese): sign in, my plans, a plan's cascade and completeness, submit a
report, review, import a document, nominations. The pages are a client of the services' HTTP APIs, like any
other: in `thidua up` they call them in-process."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.clock import LOCAL_TZ

COOKIE = "thidua_token"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)
STATUS_WORDS = {
    "on_time": "Đúng hạn",
    "late": "Muộn",
    "missing": "Chưa báo cáo (quá hạn)",
    "pending": "Chưa đến hạn",
}
REVIEW_WORDS = {"approved": "Đã duyệt", "returned": "Trả lại", "accepted": "Đã tiếp nhận", None: ""}
KIND_WORDS = {"count": "số lượng", "ratio": "tử số / mẫu số", "yes_no": "có / không", "text": "nội dung"}
# The APIs speak English to integrators; officers read Vietnamese.
MESSAGES = [
    (re.compile(r"^zero or more"), "Phải là số từ 0 trở lên"),
    (re.compile(r"^a whole number"), "Phải là số nguyên"),
    (re.compile(r"^at most the denominator"), "Tử số không được lớn hơn mẫu số"),
    (re.compile(r"^a figure for"), "Chưa nhập số liệu"),
    (re.compile(r"^yes or no"), "Chọn có hoặc không"),
    (re.compile(r"^\{numerator, denominator\}"), "Nhập cả tử số và mẫu số"),
]


def vietnamese(message: str) -> str:
    return next((words for pattern, words in MESSAGES if pattern.search(message)), message)


def dmy(value: str | None) -> str:
    if not value:
        return "—"
    return date.fromisoformat(value[:10]).strftime("%d/%m/%Y")


def figure(figures: dict[str, int], indicator: dict[str, Any]) -> str:
    """One indicator's figure as officers read it; a ratio with its numerator and denominator."""
    code = indicator["code"]
    if indicator["kind"] == "ratio":
        numerator, denominator = figures.get(f"{code}.numerator"), figures.get(f"{code}.denominator")
        if numerator is None or denominator is None:
            return ""
        share = f" ({100 * numerator / denominator:.1f} %)" if denominator else ""
        return f"{numerator}/{denominator}{share}"
    value = figures.get(code)
    return "" if value is None else str(value)


PLAN_STATES = {"issued": "đang thực hiện", "revoked": "đã thu hồi", "closed": "đã kết thúc"}
TEMPLATES.filters["dmy"] = dmy
TEMPLATES.globals.update(
    STATUS_WORDS=STATUS_WORDS,
    REVIEW_WORDS=REVIEW_WORDS,
    KIND_WORDS=KIND_WORDS,
    PLAN_STATES=PLAN_STATES,
    figure=figure,
)


class Officer:
    def __init__(self, me: dict[str, Any], token: str) -> None:
        self.username: str = me["username"]
        self.unit_id: str = me["unit_id"]
        self.unit_name: str = me["unit_name"]
        self.subtree: set[str] = set(me["subtree"])
        self.token = token


def page(name: str, officer: Officer | None = None, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(officer=officer, **context), status_code=status)


def build_web(client_for: Callable[[], httpx.AsyncClient]) -> APIRouter:
    """The pages; `client_for()` gives a client of the services' APIs."""
    router = APIRouter(include_in_schema=False)

    async def api(officer: Officer | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call of the APIs as the signed-in officer: the APIs hold them to their unit and subtree."""
        if officer is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {officer.token}"}
        async with client_for() as client:
            return await client.request(method, path, **kwargs)

    async def signed_in(request: Request) -> Officer | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        answer = await api(None, "GET", "/plans/auth/me", headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 200 or not answer.json()["unit_id"]:
            return None
        return Officer(answer.json(), token)

    def to_sign_in(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/dang-nhap?tiep={quote(str(request.url.path))}", status_code=303)

    @router.get("/dang-nhap")
    async def sign_in_page(tiep: str = "/") -> HTMLResponse:
        return page("sign_in.html", next=tiep)

    @router.post("/dang-nhap")
    async def sign_in(
        username: Annotated[str, Form()], password: Annotated[str, Form()], tiep: Annotated[str, Form()] = "/"
    ) -> Response:
        answer = await api(
            None, "POST", "/plans/auth/token", json={"username": username, "password": password}
        )
        if answer.status_code != 200:
            return page("sign_in.html", next=tiep, error="Sai tên đăng nhập hoặc mật khẩu.", status=401)
        target = tiep if tiep.startswith("/") and not tiep.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, answer.json()["token"], httponly=True, samesite="lax")
        return response

    @router.get("/dang-xuat")
    async def sign_out() -> Response:
        response = RedirectResponse("/dang-nhap", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @router.get("/")
    async def my_plans(request: Request) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        received = (
            await api(officer, "GET", "/plans/plans", params={"target_unit_id": officer.unit_id})
        ).json()
        issued = (
            await api(officer, "GET", "/plans/plans", params={"issuer_unit_id": officer.unit_id})
        ).json()
        for plan in received + issued:
            plan["phases"] = (await api(officer, "GET", f"/plans/plans/{plan['id']}")).json()["phases"]
        return page(
            "home.html", officer, received=received, issued=issued, timeline=timeline(received + issued)
        )

    @router.get("/ke-hoach/{plan_id}")
    async def plan_page(request: Request, plan_id: str, loc: str = "") -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        found = await api(officer, "GET", f"/plans/plans/{plan_id}")
        if found.status_code == 403:  # neither issued in the officer's subtree nor sent to their unit
            return page(
                "message.html", officer, status=403, message="Kế hoạch này không thuộc đơn vị của bạn."
            )
        if found.status_code != 200:
            return page("message.html", officer, status=404, message="Không tìm thấy kế hoạch.")
        plan = found.json()
        sent_to_me = any(
            t["unit_id"] == officer.unit_id
            for t in (await api(officer, "GET", f"/plans/plans/{plan_id}/deployment"))
            .json()
            .get("targets", [])
        )
        above = (
            await api(officer, "GET", f"/plans/plans/{plan['parent_plan_id']}")
            if plan["parent_plan_id"]
            else None
        )
        # The plan it implements, when the officer may read that one too.
        parent = above.json() if above is not None and above.status_code == 200 else None
        children = (await api(officer, "GET", "/plans/plans", params={"parent_plan_id": plan_id})).json()
        children = [child for child in children if child["issuer_unit_id"] in officer.subtree]
        deadlines = (await api(officer, "GET", f"/plans/plans/{plan_id}/deadlines")).json()
        tables = []
        if plan["issuer_unit_id"] in officer.subtree:
            for phase in plan["phases"]:
                answer = await api(
                    officer, "GET", f"/reporting/plans/{plan_id}/phases/{phase['seq']}/completeness"
                )
                if answer.status_code == 200:
                    tables.append(answer.json())
        heatmap = heat_map(tables)
        shown = [dict(t, units=[u for u in t["units"] if not loc or u.get("status") == loc]) for t in tables]
        return page(
            "plan.html",
            officer,
            plan=plan,
            parent=parent,
            children=children,
            deadlines=deadlines,
            tables=shown,
            heatmap=heatmap,
            progress=[progress_chart(t) for t in tables],
            loc=loc,
            mine=plan["issuer_unit_id"] == officer.unit_id,
            sent_to_me=sent_to_me,
            flash=request.query_params.get("tb", ""),
        )

    async def report_form(
        officer: Officer,
        plan_id: str,
        seq: int,
        values: dict[str, str],
        errors: dict[str, str],
        status: int = 200,
    ) -> Response:
        plan = (await api(officer, "GET", f"/plans/plans/{plan_id}")).json()
        history = (
            await api(
                officer, "GET", "/reporting/reports", params={"plan_id": plan_id, "unit_id": officer.unit_id}
            )
        ).json()
        history = [version for version in history if version["phase_seq"] == seq]
        return page(
            "report.html",
            officer,
            status=status,
            plan=plan,
            seq=seq,
            values=values,
            errors=errors,
            history=history,
            done=values.get("_done"),
        )

    @router.get("/ke-hoach/{plan_id}/dot/{seq}/bao-cao")
    async def report_page(request: Request, plan_id: str, seq: int) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        done = {"_done": "1"} if request.query_params.get("da_gui") else {}
        return await report_form(officer, plan_id, seq, done, {})

    @router.post("/ke-hoach/{plan_id}/dot/{seq}/bao-cao")
    async def submit_report(request: Request, plan_id: str, seq: int) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        form = {key: str(value) for key, value in (await request.form()).items()}
        plan = (await api(officer, "GET", f"/plans/plans/{plan_id}")).json()
        values, errors = read_report_form(plan["indicators"], form)
        if not errors:
            answer = await api(
                officer,
                "POST",
                "/reporting/reports",
                json={
                    "plan_id": plan_id,
                    "phase_seq": seq,
                    "unit_id": officer.unit_id,
                    "values": values,
                    "narrative": form.get("narrative", ""),
                },
            )
            if answer.status_code == 202:
                return RedirectResponse(f"/ke-hoach/{plan_id}/dot/{seq}/bao-cao?da_gui=1", status_code=303)
            for problem in answer.json().get("detail", []):
                field = problem["field"].replace("values.", "v.", 1)
                errors[field if field.startswith("v.") else "_form"] = vietnamese(problem["message"])
        return await report_form(officer, plan_id, seq, form, errors, status=422)

    @router.post("/ke-hoach/{plan_id}/dot/{seq}/duyet")
    async def review(
        request: Request,
        plan_id: str,
        seq: int,
        unit_id: Annotated[str, Form()],
        action: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        answer = await api(
            officer,
            "POST",
            f"/reporting/plans/{plan_id}/phases/{seq}/reviews",
            json={"unit_id": unit_id, "action": action, "by_unit_id": officer.unit_id, "reason": reason},
        )
        if answer.status_code != 204:
            detail = answer.json().get("detail", [])
            words = vietnamese(detail[0]["message"]) if isinstance(detail, list) and detail else str(detail)
            return RedirectResponse(f"/ke-hoach/{plan_id}?tb={quote('Không thực hiện được: ' + words)}", 303)
        done = {
            "approve": "Đã duyệt báo cáo của",
            "return": "Đã trả lại báo cáo của",
            "accept": "Đã tiếp nhận",
        }
        return RedirectResponse(f"/ke-hoach/{plan_id}?tb={quote(done.get(action, '') + ' ' + unit_id)}", 303)

    @router.get("/nhap-van-ban")
    async def import_page(request: Request) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        return page("import.html", officer)

    @router.post("/nhap-van-ban")
    async def import_document(request: Request, document: Annotated[UploadFile, File()]) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        data = await document.read()
        answer = await api(
            officer,
            "POST",
            "/plans/documents",
            params={"unit_id": officer.unit_id, "filename": document.filename or ""},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if answer.status_code != 201:
            detail = answer.json().get("detail", [])
            message = detail[0]["message"] if isinstance(detail, list) and detail else str(detail)
            return page("import.html", officer, status=422, error=message)
        return page("import.html", officer, result=answer.json())

    @router.post("/nhap-van-ban/{draft_id}/ban-hanh")
    async def issue_draft(request: Request, draft_id: str) -> Response:
        """Issue the draft read from a document, once the officer has checked it."""
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        draft = await api(officer, "GET", f"/plans/drafts/{draft_id}")
        if draft.status_code != 200 or draft.json()["unit_id"] != officer.unit_id:
            return page(
                "message.html", officer, status=403, message="Dự thảo này không thuộc đơn vị của bạn."
            )
        answer = await api(officer, "POST", f"/plans/drafts/{draft_id}/issue")
        if answer.status_code == 201:
            return RedirectResponse(
                f"/ke-hoach/{answer.json()['plan_id']}?tb={quote('Đã ban hành kế hoạch')}", 303
            )
        problems = answer.json().get("detail", [])
        return page(
            "import.html", officer, status=422, problems=problems if isinstance(problems, list) else []
        )

    @router.get("/khen-thuong")
    async def nominations(request: Request) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        rows = (await api(officer, "GET", "/awards/nominations")).json()
        rows = [
            (await api(officer, "GET", f"/awards/nominations/{row['id']}")).json()
            for row in rows
            if row.get("unit_id") in officer.subtree or row.get("to_unit_id") == officer.unit_id
        ]
        quotas = []
        for plan_id in dict.fromkeys(row["plan_id"] for row in rows if row["unit_id"] == officer.unit_id):
            answer = await api(
                officer, "GET", f"/awards/plans/{plan_id}/quota", params={"unit_id": officer.unit_id}
            )
            if answer.status_code == 200:
                quotas.append(answer.json())
        return page(
            "nominations.html", officer, rows=rows, quotas=quotas, flash=request.query_params.get("tb", "")
        )

    async def act_on_nomination(request: Request, path: str, body: dict[str, Any], done: str) -> Response:
        officer = await signed_in(request)
        if officer is None:
            return to_sign_in(request)
        answer = await api(
            officer, "POST", f"/awards/nominations/{path}", json={**body, "by_unit_id": officer.unit_id}
        )
        if answer.status_code >= 400:
            detail = answer.json().get("detail", [])
            done = "Không thực hiện được: " + (
                detail[0]["message"] if isinstance(detail, list) and detail else str(detail)
            )
        return RedirectResponse(f"/khen-thuong?tb={quote(done)}", status_code=303)

    @router.post("/khen-thuong/{nomination_id}/bo-phieu")
    async def vote(
        request: Request,
        nomination_id: str,
        members: Annotated[str, Form()],
        yes: Annotated[str, Form()],
        no: Annotated[str, Form()],
    ) -> Response:
        counts = [text.strip() for text in (members, yes, no)]
        if not all(text.isdigit() for text in counts):
            return RedirectResponse(f"/khen-thuong?tb={quote('Số phiếu phải là số nguyên')}", status_code=303)
        ballot = dict(zip(("members", "yes", "no"), map(int, counts), strict=True))
        return await act_on_nomination(request, f"{nomination_id}/votes", ballot, "Đã ghi kết quả bỏ phiếu")

    @router.post("/khen-thuong/{nomination_id}/chuyen")
    async def forward(request: Request, nomination_id: str) -> Response:
        return await act_on_nomination(request, f"{nomination_id}/forward", {}, "Đã chuyển lên cấp trên")

    @router.post("/khen-thuong/{nomination_id}/quyet-dinh")
    async def decide(request: Request, nomination_id: str) -> Response:
        return await act_on_nomination(
            request, f"{nomination_id}/decision", {}, "Đã ra quyết định khen thưởng"
        )

    return router


def read_report_form(
    indicators: list[dict[str, Any]], form: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The report's values from the form's fields, and a message for each field that is not a number."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def number(field: str) -> int | None:
        text = form.get(field, "").strip().replace(".", "").replace(" ", "")
        if not text:
            errors[field] = "Chưa nhập số liệu"
            return None
        if not re.fullmatch(r"-?\d+", text):
            errors[field] = f"“{form.get(field)}” không phải là số nguyên"
            return None
        return int(text)

    for indicator in indicators:
        code, kind = indicator["code"], indicator["kind"]
        if kind == "count":
            found = number(f"v.{code}")
            if found is not None:
                values[code] = found
        elif kind == "ratio":
            numerator, denominator = number(f"v.{code}.numerator"), number(f"v.{code}.denominator")
            if numerator is not None and denominator is not None:
                values[code] = {"numerator": numerator, "denominator": denominator}
        elif kind == "yes_no":
            values[code] = form.get(f"v.{code}") == "co"
        elif form.get(f"v.{code}", "").strip():
            values[code] = form[f"v.{code}"].strip()
    return values, errors


def heat_map(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """Units × phases, each cell the unit's report status on that phase."""
    units: dict[str, str] = {}
    cells: dict[tuple[str, int], str] = {}
    for table in tables:
        for row in table["units"]:
            units.setdefault(row["unit_id"], row["name"])
            status = row.get("status")
            if status is None:  # a unit with units below it: how its subtree stands
                status = (
                    "missing"
                    if row.get("missing")
                    else "late"
                    if row.get("late")
                    else (
                        "on_time"
                        if row.get("received") and row.get("received") == row.get("expected")
                        else "pending"
                    )
                )
            cells[(row["unit_id"], table["phase_seq"])] = status
    return {"units": units, "phases": [t["phase_seq"] for t in tables], "cells": cells}


def progress_chart(table: dict[str, Any]) -> dict[str, Any]:
    """Reports received over time on one phase, as the points of a small SVG line."""
    times = sorted(
        datetime.fromisoformat(row["submitted_at"]).astimezone(LOCAL_TZ)
        for row in table["units"]
        if row.get("submitted_at")
    )
    expected = max(len(table["units"]), 1)
    if not times:
        return {"phase_seq": table["phase_seq"], "points": "", "received": 0, "expected": expected}
    start, end = times[0], times[-1]
    span = max((end - start).total_seconds(), 1.0)
    points = [(0.0, 100.0)]
    for index, moment in enumerate(times, start=1):
        x = 280.0 * (moment - start).total_seconds() / span
        points += [(x, points[-1][1]), (x, 100.0 - 100.0 * index / expected)]  # a step per report
    points.append((300.0, points[-1][1]))
    return {
        "phase_seq": table["phase_seq"],
        "points": " ".join(f"{x:.0f},{y:.0f}" for x, y in points),
        "received": len(times),
        "expected": expected,
        "first": start.strftime("%d/%m"),
        "last": end.strftime("%d/%m"),
    }


def timeline(plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Where each plan's phases fall in the year of the plans shown: percentages for a bar per phase."""
    days = [date.fromisoformat(p["start"]) for plan in plans for p in plan["phases"]]
    days += [date.fromisoformat(p["end"]) for plan in plans for p in plan["phases"] if p.get("end")]
    if not days:
        return {}
    first, last = min(days), max(days)
    span = max((last - first).days, 1)

    def at(day: str | None) -> float:
        return 100.0 * ((date.fromisoformat(day) if day else last) - first).days / span

    return {
        plan["id"]: [
            {
                "label": p["label"],
                "left": at(p["start"]),
                "width": max(at(p.get("end")) - at(p["start"]), 2.0),
            }
            for p in plan["phases"]
        ]
        for plan in plans
    }
