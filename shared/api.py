"""HTTP pieces every service's API shares."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.access import Forbidden
from shared.errors import FieldError, InvalidInput
from shared.events import MAX_PHASES

# A phase number in a URL (…/phases/{phase_seq}/…).
PhaseSeq = Annotated[int, Path(ge=1, le=MAX_PHASES)]


def problem(status: int, errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": errors})


# Pydantic's error types, in words an officer understands.
PLAIN_WORDS = {
    "date_from_datetime_parsing": "a date that exists, written YYYY-MM-DD",
    "date_parsing": "a date that exists, written YYYY-MM-DD",
    "date_type": "a date, written YYYY-MM-DD",
    "datetime_parsing": "a date and time, written YYYY-MM-DDTHH:MM:SS",
    "missing": "a value: this field is required",
    "extra_forbidden": "no such field here",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "bool_parsing": "true or false",
    "string_too_short": "some text",
    "greater_than_equal": "a larger number",
    "literal_error": "one of the listed values",
    "enum": "one of the listed values",
}


def plain_error(item: dict[str, Any]) -> dict[str, Any]:
    """One validation error as {field, value, message}; the field is the path in the request body."""
    location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
    # A missing field has no value (pydantic gives the object that lacks it).
    value = None if item.get("type") == "missing" else item.get("input")
    if not isinstance(value, str | int | float | bool | None):
        value = str(value)[:200]
    expected = PLAIN_WORDS.get(item.get("type", ""), item.get("msg", "a valid value"))
    if item.get("type") in ("literal_error", "enum") and "expected" in item.get("ctx", {}):
        expected = f"one of {item['ctx']['expected']}"
    return {"field": ".".join(location) or "body", "value": value, "message": expected}


def install_error_handlers(app: FastAPI) -> None:
    """A FieldError from any service becomes a 422 naming the field, the value and what was expected;
    so does a request that does not even parse (a date like 2023-02-30, a missing field). A caller who may
    not do what they asked gets a 403 in the same form."""

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        return problem(422, [plain_error(dict(item)) for item in error.errors()])

    @app.exception_handler(Forbidden)
    async def forbidden(_request: Request, error: Forbidden) -> JSONResponse:
        return problem(403, [error.as_dict()])

    @app.exception_handler(FieldError)
    async def field_error(_request: Request, error: FieldError) -> JSONResponse:
        return problem(422, [error.as_dict()])

    @app.exception_handler(InvalidInput)
    async def invalid_input(_request: Request, error: InvalidInput) -> JSONResponse:
        return problem(422, [item.as_dict() for item in error.errors])
