"""Domain errors. Services raise these; handlers/base.py alone turns them into HTTP.

A leaf module: it imports nothing of the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """Base class: `detail` is safe to show to a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class Invalid(DomainError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Unauthorized(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Unavailable(DomainError):
    """A backing service (store, Redis) cannot be reached right now."""


class RateLimited(DomainError):
    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
