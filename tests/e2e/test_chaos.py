"""The fault harness, small: the services as separate processes on a local broker and PostgreSQL run a
campaign down four levels while each is killed with SIGKILL, the broker restarts empty, reporting's
database goes away, and records come again, shuffled or poisoned. Nothing may be lost, counted twice
or notified twice, and every poison record must be in a dead-letter topic with its reason."""

from __future__ import annotations

from services import chaos
from tests.conftest import TEST_DATABASE_URL


async def test_nothing_is_lost_or_counted_twice_under_faults() -> None:
    tally = await chaos.run_chaos(
        kills=7,
        broker_restarts=2,
        provinces=2,
        districts_each=2,
        grassroots_each=3,
        database=TEST_DATABASE_URL,
        pace=1.5,
        timeout=150,
        say=lambda _text: None,
    )
    counts = tally.counts()
    assert tally.mismatches == []
    assert (counts["lost"], counts["double_counted"]) == (0, 0)
    assert (counts["duplicate_notifications"], counts["missing_notifications"]) == (0, 0)
    # Every service was killed, the broker lost everything twice, the database was away.
    assert counts["kills"] == 7 and all(counts[f"kills_{service}"] >= 1 for service in chaos.SERVICES)
    assert counts["broker_restarts"] == 2
    assert counts["database_outages"] == 1
    assert counts["reports"] >= 10 and counts["versions_sent_straight_to_kafka"] == 40 * counts["reports"]
    assert counts["records_redelivered"] > 0
    # Each poison record is dead-lettered with its reason by every consumer that may not apply it.
    assert counts["poison_dead_lettered"] == counts["poison_sent"] == 4
    reasons = {
        marker: {reason for _consumer, reason in found} for marker, found in tally.dead_letters.items()
    }
    assert reasons == {
        "1": {"missing_attribute"},
        "2": {"unknown_type"},
        "3": {"unauthorized"},
        "4": {"rule_violation"},
    }
    assert {consumer for consumer, _ in tally.dead_letters["3"]} == set(chaos.REPORT_CONSUMERS)
