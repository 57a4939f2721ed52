"""The ids thidua makes: unique, and in the order they were made."""

from __future__ import annotations

import time
import uuid

from shared.ids import new_id


def millisecond_of(made: str) -> int:
    """The millisecond a version 7 id begins with."""
    return int(made.replace("-", "")[:12], 16)


def test_ids_are_uuids_of_version_7_and_unique() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(made).version for made in ids} == {7}


def test_ids_begin_with_the_millisecond_they_were_made_in() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(1_000)]
    after = time.time_ns() // 1_000_000
    moments = [millisecond_of(made) for made in ids]
    assert moments == sorted(moments)  # an id made later never begins with an earlier moment
    assert before <= moments[0] and moments[-1] <= after
