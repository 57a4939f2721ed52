"""Ids for events, plans, reports and the rest: time-ordered UUIDs (version 7, RFC 9562).

An id begins with the millisecond it was made, so the ids a service writes in a minute sit next to each
other in every index keyed by them (the inbox, the outbox, report versions): a write touches the last
pages of the index instead of a random page of all of it. A random (version 4) id is still accepted
wherever an id is read; only the ids thidua makes are ordered.
"""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """A new id, beginning with the millisecond it is made in."""
    return str(uuid_utils.uuid7())
