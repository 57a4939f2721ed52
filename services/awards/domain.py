"""Rules of the awards service, over plain data."""

from __future__ import annotations

from typing import Any

from shared.errors import FieldError
from shared.events import NomineeKind

NOUNS = {NomineeKind.collective: "collective (tập thể)", NomineeKind.individual: "individual (cá nhân)"}


def allowed(quota: dict[str, Any] | None, kind: NomineeKind, award: str | None = None) -> int | None:
    """How many of a kind the plan allows, in all or for one award (None: no limit)."""
    if quota is None:
        return None
    field = "collectives" if kind == NomineeKind.collective else "individuals"
    if award is None:
        return int(quota[field])
    per_award = quota.get("by_award", {}).get(award)
    return int(per_award[field]) if per_award else None


def check_quota(
    quota: dict[str, Any] | None,
    kind: NomineeKind,
    already: int,
    award: str | None = None,
    already_for_award: int = 0,
) -> None:
    """A unit puts forward at most what the plan allows (e.g. 01 tập thể and 01 cá nhân), in all and,
    where the plan says so, for each form of award."""
    limit = allowed(quota, kind)
    if limit is not None and already >= limit:
        raise FieldError(
            "nominee_kind",
            kind.value,
            f"within the plan's quota: at most {limit} {NOUNS[kind]} nomination(s), {already} already made",
        )
    limit = allowed(quota, kind, award) if award else None
    if limit is not None and already_for_award >= limit:
        raise FieldError(
            "award",
            award,
            f"within the plan's quota for this award: at most {limit} {NOUNS[kind]} nomination(s), "
            f"{already_for_award} already made",
        )
