"""Domain errors. Services raise these; handlers/base.py alone turns them into HTTP.

A leaf module: it imports nothing of the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """`code` is for programs (pages translate it), `message` for a developer reading the reply.
    Codes are pydantic's error types (missing, string_too_long, ...) or FIELD_CODES."""

    field: str
    code: str
    message: str


FIELD_CODES = {
    "object_type": "the body is not a JSON object",
    "integer_type": "not a JSON integer",
    "date_type": "not an ISO date string",
    "canonical_integer": "a path or query number not in canonical ASCII digits, or out of range",
    "username_rule": "the username breaks the rule for names",
    "password_has_username": "the password contains the username",
    "password_too_weak": "the password is too easy to guess",
    "no_such_subject": "the subject named does not exist",
    "closes_before_opens": "a voting window must close after it opens",
    "state_with_schedule": "`state` sets the window now: it cannot come with opens_at or closes_at",
    "datetime_type": "not an ISO 8601 date and time with a time zone",
}
"""The codes livevote itself gives, besides pydantic's (docs/api.md lists both)."""


class DomainError(Exception):
    """Base class: `detail` is safe to show to a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class VotingClosed(Conflict):
    """A vote that would change something, on a subject whose voting window is closed."""

    code = "voting_closed"

    def __init__(self, subject: int) -> None:
        super().__init__(f"Voting on subject {subject} is closed.")


class Invalid(DomainError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Unauthorized(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Unavailable(DomainError):
    """A backing service (store, Redis) cannot be reached right now: try again after `retry_after` s."""

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimited(DomainError):
    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
