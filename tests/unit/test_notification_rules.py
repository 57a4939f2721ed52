"""The rules of telling people, without a broker or a database."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from services.notifications import domain, handlers
from services.notifications.handlers import Letters, render_message
from shared.clock import LOCAL_TZ

ALL = {"ioffice", "email", "paper", "log"}
DOCUMENTS = ["ioffice", "email", "paper"]


@pytest.mark.parametrize(
    ("email", "has_ioffice", "configured", "after", "channel"),
    [
        ("a@b.vn", True, ALL, None, "ioffice"),
        ("a@b.vn", False, ALL, None, "email"),
        (None, False, ALL, None, "paper"),
        ("a@b.vn", True, {"paper", "log"}, None, "paper"),  # no exchange, no mail server configured
        ("a@b.vn", True, ALL, "ioffice", "email"),  # iOffice gave up: fall back
        ("a@b.vn", False, ALL, "email", "paper"),
        (None, False, ALL, "paper", None),  # nothing left
    ],
)
def test_the_first_channel_that_reaches_the_unit(
    email: str | None, has_ioffice: bool, configured: set[str], after: str | None, channel: str | None
) -> None:
    assert domain.choose_channel(DOCUMENTS, email, has_ioffice, configured, after) == channel


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    waits = [domain.backoff(n, 60, 600).total_seconds() for n in range(1, 7)]
    assert waits == [60, 120, 240, 480, 600, 600]


def at(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=LOCAL_TZ)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (at("2023-06-07", 22), at("2023-06-08", 7)),
        (at("2023-06-08", 3, 30), at("2023-06-08", 7)),
        (at("2023-06-08", 7), None),
        (at("2023-06-08", 20, 59), None),
    ],
)
def test_quiet_hours_across_midnight(now: datetime, until: datetime | None) -> None:
    assert domain.quiet_until(now, domain.parse_quiet_hours("21-7")) == until


def test_quiet_hours_within_a_day_and_none() -> None:
    assert domain.quiet_until(at("2023-06-08", 12), domain.parse_quiet_hours("12-14")) == at("2023-06-08", 14)
    assert domain.quiet_until(at("2023-06-08", 23), domain.parse_quiet_hours("")) is None
    with pytest.raises(ValueError, match="hours from 0 to 23"):
        domain.parse_quiet_hours("21-25")


DUE = date(2023, 6, 10)


@pytest.mark.parametrize(
    ("today", "reminded", "lead"),
    [
        (date(2023, 6, 6), None, None),  # four days before: nothing yet
        (date(2023, 6, 7), None, 3),
        (date(2023, 6, 8), 3, None),  # already reminded at three days
        (date(2023, 6, 9), 3, 1),
        (date(2023, 6, 9), 1, None),
        (date(2023, 6, 9), None, 1),  # down on the 7th and 8th: only the nearer reminder, once
        (date(2023, 6, 10), None, None),  # the deadline itself: overdue is another message
    ],
)
def test_reminders_at_the_configured_days_once_each(
    today: date, reminded: int | None, lead: int | None
) -> None:
    assert domain.reminder_lead(DUE, today, [1, 3], reminded) == lead


def test_webhook_signature_is_hmac_sha256_of_the_body() -> None:
    # RFC 4231, test case 2.
    assert domain.signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


RECIPIENTS = [("CĐCS Công ty May 10", "a1"), ("Trường {{ x }} & <b>", "b2"), ("", "c3"), ("CĐCS \\1", "d4")]


def test_the_bodies_of_a_fan_out_read_as_if_each_were_rendered_alone() -> None:
    letters = Letters()
    lines = ("Kế hoạch số 19/KH-LĐLĐ", "Hạn báo cáo 05/6/2023")
    for name, delivery in RECIPIENTS:
        body = letters.body(name, "Đề nghị báo cáo đợt 1", lines, "19-KH-LDLD.docx", delivery)
        assert body == render_message(name, "Đề nghị báo cáo đợt 1", lines, "19-KH-LDLD.docx", delivery)
        assert name in body and delivery in body


def test_a_template_that_does_more_with_the_name_than_print_it_is_rendered_for_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def shouting(name: str, subject: str, lines: tuple[str, ...], file: str | None, delivery: str) -> str:
        return f"{name.upper()}: {subject} ({delivery})"

    monkeypatch.setattr(handlers, "render_message", shouting)
    letters = Letters()
    bodies = [letters.body(name, "Đề nghị", (), None, delivery) for name, delivery in RECIPIENTS]
    assert bodies == [shouting(name, "Đề nghị", (), None, delivery) for name, delivery in RECIPIENTS]
