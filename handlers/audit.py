"""The audit log over REST: administrators read who changed what, newest first (services/audit.py)."""

from __future__ import annotations

from typing_extensions import TypedDict

from handlers.base import ApiHandler
from handlers.openapi import PAGING, PAGING_422, Operation, query
from services.audit import KINDS
from services.errors import FieldError, Invalid
from services.models import AuditEntry, AuditKind
from services.schemas import MAX_ID

DEFAULT_PAGE_SIZE = 20


class AuditPageJson(TypedDict):
    """One page of the audit log, newest first: a page as every list gives it (PageJson)."""

    count: int
    next: str | None
    previous: str | None
    results: list[AuditEntry]


class AuditHandler(ApiHandler):
    """Always one page: the log only grows, so there is no answer with all of it."""

    @Operation("listAudit", "audit", "The audit log: administrators' changes, newest first (administrators)",
               ok="One page of entries, newest first (page_size 20 unless given)", returns=AuditPageJson,
               secured=True, parameters=[
                   *PAGING,
                   query("kind", {"type": "string", "enum": list(KINDS)}),
                   query("no", {"type": "integer", "minimum": 1, "maximum": MAX_ID}),
               ],
               errors=(401, 403, 404, 422, 503),
               notes={404: "A page past the end", 422: f"{PAGING_422}, or ?kind or ?no is not valid"})
    async def get(self) -> None:
        await self.authenticate_admin()
        offset, limit = self.page_window()
        if limit is None:
            offset, limit = 0, DEFAULT_PAGE_SIZE
        page = await self.services.audit.entries(offset, limit, self._kind(), self._no())
        self.write_list(page, offset, limit)

    def _kind(self) -> AuditKind | None:
        raw = self.get_query_argument("kind", None, strip=False)
        if raw is None:
            return None
        if raw in KINDS:
            return raw
        raise Invalid("Query parameter kind is not valid.",
                      [FieldError("kind", "literal_error", f"must be one of {', '.join(KINDS)}")])

    def _no(self) -> int | None:
        return self.query_int("no", 0, high=MAX_ID) or None
