"""Vote history over REST, and a subject's exports (CSV or JSON, streamed).

History is read by anyone, through HistoryService.history, with counts as the subject's
visibility allows the reader. The exports are for administrators:
a spreadsheet of a subject's results or of its history, written page by page as the store is
read, so that a long history costs a page of memory, not all of it.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Literal

import orjson
from typing_extensions import TypedDict

from handlers.base import ApiHandler, record_no
from handlers.headers import JSON, accepted_media
from handlers.openapi import Operation, query
from services.history import HistoryJson, HistoryOf, iso_minute

log = logging.getLogger("livevote.http")

CSV = "text/csv"
BOM = "\ufeff"
"""Written first, so that a spreadsheet reads the file as UTF-8 (Chinese names included)."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A cell a spreadsheet could run as a formula (CSV injection) when it begins so: such a text cell
gets a quote in front, and shows as written."""
SPAN_PARAMETERS = [
    query("from", {"type": "string", "format": "date-time"}),
    query("to", {"type": "string", "format": "date-time"}),
    query("step", {"type": "string", "enum": ["minute", "hour", "day"], "default": "minute"}),
]
HISTORY_ERRORS = {
    404: "No such record",
    422: "`from` or `to` is no ISO 8601 date and time, `step` is not known, `to` is not after `from`,"
         " or the span holds more than 1,440 buckets; `errors` names the field",
}
EXPORT_NOTES = {
    406: "Accept admits neither text/csv nor application/json",
    404: "No such subject",
}
RESULT_COLUMNS = ("no", "name", "good", "bad", "version")
HISTORY_COLUMNS = ("teacher", "name", "at", "good", "bad", "votes")


class ResultRowJson(TypedDict):
    """A teacher's counts now."""

    no: int
    name: str
    good: int
    bad: int
    version: int


class HistoryRowJson(TypedDict):
    """A teacher's counts at the end of a bucket (`at` is its start) with a change, and how many."""

    teacher: int
    name: str
    at: str
    good: int
    bad: int
    votes: int


class HistoryHandler(ApiHandler):
    def span_query(self) -> dict[str, str | None]:
        return {name: self.get_query_argument(name, None, strip=False) for name in ("from", "to", "step")}

    async def answer(self, of: HistoryOf) -> None:
        history = await self.services.history.history(of, self.span_query())
        shown = await self.services.visibility.shows(await self.reader(), history.subject)
        body: HistoryJson = history.to_json(shown)
        self.write_json(body)


class TeacherHistoryHandler(HistoryHandler):
    @Operation("getTeacherHistory", "history", "A teacher's counts over time", returns=HistoryJson,
               ok="One bucket per step from `from` to `to`: the counts at its end and the vote changes within it",
               parameters=SPAN_PARAMETERS, errors=(404, 422, 503), notes={**HISTORY_ERRORS, 404: "No such teacher"})
    async def get(self, no: str) -> None:
        await self.answer(HistoryOf("teacher", record_no(no, "teacher")))


class SubjectHistoryHandler(HistoryHandler):
    @Operation("getSubjectHistory", "history", "A subject's counts over time, its teachers' summed",
               returns=HistoryJson, parameters=SPAN_PARAMETERS, errors=(404, 422, 503),
               ok="One bucket per step from `from` to `to`: the counts at its end and the vote changes within it",
               notes={**HISTORY_ERRORS, 404: "No such subject"})
    async def get(self, no: str) -> None:
        await self.answer(HistoryOf("subject", record_no(no, "subject")))


def export_format(accept: str) -> Literal["csv", "json"] | None:
    """CSV for text/csv, text/* or anything (no Accept, */*), JSON when JSON is named and CSV is
    not; None when the header admits neither."""
    media = set(accepted_media(accept)) if accept.strip() else {"*/*"}
    if media & {CSV, "text/*"}:
        return "csv"
    if media & {JSON, "application/*"}:
        return "json"
    return "csv" if "*/*" in media else None


def csv_safe(cell: Any) -> Any:
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([csv_safe(cell) for cell in row] for row in rows)
    return out.getvalue()


class ExportHandler(ApiHandler):
    not_acceptable = "This export is available as text/csv or application/json."

    def accepts(self, accept: str) -> bool:
        return export_format(accept) is not None

    async def stream(self, filename: str, columns: Sequence[str], pages: AsyncIterator[list[Sequence[Any]]]) -> None:
        """Rows as they come, a page at a time: CSV (with a BOM and a header row) or a JSON array of
        objects. A store that fails halfway closes the connection, so that no client takes a cut
        file for a whole one."""
        as_csv = export_format(self.request.headers.get("Accept", "")) == "csv"
        if as_csv:
            self.set_header("Content-Type", f"{CSV}; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{filename}.csv"')
            self.write((BOM + csv_text([columns])).encode())
        else:
            self.set_header("Content-Type", JSON)
            self.write(b"[")
        if self.request.method == "HEAD":
            self.set_header("Transfer-Encoding", "chunked")  # as GET's answer, whose body is streamed
        first = True
        try:
            await self.flush()
            async for rows in pages:
                if as_csv:
                    self.write(csv_text(rows).encode())
                else:
                    objects = b",".join(orjson.dumps(dict(zip(columns, row, strict=True))) for row in rows)
                    self.write((b"" if first else b",") + objects)
                first = False
                await self.flush()
        except Exception as exc:
            log.warning("%s %s: the export stopped halfway (%r)", self.request.method, self.request.path, exc)
            self.request.connection.close()  # type: ignore[union-attr]
            return
        self.finish(b"" if as_csv else b"]")


class ResultsExportHandler(ExportHandler):
    @Operation("exportSubjectResults", "history", "Export a subject's results", secured=True,
               ok="Each teacher's counts now, as CSV (UTF-8 with a BOM, a header row) or, with Accept:"
                  " application/json, as a JSON array", media_type=CSV,
               also={JSON: list[ResultRowJson]}, headers={"Content-Disposition": "attachment; filename=..."},
               errors=(401, 403, 404, 503), notes=EXPORT_NOTES)
    async def get(self, no: str) -> None:
        await self.authenticate_admin()
        subject = record_no(no, "subject")
        teachers = await self.services.history.results(subject)

        async def rows() -> AsyncIterator[list[Sequence[Any]]]:
            async for page in teachers:
                yield [(t.no, t.name, t.good_count, t.bad_count, t.version) for t in page]

        await self.stream(f"subject-{subject}-results", RESULT_COLUMNS, rows())


class HistoryExportHandler(ExportHandler):
    @Operation("exportSubjectHistory", "history", "Export a subject's history", secured=True,
               ok="Each teacher's buckets with a change in the span, in teacher and time order, as CSV"
                  " (UTF-8 with a BOM, a header row) or, with Accept: application/json, as a JSON array",
               media_type=CSV, also={JSON: list[HistoryRowJson]},
               headers={"Content-Disposition": "attachment; filename=..."}, parameters=SPAN_PARAMETERS,
               errors=(401, 403, 404, 422, 503),
               notes={**EXPORT_NOTES, 422: "`from` or `to` is no ISO 8601 date and time, `step` is not known,"
                      " or `to` is not after `from`; `errors` names the field"})
    async def get(self, no: str) -> None:
        await self.authenticate_admin()
        subject = record_no(no, "subject")
        span = {name: self.get_query_argument(name, None, strip=False) for name in ("from", "to", "step")}
        names, buckets = await self.services.history.buckets(subject, span)

        async def rows() -> AsyncIterator[list[Sequence[Any]]]:
            async for page in buckets:
                yield [(b.teacher, names.get(b.teacher, ""), iso_minute(b.minute), b.good_count, b.bad_count, b.votes)
                       for b in page]

        await self.stream(f"subject-{subject}-history", HISTORY_COLUMNS, rows())
