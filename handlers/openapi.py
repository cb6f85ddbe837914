"""The OpenAPI 3.1 document, built from what the server already is: the paths from the routes the
application serves (handlers/app.py), the methods from the handlers behind them, and every schema
from the type the code uses: the pydantic models that validate request bodies, and the TypedDicts
and dataclasses that response bodies are built as (mypy checks those where they are built; see
services/models.py). What no code can say, an operation's name, tag, summary, statuses and what
they mean there, is declared once, on the handler method, with @Operation.

A method an API handler implements but does not declare is an error: the document describes every
API operation. Other handlers' undeclared methods (pages, static files) are left out.

tests/api/test_openapi.py checks that every API route is documented once, that the served document
passes openapi-spec-validator, that every operation has one of TAGS and a unique operationId, that
no pydantic-only keyword (ge, le, ...) reaches it, and that real answers match their schemas.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from tornado.routing import PathMatches
from tornado.web import Application, RequestHandler

from handlers.base import MAX_PAGE, MAX_PAGE_SIZE, ApiHandler, allowed_methods
from handlers.headers import JSON, PROBLEM_JSON
from services.models import PageJson

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": ["voting_closed"],
                 "description": "For programs, where the status alone does not say what went wrong"},
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
    {"name": "audit", "description": "Who changed what: administrators' changes, read by administrators."},
    {"name": "history", "description": "Counts over time, and a subject's results and history as exports"
                                        " (administrators)."},
]
TAG_ORDER = [tag["name"] for tag in TAGS]

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
"""What an error status means when an operation says nothing more precise (Operation.notes)."""
REPEATED_QUERY = "A query parameter is given more than once"
"""The 400 of every API operation that takes query parameters (handlers/base.py refuses them)."""

BODY = (400, 413, 415, 422)
"""The errors of any operation that reads a JSON body."""
PAGING_422 = "?page or ?page_size is not a whole number in range"

REF = "#/components/schemas/{model}"
DECLARED = "__openapi__"
"""The attribute of a handler method that holds its Operation."""
VERBS = ("get", "head", "post", "put", "patch", "delete", "options")
"""The order of a path's operations in the document."""
PATH_GROUPS = {"[0-9]+": {"type": "integer", "minimum": 1}}
"""A route's capturing group, as its path parameter's schema (a record number). An empty group `()`
matches nothing and is no parameter."""
GROUP = re.compile(r"\(([^()]*)\)")
DOCUMENTED_PATH = re.compile(r"[\w/{}.-]+")

Method = TypeVar("Method", bound=Callable[..., Any])
Routes = tuple[tuple[str, type[RequestHandler]], ...]


@dataclass(frozen=True, slots=True)
class ListOrPage:
    """A success body that is a plain array of `item`, or a page of them (PageJson) when ?page or
    ?page_size is given (ApiHandler.write_list); the operation takes those two query parameters."""

    item: type


@dataclass(frozen=True)
class Operation:
    """What a handler method does, as far as no code says it. As a decorator it marks the method:

        @Operation("castVote", "votes", "Vote good or bad", ok="Your vote and the teacher's counts",
                   returns=VoteResultJson, request=VoteRequest, secured=True,
                   errors=(401, 404, *BODY, 503), notes={404: "No such teacher"})
        async def put(self, no: str) -> None:

    The path and its parameters come from the route, 406 from ApiHandler (it negotiates Accept)."""

    operation_id: str
    tag: str
    summary: str
    _: KW_ONLY
    ok: str
    """What the success answer means."""
    status: int = 200
    returns: object = None
    """The success body's type: a TypedDict or dataclass (a schema in components, named after it less
    a `Json` suffix), a ListOrPage, any other type (inline), or None for no body."""
    media_type: str = JSON
    also: Mapping[str, object] = field(default_factory=dict)
    """The success answer in other media types, chosen by Accept: media type -> body type, as `returns`."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers of the success answer: name -> what it holds."""
    request: type[BaseModel] | None = None
    request_required: bool = True
    secured: bool = False
    parameters: Sequence[Mapping[str, Any]] = ()
    """Query and header parameters; path parameters come from the route."""
    errors: Sequence[int] = ()
    """The error statuses, each answered with problem+json."""
    notes: Mapping[int, str] = field(default_factory=dict)
    """What an error means here, where ERROR_TEXT is not exact."""
    plain: Mapping[int, str] = field(default_factory=dict)
    """Other answers, without a body (a WebSocket handshake's 426, metrics turned off)."""
    description: str | None = None

    def __call__(self, method: Method) -> Method:
        setattr(method, DECLARED, self)
        return method


def query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


PAGING = [
    query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    query("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
]


def served_routes(app: Application) -> Routes:
    """The application's routes, (pattern, handler class) in its order."""
    return tuple(
        (rule.matcher.regex.pattern, rule.target) for rule in app.wildcard_router.rules
        if isinstance(rule.matcher, PathMatches) and isinstance(rule.target, type)
        and issubclass(rule.target, RequestHandler)
    )


@cache
def openapi_document(routes: Routes) -> dict[str, Any]:
    """The document of these routes: built once, then the same object is served."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for pattern, handler in routes:
        for verb, method, declared in _declared(handler):
            path, parameters = _path(pattern, handler, method)
            item = paths.setdefault(path, {})
            if verb in item:
                raise ValueError(f"{verb.upper()} {path} is served by two routes")
            item[verb] = _operation(declared, parameters, issubclass(handler, ApiHandler), schemas)
    by_tag = sorted(paths.items(), key=lambda entry: TAG_ORDER.index(next(iter(entry[1].values()))["tags"][0]))
    return {
        "openapi": "3.1.0",
        "info": {"title": "livevote", "version": "1.0.0", "description": "Live voting on teachers."},
        "tags": TAGS,
        "paths": {path: dict(sorted(item.items(), key=lambda entry: VERBS.index(entry[0]))) for path, item in by_tag},
        "components": {
            "schemas": dict(sorted(schemas.found.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _declared(handler: type[RequestHandler]) -> Iterator[tuple[str, Callable[..., Any], Operation]]:
    """(verb, method, its Operation) of each method the handler implements and declares."""
    for name in allowed_methods(handler):
        method = getattr(handler, name.lower())
        declared = getattr(method, DECLARED, None)
        if isinstance(declared, Operation):
            yield name.lower(), method, declared
        elif issubclass(handler, ApiHandler) and name != "HEAD":  # HEAD is GET's (HeadAsGet)
            raise TypeError(f"{handler.__name__}.{name.lower()} is an API operation without @Operation")


def _path(
    pattern: str, handler: type[RequestHandler], method: Callable[..., Any]
) -> tuple[str, list[Mapping[str, Any]]]:
    """A route's pattern as an OpenAPI path: each group becomes the parameter the method takes in
    its place (`([0-9]+)` in SubjectHandler.get(self, no) is `{no}`). An optional trailing slash
    is documented as the handler says (`documented_with_slash`, the catalog's DRF style) and is
    left out otherwise."""
    names = iter([
        parameter.name for parameter in list(inspect.signature(method).parameters.values())[1:]
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ])
    parameters: list[Mapping[str, Any]] = []

    def parameter(group: re.Match[str]) -> str:
        if not group[1]:
            return ""
        name = next(names)
        parameters.append({"name": name, "in": "path", "required": True, "schema": PATH_GROUPS[group[1]]})
        return f"{{{name}}}"

    path = GROUP.sub(parameter, pattern.removesuffix("$")).replace(r"\.", ".")
    if path.endswith("/?"):
        path = path.removesuffix("/?") + ("/" if getattr(handler, "documented_with_slash", False) else "")
    if not DOCUMENTED_PATH.fullmatch(path):
        raise ValueError(f"{pattern} cannot be written as an OpenAPI path")
    return path, parameters


def _operation(
    declared: Operation, parameters: list[Mapping[str, Any]], negotiates: bool, schemas: Schemas
) -> dict[str, Any]:
    """One operation; every error is problem+json, and 406 (Accept excludes JSON) applies to every
    operation of an ApiHandler (`negotiates`)."""
    success: dict[str, Any] = {"description": declared.ok}
    body = schemas.response(declared.returns)
    if body is not None or declared.media_type != JSON:
        success["content"] = {declared.media_type: {} if body is None else {"schema": body}}
    for media_type, returns in declared.also.items():
        success.setdefault("content", {})[media_type] = {"schema": schemas.response(returns)}
    if declared.headers:
        success["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in declared.headers.items()
        }
    errors = {*declared.errors, *([406] if negotiates else [])}
    if not set(declared.notes) <= errors:
        raise ValueError(f"{declared.operation_id}: a note for a status it does not list")
    notes = dict(declared.notes)
    parameters = [*parameters, *declared.parameters, *(PAGING if isinstance(declared.returns, ListOrPage) else [])]
    if negotiates and 400 not in errors and any(parameter["in"] == "query" for parameter in parameters):
        errors.add(400)
        notes[400] = REPEATED_QUERY
    responses: dict[str, Any] = {str(declared.status): success}
    for code in sorted(errors | set(declared.plain)):
        if code in declared.plain:
            responses[str(code)] = {"description": declared.plain[code]}
        else:
            responses[str(code)] = {
                "description": notes.get(code, ERROR_TEXT.get(code, "")),
                "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
            }
    operation: dict[str, Any] = {
        "operationId": declared.operation_id, "tags": [declared.tag], "summary": declared.summary,
    }
    if declared.description:
        operation["description"] = declared.description
    if parameters:
        operation["parameters"] = parameters
    if declared.request is not None:
        operation["requestBody"] = {
            "required": declared.request_required,
            "content": {JSON: {"schema": schemas.ref(declared.request, "validation")}},
        }
    if declared.secured:
        operation["security"] = [{"bearer": []}]
    operation["responses"] = responses
    return operation


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def schema_name(kind: type) -> str:
    """A body type's name in components: VoteResultJson is VoteResult."""
    return kind.__name__.removesuffix("Json")


class SchemaNames(GenerateJsonSchema):
    """pydantic's names for the types a schema refers to, by the same rule as schema_name."""

    def normalize_name(self, name: str) -> str:
        return super().normalize_name(name).removesuffix("Json")


class Schemas:
    """components/schemas, gathered as the operations name their types."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {"Problem": PROBLEM}

    def response(self, returns: Any) -> dict[str, Any] | None:
        if returns is None:
            return None
        if isinstance(returns, ListOrPage):
            page = self.ref(PageJson[returns.item], "serialization", f"{schema_name(returns.item)}Page")
            return {"oneOf": [{"type": "array", "items": self.ref(returns.item, "serialization")}, page]}
        if isinstance(returns, type):
            return self.ref(returns, "serialization")
        if get_origin(returns) is list:
            return {"type": "array", "items": self.ref(get_args(returns)[0], "serialization")}
        return _clean(TypeAdapter(returns).json_schema(mode="serialization"))

    def ref(self, kind: Any, mode: Literal["validation", "serialization"], name: str | None = None) -> dict[str, str]:
        """A reference to `kind`'s schema, added to components (with the types it refers to) if new."""
        name = name or schema_name(kind)
        if name not in self.found:
            schema = TypeAdapter(kind).json_schema(mode=mode, ref_template=REF, schema_generator=SchemaNames)
            for referred, sub in schema.pop("$defs", {}).items():
                self._keep(referred, _clean(sub))
            self._keep(name, _clean(schema))
        return _ref(name)

    def _keep(self, name: str, schema: dict[str, Any]) -> None:
        if self.found.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name}")


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
    not accepted); `X | None` is written {"type": [X, "null"]}."""
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
            if key == "anyOf" and all(list(sub) == ["type"] for sub in value):
                key, value = "type", [sub["type"] for sub in value]
        elif key in SCHEMA_VALUES and isinstance(value, dict):
            value = _clean(value)
        cleaned[PYDANTIC_BOUNDS.get(key, key)] = value
    return cleaned
