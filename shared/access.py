"""Who calls an API and what they may do.

Every API call carries a bearer token this deployment signed. An officer's token stands for one unit:
the officer acts only for that unit (submits, acknowledges, issues, reviews, votes, decides as it), and
reads only that unit's subtree, plus the plans sent to it. Whether the unit may do the act at all (issue
only to the units directly below, review only what was sent to it …) is the service's own rule, checked
next. A service's token (the pages, the command line on a machine holding the deployment's key, another
system) acts for the whole federation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from shared.errors import FieldError
from shared.security import InvalidToken, issue_token, read_token, secret_key
from shared.settings import Settings

# The deepest a federation goes is four levels; a longer chain of parents is a loop in the data.
MAX_DEPTH = 16
SERVICE_TOKEN_HOURS = 24 * 365


class Forbidden(FieldError):
    """The caller may not do this to this unit or plan: refused with 403, naming the field and value."""


@dataclass(frozen=True)
class Caller:
    name: str
    # The officer's unit; None for a service, which acts for the whole federation.
    unit_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.unit_id is None


def service_token(settings: Settings, name: str) -> str:
    """A token for a service or an operator, signed with the deployment's key."""
    claims = {"sub": name, "role": "service"}
    return issue_token(secret_key(settings), claims, SERVICE_TOKEN_HOURS * 3600)


def service_headers(settings: Settings, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service_token(settings, name)}"}


bearer = HTTPBearer(
    auto_error=False,
    description="A token from POST /plans/auth/token (an officer) or a service token signed with "
    "THIDUA_SECRET_KEY (`thidua token`).",
)


def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """The caller a request's bearer token stands for; 401 without a valid one."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "a bearer token is needed (POST /plans/auth/token)", headers=challenge)
    try:
        claims = read_token(secret_key(request.app.state.settings), credentials.credentials)
    except (InvalidToken, ValueError) as error:
        raise HTTPException(401, str(error) or "a damaged token", headers=challenge) from error
    if claims.get("role") == "service":
        return Caller(str(claims["sub"]))
    if claims.get("unit"):
        return Caller(str(claims["sub"]), str(claims["unit"]))
    raise HTTPException(401, "the token names neither a unit nor a service", headers=challenge)


CallerDep = Annotated[Caller, Depends(current_caller)]


def act_for(caller: Caller, field: str, unit_id: str) -> None:
    """An officer acts only for their own unit."""
    if not caller.is_service and unit_id != caller.unit_id:
        raise Forbidden(field, unit_id, f"{caller.unit_id}, the unit you act for")


def only_services(caller: Caller, what: str) -> None:
    if not caller.is_service:
        raise Forbidden("authorization", caller.name, f"a service's token: {what} is not an officer's task")


class Tree:
    """One service's view of the federation's tree, to check a caller's reach against."""

    def __init__(self, parent_of: Callable[[Session, str], str | None]) -> None:
        self.parent_of = parent_of

    def reach(self, session: Session, caller: Caller) -> Callable[[str], bool]:
        """Whether a unit is in the caller's subtree, for many units: each chain of parents is walked
        once."""
        if caller.unit_id is None:
            return lambda _unit_id: True
        known: dict[str, bool] = {caller.unit_id: True}

        def reaches(unit_id: str) -> bool:
            walked: list[str] = []
            unit: str | None = unit_id
            while unit is not None and unit not in known and len(walked) < MAX_DEPTH:
                walked.append(unit)
                unit = self.parent_of(session, unit)
            answer = known.get(unit, False) if unit is not None else False
            known.update(dict.fromkeys(walked, answer))
            return answer

        return reaches

    def reaches(self, session: Session, caller: Caller, unit_id: str) -> bool:
        return self.reach(session, caller)(unit_id)

    def read(self, session: Session, caller: Caller, field: str, unit_id: str) -> None:
        """An officer reads only their unit's subtree."""
        if not self.reaches(session, caller, unit_id):
            raise Forbidden(
                field, unit_id, f"a unit in the subtree of {caller.unit_id}, the unit you act for"
            )

    def read_filters(self, session: Session, caller: Caller, **filters: str | None) -> None:
        """The units a listing is asked for are in the caller's subtree."""
        for field, value in filters.items():
            if value:
                self.read(session, caller, field, value)

    def below(self, session: Session, caller: Caller, field: str, unit_id: str) -> None:
        """A unit strictly below the officer's own (to administer it)."""
        if caller.is_service:
            return
        if unit_id == caller.unit_id or not self.reaches(session, caller, unit_id):
            raise Forbidden(field, unit_id, f"a unit below {caller.unit_id}, the unit you act for")

    def read_plan(
        self, session: Session, caller: Caller, plan_id: str, issuer: str, targets: Collection[str]
    ) -> None:
        """A plan concerns an officer when their subtree issued it or it was sent to their unit."""
        if caller.unit_id in targets or self.reaches(session, caller, issuer):
            return
        raise Forbidden(
            "plan_id", plan_id, f"a plan issued in or sent to {caller.unit_id}, the unit you act for"
        )

    def read_issued(self, session: Session, caller: Caller, plan_id: str, issuer: str) -> None:
        """What a plan's recipients sent back is for its issuer and the levels above to read."""
        if not self.reaches(session, caller, issuer):
            raise Forbidden("plan_id", plan_id, f"a plan issued in the subtree of {caller.unit_id}")


def issuer_only(caller: Caller, plan_id: str, issuer: str) -> None:
    """Only the unit that issued a plan amends, reschedules, revokes, closes or consolidates on it."""
    if not caller.is_service and caller.unit_id != issuer:
        raise Forbidden("plan_id", plan_id, f"a plan issued by {caller.unit_id}, the unit you act for")
