"""The national benchmark, small: a generated federation of 2,000 grassroots unions cascades a plan and
reports a phase, the services running as separate processes on the real broker and database. The run
itself fails unless the national figures come to equal what was sent; here the figures it returns are
checked against the mix of reports it was asked for. Nothing about speed is asserted."""

from __future__ import annotations

import pytest

from services import bench
from tests.conftest import TEST_DATABASE_URL

GRASSROOTS = 2000


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_small_national_wave_adds_up_exactly(backend: str, kafka_bootstrap: str) -> None:
    result = await bench.run_national(
        grassroots=GRASSROOTS,
        database="sqlite" if backend == "sqlite" else TEST_DATABASE_URL,
        latency_seconds=0.5,
        timeout=240,
        show_progress=False,
        bootstrap_servers=kafka_bootstrap,
    )
    row = result.national_row
    assert result.grassroots_units == GRASSROOTS
    assert result.database == backend
    assert row["expected"] == GRASSROOTS
    # ~3 % never report, ~5 % report late; duplicates and corrections do not change the count.
    assert 0.94 * GRASSROOTS < row["received"] < 0.995 * GRASSROOTS
    assert row["received"] == row["on_time"] + row["late"]
    assert 0.02 * GRASSROOTS < row["late"] < 0.09 * GRASSROOTS
    # Every received report's figures are in the sum, each unit's latest version only.
    assert row["figures"]["plan_deployed"] <= row["received"]
    assert row["figures"]["initiative_staff.numerator"] < row["figures"]["initiative_staff.denominator"]
    # The records sent: one per reporting unit, plus the duplicates and the corrections.
    assert row["received"] < result.reports < 1.06 * row["received"]
    assert result.latency_reports == 1000
    # The broker alone carried the same records, every one of them back to its consumer.
    assert result.raw_broker_messages == result.reports
    assert result.peak_rss_mb > 0
    assert set(result.peak_rss_mb_by_service) == {"plans", "reporting", "notifications", "awards"}
    # The work each process did in the cascade and in the wave is reported (how much is the benchmark's
    # business, not the test's).
    for used in (result.cascade_cpu_seconds, result.wave_cpu_seconds):
        assert set(used) == {"bench", "plans", "reporting", "notifications", "awards"}
