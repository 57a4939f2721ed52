"""One error type per kind of bad input."""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """Bad input from a person or a client: which field, which value, what was expected."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: {value!r} — {expected}")

    def as_dict(self) -> dict[str, Any]:
        value = self.value if isinstance(self.value, str | int | float | bool | None) else str(self.value)
        return {"field": self.field, "value": value, "message": self.expected}


class EventRejected(Exception):
    """An event that can never be processed (bad payload, unknown schema, a rule it breaks).

    The consumer sends it to the dead-letter topic with `reason` and moves on.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidInput(ValueError):
    """Several field errors found at once (a whole form checked in one go)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))
