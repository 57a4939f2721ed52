"""Time, injectable so that tests and the demo need not wait for a phase to end."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Plans speak of calendar days in Vietnam: a phase ending 31/12 closes at midnight, Hà Nội time.
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_midnight(day: date) -> datetime:
    """The moment a day begins in Vietnam."""
    return datetime.combine(day, time.min, tzinfo=LOCAL_TZ)


class Clock:
    """The wall clock. Every service asks its clock, never `datetime.now()` directly."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        """Today's date in Vietnam."""
        return self.now().astimezone(LOCAL_TZ).date()


class ManualClock(Clock):
    """A clock that stands still until told to move: for tests, the demo and benchmarks."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime (with a time zone)")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta
