"""The OpenAPI 3.1 document of /api, built from the same pydantic models that
validate requests, so the published schema cannot drift from what is enforced.

tests/test_openapi.py checks that every route of the app is described here and
that nothing here is missing from the app.
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
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or invalid bearer token",
    403: "Not allowed for this user",
    404: "No such resource",
    406: "Accept excludes JSON",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Validation failed",
    429: "Too many attempts; see Retry-After",
    503: "A backing service is unavailable",
}

READ_ERRORS = (404, 406)
WRITE_ERRORS = (400, 401, 403, 404, 406, 409, 413, 415, 422)
BODY_ERRORS = (400, 406, 413, 415, 422)
BEARER_ERRORS = (401, 406)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {"content": {media_type: {"schema": schema}}}


def _operation(
    summary: str,
    ok: tuple[int, dict[str, Any] | None],
    errors: tuple[int, ...],
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = False,
    body_required: bool = True,
) -> dict[str, Any]:
    status, schema = ok
    responses: dict[str, Any] = {
        str(status): {"description": "Success", **(_json(schema) if schema else {})}
    }
    for code in errors:
        responses[str(code)] = {
            "description": ERROR_TEXT[code],
            **_json(_ref("Problem"), "application/problem+json"),
        }
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
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


def _paths() -> dict[str, Any]:
    by_no = [_path_id("no")]
    health = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "/api/subjects/": {
            "get": _operation("List subjects", (200, _list_of("Subject")), (406, 404, 422), parameters=PAGING),
            "post": _operation("Create a subject", (201, _ref("Subject")), WRITE_ERRORS, "SubjectCreate", secured=True),
        },
        "/api/subjects/{no}/": {
            "get": _operation("Get a subject", (200, _ref("Subject")), READ_ERRORS, parameters=by_no),
            "put": _operation("Replace a subject", (200, _ref("Subject")), WRITE_ERRORS, "SubjectReplace", by_no, True),
            "patch": _operation("Change a subject", (200, _ref("Subject")), WRITE_ERRORS, "SubjectPatch", by_no, True),
            "delete": _operation("Delete a subject", (204, None), (401, 403, 404, 406, 409), parameters=by_no, secured=True),
        },
        "/api/subjects/{no}/teachers/": {
            "get": _operation("Teachers of a subject", (200, _list_of("Teacher")), (404, 406, 422), parameters=by_no + PAGING),
        },
        "/api/teachers/": {
            "get": _operation(
                "Teachers of a subject, with the subject",
                (200, _ref("SubjectTeachers")),
                READ_ERRORS,
                parameters=[_query("sno", {"type": "integer", "minimum": 1}, required=True)],
            ),
            "post": _operation("Create a teacher", (201, _ref("Teacher")), WRITE_ERRORS, "TeacherCreate", secured=True),
        },
        "/api/teachers/{no}/": {
            "get": _operation("Get a teacher", (200, _ref("Teacher")), READ_ERRORS, parameters=by_no),
            "put": _operation("Replace a teacher", (200, _ref("Teacher")), WRITE_ERRORS, "TeacherReplace", by_no, True),
            "patch": _operation("Change a teacher", (200, _ref("Teacher")), WRITE_ERRORS, "TeacherPatch", by_no, True),
            "delete": _operation("Delete a teacher", (204, None), (401, 403, 404, 406), parameters=by_no, secured=True),
        },
        "/api/teachers/{no}/vote": {
            "get": _operation("Your vote on a teacher", (200, _ref("VoteResult")), (401, 404, 406), parameters=by_no, secured=True),
            "put": _operation("Vote good or bad", (200, _ref("VoteResult")), (401, 404, *BODY_ERRORS), "VoteRequest", by_no, True),
            "delete": _operation("Withdraw your vote", (200, _ref("VoteResult")), (401, 404, 406), parameters=by_no, secured=True),
        },
        "/api/auth/register": {
            "post": _operation("Create an account", (201, _ref("User")), (409, 429, *BODY_ERRORS), "Registration"),
        },
        "/api/auth/login": {
            "post": _operation("Log in: a new session", (200, _ref("TokenPair")), (401, 429, *BODY_ERRORS), "Login"),
        },
        "/api/auth/refresh": {
            "post": _operation(
                "Rotate the refresh token (body or cookie)", (200, _ref("TokenPair")), (401, 403, *BODY_ERRORS),
                "RefreshRequest", body_required=False,
            ),
        },
        "/api/auth/logout": {
            "post": _operation(
                "End the session of a refresh token (body or cookie)", (204, None), (401, 403, *BODY_ERRORS),
                "RefreshRequest", body_required=False,
            ),
        },
        "/api/auth/logout-all": {
            "post": _operation("End all your sessions", (204, None), BEARER_ERRORS, secured=True),
        },
        "/api/auth/me": {
            "get": _operation("Who you are", (200, _ref("Me")), BEARER_ERRORS, secured=True),
        },
        "/api/stats": {"get": _operation("Votes per subject and open sockets, cluster-wide", (200, _ref("Stats")), (406, 503))},
        "/ws": {"get": {
            "summary": "The live channel: WebSocket protocol v1 (docs/protocol.md)",
            "security": [{"bearer": []}],
            "responses": {
                "101": {"description": "Upgraded; subprotocol livevote.v1"},
                "400": {"description": "Not a WebSocket upgrade"},
                "401": {"description": "Missing, invalid, expired or revoked token",
                        **_json(_ref("Problem"), "application/problem+json")},
                "403": {"description": "Origin not allowed"},
            },
        }},
        "/api/openapi.json": {"get": _operation("This document", (200, {"type": "object"}), (406,))},
        "/metrics": {"get": {"summary": "Prometheus metrics of this process", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
            "404": {"description": "Metrics are turned off (server.metrics: false)"}}}},
        "/api/docs": {"get": {"summary": "Browsable API documentation", "responses": {
            "200": {"description": "An HTML page over this document", "content": {"text/html": {}}}}}},
        "/healthz": {"get": _operation("Liveness", (200, health), (406,))},
        "/readyz": {"get": _operation("Readiness: store reachable", (200, health), (406, 503))},
    }


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


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's titles and the null defaults of PATCH fields (null is not accepted)."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
    return schema


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "livevote", "version": "1.0.0", "description": "Live voting on teachers."},
        "paths": _paths(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
