"""The OpenAPI document of a service's HTTP API, read from the routes its `Guard` built.

Every route is there: its path, methods, parameters and who may call it (one security
scheme per `Access` kind; a public route has none, and says why it is public). A route says
what it takes and answers by declaring pydantic models on its endpoint with `describe`; a route
that declares none is listed with an undescribed JSON answer.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from dealbooks_kit.auth import PUBLIC_BY_DESIGN, Access

__all__ = [
    "SECURITY_SCHEMES",
    "Described",
    "ErrorAnswer",
    "KitRoute",
    "describe",
    "described",
    "openapi_document",
]

E = TypeVar("E", bound=Callable[..., Any])


class ErrorAnswer(BaseModel):
    """A refusal, in a sentence."""

    error: str


_MARK = "__dealbooks_described__"
_ANY_METHOD = "*"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

# One scheme per kind of caller (see `dealbooks_kit.auth`).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "portalGrant": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "dbg1 portal grant",
        "description": "A signed-in person's short-lived portal grant, minted by connector-auth "
        "from a sign-in session; it must name the route's {portal_id}.",
    },
    "operatorBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator credential (DEALBOOKS_OPERATOR_CREDENTIALS).",
    },
    "serviceBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A dealbooks service's credential (DEALBOOKS_SERVICE_CREDENTIALS).",
    },
    "crmSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-HubSpot-Signature-v3",
        "description": "The CRM's v3 signature over method, URL, body and "
        "X-HubSpot-Request-Timestamp, with the app's client secret; the portal is the one "
        "the signed request names.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "dealbooks_session",
        "description": "connector-auth's sign-in session (its own and the console's pages).",
    },
}

_SCHEME_OF: dict[Access, str] = {
    Access.PORTAL: "portalGrant",
    Access.OPERATOR: "operatorBearer",
    Access.SERVICE: "serviceBearer",
    Access.CRM_SIGNED: "crmSignature",
    Access.SESSION: "session",
}

_PROBLEM = {
    "type": "object",
    "description": "Why the call was refused or failed.",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error"],
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@dataclass(frozen=True)
class Described:
    """What one route (or one method of it) takes and answers."""

    body: type[BaseModel] | None = None
    answers: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)
    summary: str | None = None


def describe(
    *,
    body: type[BaseModel] | None = None,
    answers: Mapping[int, type[BaseModel] | None] | None = None,
    method: str | None = None,
    summary: str | None = None,
) -> Callable[[E], E]:
    """Declare the models of an endpoint's JSON body and answers (by status), for the OpenAPI
    document; `method` limits it to one method of an endpoint serving several (stack one per
    method). Declarations only: nothing about how the endpoint runs changes."""

    def mark(endpoint: E) -> E:
        table = dict(getattr(endpoint, _MARK, {}))
        key = method.upper() if method else _ANY_METHOD
        table[key] = Described(body, dict(answers or {}), summary)
        setattr(endpoint, _MARK, table)
        return endpoint

    return mark


def described(endpoint: Callable[..., Any] | None, method: str) -> Described | None:
    """What `describe` declared on `endpoint` for `method`, if anything."""
    table: dict[str, Described] = getattr(endpoint, _MARK, None) or {}
    return table.get(method.upper()) or table.get(_ANY_METHOD)


@dataclass(frozen=True)
class KitRoute:
    """A route the kit itself serves (health, metrics, the docs), always public."""

    path: str
    summary: str
    content_type: str = "application/json"
    methods: tuple[str, ...] = ("GET",)


def openapi_document(
    routes: Iterable[BaseRoute],
    *,
    title: str,
    version: str = "1",
    description: str = "",
    kit_routes: Sequence[KitRoute] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (each built by `Guard.route`) and `kit_routes`."""
    models: dict[tuple[type[BaseModel], str], None] = {}
    operations: list[tuple[str, str, BaseRoute | KitRoute]] = []
    for kit in kit_routes:
        operations.extend((kit.path, m, kit) for m in kit.methods)
    for route in routes:
        path = getattr(route, "path", None)
        if path is None:
            continue
        for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD"}):
            operations.append((path, method, route))
            doc = described(getattr(route, "served_by", None), method)
            if doc is not None:
                if doc.body is not None:
                    models[(doc.body, "validation")] = None
                models.update({(m, "serialization"): None for m in doc.answers.values() if m})
    refs, schemas = _schemas(list(models))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, served in operations:
        if isinstance(served, KitRoute):
            operation = _kit_operation(served)
        else:
            operation = _operation(path, method, served, refs)
        paths.setdefault(_clean(path), {})[method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {"Problem": _PROBLEM, **schemas},
        },
    }
    if description:
        document["info"]["description"] = description
    return document


def _schemas(
    models: list[tuple[type[BaseModel], str]],
) -> tuple[dict[tuple[type[BaseModel], str], dict[str, Any]], dict[str, Any]]:
    if not models:
        return {}, {}
    modes: dict[str, Literal["validation", "serialization"]] = {
        "validation": "validation",
        "serialization": "serialization",
    }
    refs, top = models_json_schema(
        [(m, modes[mode]) for m, mode in models], ref_template="#/components/schemas/{model}"
    )
    found: dict[tuple[type[BaseModel], str], dict[str, Any]] = {}
    for (model, mode), ref in refs.items():
        if isinstance(model, type) and issubclass(model, BaseModel):
            found[(model, mode)] = ref
    return found, dict(sorted(top.get("$defs", {}).items()))


def _clean(path: str) -> str:
    """A Starlette path as OpenAPI writes it (`{name:path}` -> `{name}`)."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _operation(
    path: str,
    method: str,
    route: BaseRoute,
    refs: Mapping[tuple[type[BaseModel], str], dict[str, Any]],
) -> dict[str, Any]:
    access = frozenset(getattr(route, "access", ()) or ())
    endpoint = getattr(route, "served_by", None)
    doc = described(endpoint, method) or Described()
    summary = doc.summary or _first_line(endpoint)
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}{_operation_name(path)}",
        "x-dealbooks-access": sorted(a.value for a in access),
    }
    if summary:
        operation["summary"] = summary
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    if parameters:
        operation["parameters"] = parameters
    if Access.PUBLIC in access:
        operation["security"] = []
        operation["x-dealbooks-public"] = PUBLIC_BY_DESIGN.get(path, "")
    else:
        operation["security"] = [
            {_SCHEME_OF[a]: []} for a in sorted(access, key=lambda a: a.value) if a in _SCHEME_OF
        ]
    if doc.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(doc.body, "validation")]}},
        }
    answers: dict[str, Any] = {}
    for status, model in sorted(doc.answers.items()):
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if model is not None:
            answer["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        answers[str(status)] = answer
    if not doc.answers:
        answers["200"] = {"description": "OK"}
    if Access.PUBLIC not in access:
        refusal = {"content": {"application/json": {"schema": _PROBLEM_REF}}}
        answers.setdefault("401", {"description": "No valid credential", **refusal})
        if Access.PORTAL in access or Access.SESSION in access or Access.CRM_SIGNED in access:
            answers.setdefault("403", {"description": "Not signed in for this portal", **refusal})
    operation["responses"] = answers
    return operation


def _kit_operation(route: KitRoute) -> dict[str, Any]:
    return {
        "operationId": f"get{_operation_name(route.path)}",
        "summary": route.summary,
        "x-dealbooks-access": [Access.PUBLIC.value],
        "security": [],
        "x-dealbooks-public": PUBLIC_BY_DESIGN.get(route.path, ""),
        "responses": {"200": {"description": "OK", "content": {route.content_type: {}}}},
    }


def _operation_name(path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _clean(path).replace("{", "by ").replace("}", ""))
    return "".join(w[:1].upper() + w[1:] for w in words) or "Root"


def _first_line(endpoint: Any) -> str | None:
    text = inspect.getdoc(endpoint) if endpoint is not None else None
    if not text:
        return None
    return " ".join(text.split("\n\n", 1)[0].split())
