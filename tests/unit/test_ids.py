"""The ids thidua makes: unique, and in the order they were made."""

from __future__ import annotations

import time
import uuid

from shared.ids import new_id


def test_ids_are_uuids_of_version_7_and_unique() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(made).version for made in ids} == {7}


def test_an_id_made_later_sorts_after_the_earlier_ones() -> None:
    earlier = [new_id() for _ in range(100)]
    time.sleep(0.002)  # the next millisecond at least
    later = new_id()
    assert max(earlier) < later
    made_at = int(later.replace("-", "")[:12], 16) / 1000
    assert abs(made_at - time.time()) < 60  # it begins with the moment it was made
