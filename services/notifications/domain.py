"""The rules of telling people, as plain functions: which channel, when to retry, when to remind, when
to keep quiet."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import date, datetime, time, timedelta

# Messages that carry the plan itself (as DOCX, or as an edXML package through iOffice).
DOCUMENT_KINDS = frozenset({"plan_issued", "plan_amended"})
# Messages that wait for the end of quiet hours and may be digested into one a day per unit.
REMINDER_KINDS = frozenset({"reminder"})


def reachable(channel: str, email: str | None, has_ioffice: bool, configured: AbstractSet[str]) -> bool:
    """Whether a unit can be reached on a channel: iOffice needs the unit's iOffice and an exchange
    endpoint, email an address and a mail server; paper and the log reach everyone."""
    if channel == "ioffice":
        return has_ioffice and "ioffice" in configured
    if channel == "email":
        return bool(email) and "email" in configured
    return channel in ("paper", "log")


def choose_channel(
    order: Sequence[str],
    email: str | None,
    has_ioffice: bool,
    configured: AbstractSet[str],
    after: str | None = None,
) -> str | None:
    """The first channel in the fallback order that reaches the unit (after `after`, when that one failed)."""
    start = order.index(after) + 1 if after in order else 0
    return next((c for c in order[start:] if reachable(c, email, has_ioffice, configured)), None)


def backoff(attempts: int, base_seconds: float, cap_seconds: float) -> timedelta:
    """The wait before the next attempt after `attempts` failed ones: base × 2^(attempts-1), capped."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(attempts - 1, 0)))


def parse_quiet_hours(text: str) -> tuple[int, int] | None:
    """'21-7' → (21, 7); '' → None (never quiet)."""
    if not text.strip():
        return None
    start, _, end = text.partition("-")
    first, last = int(start), int(end)
    if not (0 <= first <= 23 and 0 <= last <= 23):
        raise ValueError(f"quiet hours {text!r}: hours from 0 to 23, as 21-7")
    return first, last


def quiet_until(now: datetime, quiet: tuple[int, int] | None) -> datetime | None:
    """When the quiet hours that `now` (local time) falls in end, or None if it is not in them."""
    if quiet is None or quiet[0] == quiet[1]:
        return None
    start, end = quiet
    hour = now.hour
    inside = start <= hour < end if start < end else hour >= start or hour < end
    if not inside:
        return None
    end_day = now.date() if hour < end else now.date() + timedelta(days=1)
    return datetime.combine(end_day, time(end), tzinfo=now.tzinfo)


def reminder_lead(due_on: date, today: date, leads: list[int], reminded_at: int | None) -> int | None:
    """The reminder due today for a report due on `due_on`: the nearest of the configured leads (days
    before the deadline) that has been reached, if the unit has not had that one or a nearer one yet.
    A reminder missed while the service was down is sent late rather than never."""
    if today >= due_on:
        return None
    reached = [lead for lead in leads if (due_on - today).days <= lead]
    if not reached:
        return None
    lead = min(reached)
    return lead if reminded_at is None or lead < reminded_at else None


def signature(secret: str, body: bytes) -> str:
    """The X-Thidua-Signature of a webhook body: sha256=<hex HMAC-SHA256 with the shared secret>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
