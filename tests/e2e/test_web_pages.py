"""The officers' pages in a real browser (Debian's Chromium, driven by Playwright): a grassroots officer
submits a report, sees the message for a wrong value, fixes it; the district officer sees the unit on
time, returns another unit's report and approves. A screenshot of each page is kept in artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, async_playwright
from playwright.async_api import expect as see

from services.demo import expect, local, wait_for
from services.runtime import Runtime, create_app
from shared.access import service_headers
from shared.clock import ManualClock
from shared.local_broker import free_port

SCREENSHOTS = Path(__file__).parent.parent.parent / "artifacts" / "screenshots"
SEED = next((Path(__file__).parent.parent / "fixtures" / "seeds").glob("000_*.txt"))
UNITS = [
    {"id": "hn", "name": "LĐLĐ thành phố Hà Nội", "level": "province"},
    {"id": "lb", "name": "LĐLĐ quận Long Biên", "level": "district", "parent_id": "hn"},
    {"id": "lb-1", "name": "CĐCS Trường THCS Gia Thụy", "level": "grassroots", "parent_id": "lb"},
    {"id": "lb-2", "name": "CĐCS Công ty May 10", "level": "grassroots", "parent_id": "lb"},
]
PHASE = {"seq": 1, "label": "Đợt 1", "start": "2023-03-01", "end": "2023-05-31", "report_due": "2023-06-10"}
INDICATORS = [
    {"code": "works", "name": "Công trình, phần việc", "kind": "count"},
    {"code": "initiative", "name": "Đoàn viên có sáng kiến", "kind": "ratio"},
]


@pytest.fixture
async def site(runtime: Runtime) -> AsyncIterator[str]:
    """thidua's HTTP app on a loopback port, as `thidua up` serves it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime, manage_lifecycle=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


async def sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/dang-xuat")
    await page.get_by_label("Tên đăng nhập").fill(username)
    await page.get_by_label("Mật khẩu").fill("mat-khau-an-toan")
    await page.get_by_role("button", name="Đăng nhập").click()
    await see(page.get_by_role("heading", name="Kế hoạch của tôi")).to_be_visible()


async def test_officers_submit_and_review_reports_in_a_browser(runtime: Runtime, site: str) -> None:
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    api = httpx.AsyncClient(base_url=site, headers=service_headers(runtime.settings, "tests"))
    await expect(
        api, "POST", "/plans/org/units", 201, json=[{**u, "valid_from": "2020-01-01"} for u in UNITS]
    )
    for unit, username in (("lb", "quan"), ("lb-1", "giathuy"), ("hn", "thanhpho")):
        body = {"username": username, "password": "mat-khau-an-toan", "full_name": username}
        await expect(api, "POST", f"/plans/org/units/{unit}/officers", 201, json=body)
    city = await expect(
        api,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "80/KH-LĐLĐ",
            "issuer_unit_id": "hn",
            "title": "Đợt thi đua cao điểm năm 2023",
            "issued_on": "2023-02-21",
            "phases": [{**PHASE, "report_due": "2023-06-15"}],
            "indicators": INDICATORS,
        },
    )
    plan = await expect(
        api,
        "POST",
        "/plans/plans",
        201,
        json={
            "number": "7/KH-LĐLĐ",
            "issuer_unit_id": "lb",
            "title": "Thi đua lao động giỏi, lao động sáng tạo năm 2023",
            "issued_on": "2023-02-21",
            "parent_plan_id": city["plan_id"],
            "phases": [PHASE],
            "indicators": INDICATORS,
        },
    )
    plan_id = plan["plan_id"]

    async def reporting_knows() -> bool:
        return (await api.get(f"/reporting/plans/{plan_id}/phases/1/completeness")).status_code == 200

    await wait_for(reporting_knows, "reporting to learn the district plan")
    clock.set(local("2023-06-03"))
    other = {"works": 2, "initiative": {"numerator": 3, "denominator": 40}}
    await expect(
        api,
        "POST",
        "/reporting/reports",
        202,
        json={"plan_id": plan_id, "phase_seq": 1, "unit_id": "lb-2", "values": other},
    )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        page = await browser.new_page(locale="vi-VN")

        # A grassroots officer signs in and sees the plan received from the district.
        await page.goto(f"{site}/")
        await see(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
        await shot(page, "01-dang-nhap")
        await sign_in(page, site, "giathuy")
        await see(page.get_by_role("link", name="7/KH-LĐLĐ")).to_be_visible()
        await shot(page, "02-ke-hoach-cua-toi")
        await page.get_by_role("link", name="7/KH-LĐLĐ").click()
        await see(page.get_by_role("heading", name="Kế hoạch số 7/KH-LĐLĐ")).to_be_visible()
        await shot(page, "03-ke-hoach-co-so")

        # A wrong value is refused with the message beside the field; nothing is kept.
        await page.get_by_role("link", name="Gửi báo cáo Đợt 1").click()
        await page.get_by_label("Công trình, phần việc").fill("-3")
        await page.get_by_label("Tử số").fill("5")
        await page.get_by_label("Mẫu số").fill("20")
        await page.get_by_role("button", name="Gửi báo cáo").click()
        await see(page.get_by_role("alert")).to_have_text("Phải là số từ 0 trở lên")
        await see(page.get_by_label("Công trình, phần việc")).to_have_attribute("aria-invalid", "true")
        await see(page.get_by_text("Chưa gửi lần nào.")).to_be_visible()
        await shot(page, "04-bao-cao-sai")
        await page.get_by_label("Công trình, phần việc").fill("4")
        await page.get_by_role("button", name="Gửi báo cáo").click()
        await see(page.get_by_role("status")).to_contain_text("Đã gửi báo cáo")
        await see(page.locator("table tr").nth(1)).to_contain_text("'works': 4")
        await shot(page, "05-bao-cao-da-gui")

        # Only its own subtree: the city's plan is not the grassroots officer's to see.
        await page.goto(f"{site}/ke-hoach/{city['plan_id']}")
        await see(page.get_by_text("không thuộc đơn vị của bạn")).to_be_visible()

        # The district officer sees Gia Thụy on time, returns May 10's report, approves Gia Thụy's.
        await sign_in(page, site, "quan")
        await page.get_by_role("link", name="7/KH-LĐLĐ").click()

        async def counted() -> bool:
            await page.reload()
            row = page.locator("tr[data-unit='lb-1']")
            return await row.count() == 1 and "Đúng hạn" in await row.inner_text()

        await wait_for(counted, "Gia Thụy to be counted on time")
        await see(page.locator("tr[data-unit='lb-1'] td.num").first).to_have_text("4")
        await see(page.locator("tr[data-unit='lb-1'] td.num").nth(1)).to_have_text("5/20 (25.0 %)")
        await see(page.get_by_label("Bản đồ nhiệt")).to_contain_text("Đúng hạn")
        await shot(page, "06-quan-tien-do")
        await page.get_by_label("Lý do trả lại CĐCS Công ty May 10").fill("Số liệu sáng kiến chưa khớp")
        await page.locator("tr[data-unit='lb-2']").get_by_role("button", name="Trả lại").click()
        await see(page.get_by_role("status")).to_contain_text("Đã trả lại báo cáo của lb-2")
        await see(page.locator("tr[data-unit='lb-2']")).to_contain_text("Số liệu sáng kiến chưa khớp")
        await page.locator("tr[data-unit='lb-1']").get_by_role("button", name="Duyệt").click()
        await see(page.get_by_role("status")).to_contain_text("Đã duyệt báo cáo của lb-1")
        await see(page.locator("tr[data-unit='lb-1']")).to_contain_text("Đã duyệt")
        await shot(page, "07-quan-da-duyet")

        # A plan document read in the browser: what was understood, the doubts highlighted, before issuing.
        await page.get_by_role("link", name="Nhập văn bản").click()
        await page.get_by_label("Văn bản").set_input_files(str(SEED))
        await page.get_by_role("button", name="Đọc văn bản").click()
        await see(page.locator(".warning").filter(has_text="inconsistent_name")).to_be_visible()
        await see(page.get_by_role("cell", name="19/KH-LĐLĐ")).to_be_visible()
        await shot(page, "08-nhap-van-ban")

        # The council votes on Gia Thụy's nomination and the district decides it.
        clock.set(local("2023-06-20"))  # after the deadline: the reports are judged on time or not
        nomination = await expect(
            api,
            "POST",
            "/awards/nominations",
            201,
            json={
                "plan_id": plan_id,
                "unit_id": "lb-1",
                "nominee_kind": "collective",
                "nominee_name": "CĐCS Trường THCS Gia Thụy",
                "nominee_unit_id": "lb-1",
                "award": "tap_the_lao_dong_xuat_sac",
                "facts": {
                    "members": 20,
                    "members_completing": 20,
                    "lao_dong_tien_tien": 15,
                    "chien_si_thi_dua": 1,
                },
                "achievement_ids": ["gt-1"],
            },
        )

        async def eligible() -> bool:
            found = await expect(api, "GET", f"/awards/nominations/{nomination['nomination_id']}", 200)
            return found["failed_rules"] == []

        await wait_for(eligible, "awards to learn that Gia Thụy reported on time")
        await page.get_by_role("link", name="Khen thưởng").click()
        row = page.locator(f"tr[data-nomination='{nomination['nomination_id']}']")
        await row.get_by_label("Số thành viên hội đồng").fill("9")
        await row.get_by_label("Số phiếu đồng ý").fill("6")
        await row.get_by_label("Số phiếu không đồng ý").fill("3")
        await row.get_by_role("button", name="Bỏ phiếu").click()
        await see(page.get_by_role("status")).to_contain_text("Đã ghi kết quả bỏ phiếu")
        await row.get_by_role("button", name="Quyết định").click()
        await see(page.get_by_role("status")).to_contain_text("Đã ra quyết định khen thưởng")
        await see(row).to_contain_text("1/QĐ-lb")
        await shot(page, "09-khen-thuong")

        # On a phone screen the page fits its width; wide tables scroll inside their box.
        phone = await browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN")
        small = await phone.new_page()
        await sign_in(small, site, "quan")
        await small.goto(f"{site}/ke-hoach/{plan_id}")
        assert await small.evaluate("document.documentElement.scrollWidth") <= 390
        await shot(small, "10-dien-thoai")
        await browser.close()

    reviews = await expect(api, "GET", f"/reporting/plans/{plan_id}/phases/1/completeness", 200)
    states = {row["unit_id"]: row["review"] for row in reviews["units"]}
    assert states == {"lb-1": "approved", "lb-2": "returned"}
    await api.aclose()
