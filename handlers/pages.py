"""The pages, rendered from static/templates, and the files under /static/, served with headers
that keep injected script from running.

Every page extends static/templates/layout.html (head, header, footer); tornado compiles each
template once and keeps it (no debug mode here). The templates are not files to serve: /static/
answers 404 for static/templates/, as for anything that is not there.

Cache-busting: a page links its stylesheets, images and entry script through static_url(), so
their addresses carry ?v=<hash of the file> and are cached for good. The ES modules an entry
imports by relative path have no ?v=: an import cannot carry one without an import map, which
the CSP (no inline script) rules out, and `import('/static/js/livevote.js')` must reach the very
module instances the page runs. So a file asked for without ?v= is served `Cache-Control:
no-cache` (the browser revalidates it on every load: its ETag makes that a 304), and so is every
page. A page is therefore always current, its entry is the file its ?v= names, and the modules
that entry imports are the current ones: old and new modules never mix.

An address nothing serves gets the 404 page when a browser asks for a page outside /api; under
/api, and for programs, the 404 stays problem+json.

/present/{no} is a subject's page for a projector: its live counts, its voting state, and a QR
code of its voting page's address, drawn here as SVG so that the page needs no script or
service from elsewhere to show it.

/embed/subject/{no} and /embed/teacher/{no} are made for an <iframe> on another site: the only
pages that other sites may frame, and only the sites listed in server.embed_origins."""

from __future__ import annotations

from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError, RedirectHandler, RequestHandler, StaticFileHandler

from handlers.base import (
    AllowOn405,
    ApiHandler,
    DomainErrorLog,
    HeadAsGet,
    Problem,
    domain_status,
    problem_json,
    record_no,
)
from handlers.headers import PROBLEM_JSON, accepts_html
from handlers.openapi import Operation, query
from services.container import Services
from services.errors import DomainError, FieldError, Invalid, NotFound, RateLimited, Unavailable

NO_SITE = "'none'"


def content_security_policy(frame_ancestors: tuple[str, ...] = ()) -> str:
    """The pages' policy; `frame_ancestors` are the sites that may show the page in a frame
    (none: no site, not even this one)."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {' '.join(frame_ancestors) or NO_SITE}",
    ])


CONTENT_SECURITY_POLICY = content_security_policy()
"""Every page's policy but the embed pages': no site may frame it."""
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
REVALIDATE = "no-cache"
"""Cache-Control of a page and of a file asked for without ?v=: stored, but checked before each use."""
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TEMPLATES_DIR = STATIC_DIR / "templates"
PAGES = frozenset({"index", "teachers", "login", "dashboard", "admin", "docs"})
"""The templates a browser may ask for by name (/login.html); layout.html and 404.html are not pages."""


def set_page_headers(handler: RequestHandler) -> None:
    for name, value in PAGE_HEADERS.items():
        handler.set_header(name, value)


def wants_page(request: HTTPServerRequest) -> bool:
    """A browser asking for a page, at an address outside /api."""
    path = request.path
    if path == "/api" or path.startswith("/api/"):
        return False
    return accepts_html(request.headers.get("Accept", ""))


def render_page(handler: RequestHandler, page: str) -> bytes:
    """static/templates/<page>.html; `page` also marks the header's link to it."""
    return handler.render_string(f"{page}.html", page=page)


def send_not_found_page(handler: RequestHandler) -> None:
    """Finish `handler` with the 404 page, under the pages' headers."""
    set_page_headers(handler)
    handler.set_status(404)
    handler.set_header("Content-Type", "text/html; charset=UTF-8")
    handler.finish(render_page(handler, "404"))


class PageErrors(AllowOn405):
    """A page or file that is not there: the 404 page, for a browser asking for a page."""

    def set_default_headers(self) -> None:
        set_page_headers(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 404 and wants_page(self.request):
            send_not_found_page(self)
            return
        super().write_error(status_code, **kwargs)


class PageHandler(HeadAsGet, PageErrors):
    """A page, rendered from its template; the route names it (`page`) or the address does (/login.html)."""

    def initialize(self, page: str | None = None) -> None:
        self.page = page

    def get(self, address: str) -> None:
        page = self.page or address.removesuffix(".html") or "index"
        if page not in PAGES:
            raise HTTPError(404)
        self.set_header("Cache-Control", REVALIDATE)
        self.finish(render_page(self, page))


class StaticAssetHandler(PageErrors, StaticFileHandler):
    """The files under /static/ (stylesheets, scripts, images), not the templates."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if Path(absolute_path).is_relative_to(TEMPLATES_DIR):
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def set_extra_headers(self, path: str) -> None:
        if "v" not in self.request.arguments:
            self.set_header("Cache-Control", REVALIDATE)


class IconHandler(HeadAsGet, PageErrors, RedirectHandler):
    """Browsers and feed readers ask for /favicon.ico unprompted: the pages' own icon, not a 404."""


class ApiDocsHandler(PageHandler):
    """/api/docs: the page over /api/openapi.json, which describes this page too."""

    @Operation("getApiDocs", "operations", "Browsable API documentation", ok="An HTML page over this document",
               media_type="text/html")
    def get(self, address: str) -> None:
        """Rendering is PageHandler's; this only declares the operation."""
        super().get(address)


class NotFoundHandler(ApiHandler):
    """Every path no route claims: a problem+json 404; a browser asking for a page outside /api
    gets the 404 page instead, under the pages' headers."""

    def prepare(self) -> None:
        if wants_page(self.request):
            send_not_found_page(self)
            return
        raise NotFound(f"There is nothing at {self.request.path}.")


def voting_page_url(request: HTTPServerRequest, no: int) -> str:
    """The absolute address of subject `no`'s voting page, as the client reached this server:
    its Host, and its scheme (behind a proxy, server.xheaders makes that the client's)."""
    return f"{request.protocol}://{request.host}/teachers.html?sno={no}"


@lru_cache(maxsize=256)
def qr_svg(text: str) -> str:
    """`text` as a QR code in SVG: dark modules on white with the standard quiet zone (scanners
    read that best), one path of horizontal runs, crisp at any size. Medium error correction
    survives a projector's glare. The markup holds no text but the escaped `text` in its title."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    size = len(matrix)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="qr" viewBox="0 0 {size} {size}" role="img"'
        f' aria-labelledby="qr-title" shape-rendering="crispEdges" data-modules="{size}">'
        f'<title id="qr-title">{escape(text)}</title>'
        f'<rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d="{"".join(runs)}"/></svg>'
    )


class RecordPage(HeadAsGet, DomainErrorLog, PageErrors):
    """A page about one subject or teacher, named by its number. Unknown record: the 404 page for
    a browser, problem+json for a program; bad input, 422; a store that is down, 503, never a
    traceback."""

    def initialize(self, services: Services) -> None:
        self.services = services

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, Problem):  # a request no page can answer (a query parameter given twice)
            self.set_header("Content-Type", PROBLEM_JSON)
            self.finish(problem_json(status_code, exc.detail))
            return
        if not isinstance(exc, DomainError):
            super().write_error(status_code, **kwargs)
            return
        status = domain_status(exc)
        if status == 404 and wants_page(self.request):
            send_not_found_page(self)
            return
        if isinstance(exc, (RateLimited, Unavailable)):
            self.set_header("Retry-After", str(max(int(exc.retry_after), 1)))
        self.set_status(status)
        self.set_header("Content-Type", PROBLEM_JSON)
        self.finish(problem_json(status, exc.detail, getattr(exc, "errors", None)))


class PresentationHandler(RecordPage):
    """/present/{no}: a subject on a projector."""

    @Operation("getPresentation", "live", "A subject's page for a projector", media_type="text/html",
               ok="An HTML page: the subject's live counts, its voting state and countdown, and a QR code"
                  " of its voting page's address", errors=(404, 503),
               notes={404: "No such subject (a browser asking for a page gets the 404 page)"})
    async def get(self, no: str) -> None:
        subject = await self.services.catalog.get_subject(record_no(no, "subject"))
        url = voting_page_url(self.request, subject.no)
        self.set_header("Cache-Control", REVALIDATE)
        self.finish(self.render_string("present.html", page="present", subject=subject.to_json(), voting_url=url,
                                       qr_svg=qr_svg(url)))


THEMES = ("light", "dark")
"""The embed pages' ?theme=; without it they follow the visitor's system (prefers-color-scheme)."""
EMBED_QUERY = [query("theme", {"type": "string", "enum": list(THEMES)})]
EMBED_ERRORS = {400: "?theme is given more than once",
                404: "No such record (a browser asking for a page gets the 404 page)",
                422: "?theme is neither light nor dark"}


class EmbedPage(RecordPage):
    """/embed/...: a small read-only live page for another site to show in an <iframe>. Only the
    sites in server.embed_origins may frame it (its CSP frame-ancestors; none by default); every
    other page keeps refusing all frames."""

    def initialize(self, services: Services) -> None:
        """Here, not in set_default_headers, which tornado calls before this: an error then clears
        the headers back to the defaults, the other pages' policy, which refuses every frame."""
        super().initialize(services)
        self.set_header("Content-Security-Policy", content_security_policy(services.config.server.embed_origins))

    def theme(self) -> str:
        """?theme=light|dark, or "" to follow the visitor's system."""
        given = self.get_query_arguments("theme", strip=False)
        if not given:
            return ""
        if len(given) > 1:  # as every route answers a repeated query parameter
            raise Problem(400, "Query parameter theme is given more than once; give it once.")
        if given[0] not in THEMES:
            raise Invalid("Query parameter theme is not valid.",
                          [FieldError("theme", "literal_error", "must be light or dark")])
        return given[0]

    def render_embed(self, **record: Any) -> None:
        self.set_header("Cache-Control", REVALIDATE)
        self.finish(self.render_string("embed.html", page="embed", theme=self.theme(), **record))


class EmbedSubjectHandler(EmbedPage):
    """/embed/subject/{no}: a subject's teachers with their live good and bad counts."""

    @Operation("getSubjectEmbed", "live", "A subject's live counts, to embed in another site",
               media_type="text/html", parameters=EMBED_QUERY, errors=(400, 404, 422, 503), notes=EMBED_ERRORS,
               ok="An HTML page for an <iframe>: the subject's name, voting state and each teacher's live"
                  " counts, as any visitor may see them; framed only by server.embed_origins")
    async def get(self, no: str) -> None:
        subject = await self.services.catalog.get_subject(record_no(no, "subject"))
        self.render_embed(subject=subject.to_json(), teacher=None)


class EmbedTeacherHandler(EmbedPage):
    """/embed/teacher/{no}: one teacher's live good and bad counts, with its subject's voting state."""

    @Operation("getTeacherEmbed", "live", "A teacher's live counts, to embed in another site",
               media_type="text/html", parameters=EMBED_QUERY, errors=(400, 404, 422, 503), notes=EMBED_ERRORS,
               ok="An HTML page for an <iframe>: the teacher's name and live counts, as any visitor may see"
                  " them, and its subject's voting state; framed only by server.embed_origins")
    async def get(self, no: str) -> None:
        teacher = await self.services.catalog.get_teacher(record_no(no, "teacher"))
        subject = await self.services.catalog.get_subject(teacher.subject)
        self.render_embed(subject=subject.to_json(), teacher={"no": teacher.no, "name": teacher.name})
