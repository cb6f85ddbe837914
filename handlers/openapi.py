"""The OpenAPI 3.1 document of /api, built from the same pydantic models that
validate requests, so the published schema cannot drift from what is enforced.

tests/api/test_openapi.py checks that every route of the app is described here and
that nothing here is missing from the app, that openapi-spec-validator accepts the
served document, that every operation has one of TAGS and a unique operationId, and
that no pydantic-only keyword (ge, le, ...) reaches it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from handlers.base import MAX_PAGE, MAX_PAGE_SIZE
from services import models, schemas

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "code", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "code": {"type": "string", "description": "For programs: translate this, not the message"},
                    "message": {"type": "string", "description": "For a developer, in English"},
                },
            },
        },
    },
}

TAGS = [
    {"name": "catalog", "description": "Subjects and their teachers: read by anyone, written by administrators."},
    {"name": "accounts", "description": "Registration, login, token refresh and logout."},
    {"name": "votes", "description": "Your good or bad vote on a teacher."},
    {"name": "live", "description": "Live counts: the WebSocket channel and the dashboard's totals."},
    {"name": "operations", "description": "Health, readiness, metrics and this description."},
]

ERROR_TEXT = {
    400: "The body is not valid JSON, or repeats a key within an object",
    401: "Missing or invalid bearer access token, or its session has ended",
    403: "The bearer token is a plain user's; this needs an administrator",
    404: "No such resource",
    406: "Accept excludes JSON",
    409: "Conflicts with the current state",
    413: "The body is larger than server.max_body_size",
    415: "The body is not application/json",
    422: "Validation failed; `errors` names the fields",
    429: "Too many attempts; see Retry-After",
    503: "A backing service (store, sessions or broker) is unavailable",
}

BODY = (400, 413, 415, 422)
ADMIN_WRITE = (401, 403, *BODY, 503)
"""Catalog writes: authentication comes first, then the body."""
REFRESH_COOKIE_403 = (
    "The livevote_refresh cookie was used without an allowed Origin (this host or server.allowed_origins)"
)
NO_SUBJECT_422 = "Validation failed, or `subject` names no subject; `errors` names the fields"
PAGING_422 = "?page or ?page_size is not a whole number in range"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {"content": {media_type: {"schema": schema}}}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _operation(
    operation_id: str,
    tag: str,
    summary: str,
    ok: tuple[int, str, dict[str, Any] | None],
    errors: tuple[int, ...],
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = False,
    body_required: bool = True,
    notes: dict[int, str] | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation; `notes` says what an error status means here when the generic text is not exact.
    Every error is problem+json, and 406 (Accept excludes JSON) applies to all of them."""
    status, description, schema = ok
    success: dict[str, Any] = {"description": description, **(_json(schema) if schema else {})}
    if headers:
        success["headers"] = headers
    responses: dict[str, Any] = {str(status): success}
    for code in sorted({*errors, 406}):
        responses[str(code)] = {
            "description": (notes or {}).get(code, ERROR_TEXT[code]),
            **_json(_ref("Problem"), "application/problem+json"),
        }
    operation: dict[str, Any] = {
        "operationId": operation_id, "tags": [tag], "summary": summary, "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": body_required, **_json(_ref(body))}
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


PAGING = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
]


def _list_of(name: str) -> dict[str, Any]:
    """A plain array, or a page of one when ?page / ?page_size is given."""
    return {"oneOf": [{"type": "array", "items": _ref(name)}, _ref(f"{name}Page")]}


def _page_schema(name: str) -> dict[str, Any]:
    nullable_url = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer"},
            "next": nullable_url,
            "previous": nullable_url,
            "results": {"type": "array", "items": _ref(name)},
        },
    }


def _record_operations(name: str, found: str, write_notes: dict[int, str], conflict: str | None = None) -> dict[str, Any]:
    """GET, PUT, PATCH and DELETE of one catalog record, subjects and teachers alike;
    `conflict` is why a DELETE may get 409, if it can."""
    by_no, record, noun = [_path_id("no")], _ref(name), name.lower()
    not_found = {404: f"No such {noun}"}
    stored = (200, f"The {noun} as stored", record)
    delete_errors: tuple[int, ...] = (401, 403, 404, 503)
    delete_notes = not_found
    if conflict:
        delete_errors, delete_notes = (*delete_errors, 409), {**not_found, 409: conflict}
    return {
        "get": _operation(f"get{name}", "catalog", f"Get a {noun}", (200, found, record),
                          (404, 503), parameters=by_no, notes=not_found),
        "put": _operation(f"replace{name}", "catalog", f"Replace a {noun}", stored,
                          (*ADMIN_WRITE, 404), f"{name}Replace", by_no, True, notes={**not_found, **write_notes}),
        "patch": _operation(f"update{name}", "catalog", f"Change some fields of a {noun}", stored,
                            (*ADMIN_WRITE, 404), f"{name}Patch", by_no, True, notes={**not_found, **write_notes}),
        "delete": _operation(f"delete{name}", "catalog", f"Delete a {noun}", (204, "Deleted", None),
                             delete_errors, parameters=by_no, secured=True, notes=delete_notes),
    }


def _catalog_paths() -> dict[str, Any]:
    by_no = [_path_id("no")]
    location = {"Location": _header("The new record's URL")}
    return {
        "/api/subjects/": {
            "get": _operation(
                "listSubjects", "catalog", "List subjects", (200, "Every subject, or one page of them", _list_of("Subject")),
                (404, 422, 503), parameters=PAGING, notes={404: "A page past the end", 422: PAGING_422},
            ),
            "post": _operation(
                "createSubject", "catalog", "Create a subject", (201, "Created", _ref("Subject")), ADMIN_WRITE,
                "SubjectCreate", secured=True, headers=location,
            ),
        },
        "/api/subjects/{no}/": _record_operations("Subject", "The subject", {}, "The subject still has teachers"),
        "/api/subjects/{no}/teachers/": {
            "get": _operation(
                "listSubjectTeachers", "catalog", "Teachers of a subject",
                (200, "The subject's teachers, or one page of them", _list_of("Teacher")), (404, 422, 503),
                parameters=by_no + PAGING, notes={404: "No such subject, or a page past the end", 422: PAGING_422},
            ),
        },
        "/api/teachers/": {
            "get": _operation(
                "getSubjectWithTeachers", "catalog", "Teachers of a subject, with the subject",
                (200, "The subject and all its teachers", _ref("SubjectTeachers")), (404, 503),
                parameters=[_query("sno", {"type": "integer", "minimum": 1}, required=True)],
                notes={404: "No such subject, or ?sno is missing or not a number"},
            ),
            "post": _operation(
                "createTeacher", "catalog", "Create a teacher", (201, "Created", _ref("Teacher")), ADMIN_WRITE,
                "TeacherCreate", secured=True, notes={422: NO_SUBJECT_422}, headers=location,
            ),
        },
        "/api/teachers/{no}/": _record_operations("Teacher", "The teacher, with its counts", {422: NO_SUBJECT_422}),
    }


def _vote_paths() -> dict[str, Any]:
    by_no = [_path_id("no")]
    teacher_404 = {404: "No such teacher"}
    return {
        "/api/teachers/{no}/vote": {
            "get": _operation("getVote", "votes", "Your vote on a teacher",
                              (200, "Your vote (value null if none) and the teacher's counts", _ref("VoteResult")),
                              (401, 404, 503), parameters=by_no, secured=True, notes=teacher_404),
            "put": _operation("castVote", "votes", "Vote good or bad (again: no change; the other value: a switch)",
                              (200, "Your vote and the teacher's counts after it", _ref("VoteResult")),
                              (401, 404, *BODY, 503), "VoteRequest", by_no, True, notes=teacher_404),
            "delete": _operation("withdrawVote", "votes", "Withdraw your vote",
                                 (200, "No vote (value null) and the teacher's counts after it", _ref("VoteResult")),
                                 (401, 404, 503), parameters=by_no, secured=True, notes=teacher_404),
        },
    }


def _account_paths() -> dict[str, Any]:
    cookie = "livevote_refresh=<refresh token>; HttpOnly; SameSite=Strict; Path=/api/auth (and Secure over https)"
    no_refresh = "No refresh token: neither refresh_token in the body nor the livevote_refresh cookie"
    return {
        "/api/auth/register": {
            "post": _operation(
                "register", "accounts", "Create an account", (201, "The new account (log in next)", _ref("User")),
                (*BODY, 409, 429, 503), "Registration",
                notes={
                    409: "The username is taken (compared after NFKC and case folding)",
                    422: "Validation failed (username rule; password too short, easy to guess or containing"
                         " the username); `errors` names the fields",
                    429: "Too many registrations from this address; see Retry-After",
                },
            ),
        },
        "/api/auth/login": {
            "post": _operation(
                "login", "accounts", "Log in: a new session",
                (200, "An access token and a refresh token, the refresh token also as an HttpOnly cookie",
                 _ref("TokenPair")),
                (*BODY, 401, 429, 503), "Login", headers={"Set-Cookie": _header(cookie)},
                notes={
                    401: "Unknown username or wrong password",
                    429: "Too many failed logins for this account or from this address; see Retry-After",
                },
            ),
        },
        "/api/auth/refresh": {
            "post": _operation(
                "refreshTokens", "accounts", "Rotate the refresh token (body or cookie)",
                (200, "A new access token and a new refresh token, also as the cookie; a replay of a just-rotated"
                      " refresh token within auth.reuse_grace gets a new access token only (refresh_token null)",
                 _ref("TokenPair")),
                (*BODY, 401, 403, 503), "RefreshRequest", body_required=False,
                headers={"Set-Cookie": _header(cookie + "; not set on a grace replay")},
                notes={
                    401: f"{no_refresh}; or the refresh token is invalid, expired or revoked, or was already"
                         " used (a reuse past auth.reuse_grace also ends its session)",
                    403: REFRESH_COOKIE_403,
                },
            ),
        },
        "/api/auth/logout": {
            "post": _operation(
                "logout", "accounts", "End the session of a refresh token (body or cookie)",
                (204, "The session is ended (an unknown or expired refresh token is ignored) and the cookie"
                      " cleared", None),
                (*BODY, 401, 403, 503), "RefreshRequest", body_required=False,
                headers={"Set-Cookie": _header("Clears livevote_refresh")},
                notes={401: no_refresh, 403: REFRESH_COOKIE_403},
            ),
        },
        "/api/auth/viewer": {
            "post": _operation(
                "createViewerToken", "live", "A viewer token: watch the live channel without an account",
                (200, "A short-lived access token with role viewer, no user and no session: the live channel"
                      " takes it to subscribe (subjects, teachers, the dashboard) and renews it over the"
                      " socket; every other route and op refuses it", _ref("ViewerToken")),
                (429, 503), notes={429: "Too many viewer tokens for this address; see Retry-After"},
            ),
        },
        "/api/auth/session": {
            "get": _operation(
                "sessionCookie", "accounts", "Whether this browser holds the session cookie",
                (200, "`cookie` is true when the request carries the livevote_refresh cookie (presence only:"
                      " POST /api/auth/refresh tells whether its session still works); always 200, so that a"
                      " page can ask without a failing request", _ref("SessionCookie")),
                (503,),
            ),
        },
        "/api/auth/logout-all": {
            "post": _operation("logoutAll", "accounts", "End all your sessions, on every device",
                               (204, "Every session of yours is ended and the cookie cleared", None),
                               (401, 503), secured=True),
        },
        "/api/auth/me": {
            "get": _operation("getMe", "accounts", "Who you are",
                              (200, "Your account and the id of this token's session", _ref("Me")),
                              (401, 503), secured=True),
        },
    }


def _live_paths() -> dict[str, Any]:
    problem = _json(_ref("Problem"), "application/problem+json")
    return {
        "/api/stats": {"get": _operation(
            "getStats", "live", "Votes per subject and open sockets, cluster-wide",
            (200, "The totals the dashboard starts from", _ref("Stats")), (503,),
        )},
        "/ws": {"get": {
            "operationId": "openLiveChannel",
            "tags": ["live"],
            "summary": "The live channel: WebSocket protocol v1",
            "description": (
                "A WebSocket upgrade (`Upgrade: websocket`) that offers the subprotocol `livevote.v1`. The access"
                " token comes as `Authorization: Bearer <jwt>`, or from a browser as a second subprotocol"
                " `bearer.<jwt>` (never echoed); it is checked before the upgrade. An `Origin`, when sent, must"
                " be this host or one of server.allowed_origins. Then every frame is one JSON object: client ops"
                " (subscribe, unsubscribe, vote, refresh, auth, ping) and server messages (welcome, snapshot,"
                " votes, token, revoked, error). The whole protocol, with channels, error and close codes and"
                " how to reconnect, is written out in docs/protocol.md in the repository."
            ),
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "Upgrade", "in": "header", "required": True, "description": "`websocket`, in any case",
                 "schema": {"type": "string", "examples": ["websocket"]}},
                {"name": "Sec-WebSocket-Protocol", "in": "header", "required": False,
                 "description": "`livevote.v1`, and from a browser `bearer.<jwt>` as well",
                 "schema": {"type": "string", "examples": ["livevote.v1, bearer.<jwt>"]}},
            ],
            "responses": {
                "101": {"description": "Switched to WebSocket; the server answers livevote.v1 when it was offered"},
                "400": {"description": "Not a WebSocket upgrade (Upgrade or Connection header missing)"},
                "401": {"description": "Missing, invalid or expired access token, or its session has ended",
                        **problem},
                "403": {"description": "The Origin is neither this host nor one of server.allowed_origins",
                        **problem},
                "413": {"description": "The request brings a body", **problem},
                "426": {"description": "Unsupported Sec-WebSocket-Version (13 is spoken)"},
                "503": {"description": "Sessions cannot be checked right now", **problem},
            },
        }},
    }


def _operations_paths() -> dict[str, Any]:
    health = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/api/openapi.json": {"get": _operation(
            "getOpenApiDocument", "operations", "This document", (200, "OpenAPI 3.1", {"type": "object"}), (),
        )},
        "/metrics": {"get": {
            "operationId": "getMetrics", "tags": ["operations"], "summary": "Prometheus metrics of this process",
            "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
                "404": {"description": "Metrics are turned off (server.metrics: false)"},
            },
        }},
        "/api/docs": {"get": {
            "operationId": "getApiDocs", "tags": ["operations"], "summary": "Browsable API documentation",
            "responses": {"200": {"description": "An HTML page over this document", "content": {"text/html": {}}}},
        }},
        "/healthz": {"get": _operation("getHealth", "operations", "Liveness", (200, "The process serves", health), ())},
        "/readyz": {"get": _operation(
            "getReadiness", "operations", "Readiness: store, sessions and broker reachable",
            (200, "Ready", health), (503,), notes={503: "The store, the session store or the broker is not reachable"},
        )},
    }


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for part in (_catalog_paths, _vote_paths, _account_paths, _live_paths, _operations_paths):
        paths.update(part())
    return paths


def _components() -> dict[str, Any]:
    inputs: list[type[BaseModel]] = [
        schemas.SubjectCreate, schemas.SubjectReplace, schemas.SubjectPatch,
        schemas.TeacherCreate, schemas.TeacherReplace, schemas.TeacherPatch,
        schemas.Registration, schemas.Login, schemas.RefreshRequest, schemas.VoteRequest,
    ]
    found: dict[str, Any] = {model.__name__: _clean(model.model_json_schema()) for model in inputs}
    for record in (models.Subject, models.Teacher):
        name = record.__name__
        found[name] = _clean(TypeAdapter(record).json_schema())
        found[f"{name}Page"] = _page_schema(name)
    found["SubjectTeachers"] = {
        "type": "object",
        "required": ["subject", "teachers"],
        "properties": {
            "subject": {
                "type": "object",
                "required": ["no", "name"],
                "properties": {"no": {"type": "integer"}, "name": {"type": "string"}},
            },
            "teachers": {"type": "array", "items": _ref("Teacher")},
        },
    }
    found["User"] = _clean(TypeAdapter(models.User).json_schema())
    found["Me"] = _object({"user": _ref("User"), "session": {"type": "string"}})
    found["TokenPair"] = _object({
        "access_token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": ["string", "null"]},
        "refresh_expires_in": {"type": ["integer", "null"]},
        "user": _ref("User"),
    })
    found["SessionCookie"] = _object({"cookie": {"type": "boolean"}})
    found["ViewerToken"] = _object({
        "access_token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer"},
        "role": {"const": "viewer"},
    })
    found["VoteResult"] = _object({
        "teacher": {"type": "integer"},
        "value": {"enum": ["good", "bad", None]},
        "good_count": {"type": "integer"},
        "bad_count": {"type": "integer"},
        "version": {"type": "integer"},
    })
    found["Stats"] = _object({
        "subjects": {"type": "array", "items": _object({
            "no": {"type": "integer"}, "name": {"type": "string"},
            "good_count": {"type": "integer"}, "bad_count": {"type": "integer"},
        })},
        "votes_total": {"type": "integer"},
        "sockets": {"type": "integer"},
    })
    found["Problem"] = PROBLEM
    return found


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


PYDANTIC_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
"""pydantic writes a bound it cannot attach to the type (Field(ge=1) after a BeforeValidator) under its own
name; JSON Schema, and so OpenAPI, spells it this way."""
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SCHEMA_VALUES = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties",
)


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema in standard JSON Schema, at every depth: pydantic's ge/le/gt/lt become
    minimum/maximum/exclusive*, its titles go, and so do the null defaults of PATCH fields (null is
    not accepted)."""
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in SCHEMA_MAPS:
            value = {name: _clean(sub) for name, sub in value.items()}
            if key == "properties":
                for prop in value.values():
                    if "default" in prop and prop["default"] is None:
                        del prop["default"]
        elif key in SCHEMA_LISTS:
            value = [_clean(sub) for sub in value]
        elif key in SCHEMA_VALUES and isinstance(value, dict):
            value = _clean(value)
        cleaned[PYDANTIC_BOUNDS.get(key, key)] = value
    return cleaned


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "livevote", "version": "1.0.0", "description": "Live voting on teachers."},
        "tags": TAGS,
        "paths": _paths(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
