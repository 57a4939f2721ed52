"""One error for a document thidua will not read: which part, and why, in words an officer can act on."""

from __future__ import annotations


class DocumentError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)
