"""HTTP API of the registry: mappings (view, add, edit, delete), the lists to choose from,
sync settings, property-sync status and the dry run, under
`/portals/{portal_id}/accounts/{realm}/{object_type}`. Every route needs a grant for the
route's portal (`Access.PORTAL`); an account not connected to that portal is 404, like an
unknown account or mapping. Validation errors are 422 with one entry per reason; an edit based
on an older version (`If-Match: "<version>"`, the `ETag` of the read) or racing another edit is
409."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dealbooks_contracts import (
    FieldMapping,
    MappingTransform,
    RejectionCode,
    SyncObjectType,
    SyncSettings,
)
from dealbooks_kit import Access, CrmPortalNotConfigured, CrmPortalNotInstalled, Guard
from dealbooks_kit.openapi import ErrorAnswer, describe, described
from dealbooks_sync.domain import OWNED_PROPERTIES, QBO_FIELDS, crm_types_for
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mapping_registry.clients import PortalProperties, QboSamples
from mapping_registry.domain import (
    RECORD_STATUS_KEY,
    CrmProperty,
    MappingRejected,
    MappingSetState,
    Proposal,
    dry_run,
    propose,
)
from mapping_registry.handlers import Registry, UnknownAccount
from mapping_registry.store import VersionConflict

MAX_SAMPLE = 50
Endpoint = Callable[[Request], Awaitable[Response]]


class MappingProblem(BaseModel):
    code: str
    message: str
    field: str | None = None


class RejectedAnswer(BaseModel):
    """A mapping change the registry refused, one entry per reason."""

    error: str
    problems: list[MappingProblem]


class MappingBody(BaseModel):
    """A new mapping: which CRM property is filled from which QBO field, and how."""

    crm_property: str
    qbo_field: str
    transform: MappingTransform | None = None


class Link(BaseModel):
    method: str
    href: str


class ListedMapping(FieldMapping):
    """A mapping and what may be done with it (a required one cannot be deleted)."""

    actions: dict[str, Link]


class MappingsAnswer(BaseModel):
    """An account's mappings and settings for one object type, at a version (its `ETag`)."""

    version: int
    settings: SyncSettings
    mappings: list[ListedMapping]


class AddedAnswer(BaseModel):
    """The version the new mapping made, and the mapping."""

    version: int
    mapping: FieldMapping


class _BadRequest(Exception):
    pass


class _UnknownMapping(Exception):
    pass


def _expected_version(request: Request) -> int | None:
    """The version an edit was based on, from `If-Match` (absent: edit the current one)."""
    tag = request.headers.get("if-match")
    if tag is None or tag.strip() == "*":
        return None
    try:
        return int(tag.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise _BadRequest('If-Match must be the ETag of a read, e.g. "3"') from None


def _etag(state: MappingSetState) -> dict[str, str]:
    return {"ETag": f'"{state.version}"'}


def _known_mapping(state: MappingSetState, mapping_id: str) -> str:
    if all(m.mapping_id != mapping_id for m in state.mappings):
        raise _UnknownMapping(
            f"no mapping '{mapping_id}' in the {state.object_type.value} mappings"
        )
    return mapping_id


def _object_type(request: Request) -> SyncObjectType:
    try:
        return SyncObjectType(request.path_params["object_type"])
    except ValueError:
        raise _BadRequest("object type must be 'contacts' or 'products'") from None


def _problems(exc: MappingRejected) -> JSONResponse:
    return JSONResponse(
        {
            "error": "mapping rejected",
            "problems": [
                {"code": p.code.value, "message": p.message, "field": p.field} for p in exc.problems
            ],
        },
        status_code=422,
    )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _proposal(op: str, body: dict[str, Any], mapping_id: str | None = None) -> Proposal:
    transform = body.get("transform")
    try:
        parsed = MappingTransform(transform) if transform else None
    except ValueError:
        options = ", ".join(t.value for t in MappingTransform)
        raise _BadRequest(f"unknown transform '{transform}' (one of: {options})") from None
    changes: dict[str, Any] = {k: body[k] for k in ("crm_property", "qbo_field") if k in body}
    if "transform" in body:
        changes["transform"] = parsed
    return Proposal(
        op=op,
        mapping_id=mapping_id,
        crm_property=body.get("crm_property"),
        qbo_field=body.get("qbo_field"),
        transform=parsed,
        changes=changes,
    )


@dataclass(frozen=True)
class RegistryApi:
    """What the routes work over: the registry and the two questions it asks outside."""

    registry: Registry
    properties: PortalProperties
    samples: QboSamples


@dataclass(frozen=True)
class MappingSetOf:
    """The mapping set a request addresses: its portal, account, object type, current state."""

    portal: str
    realm: str
    object_type: SyncObjectType
    state: MappingSetState

    @property
    def base(self) -> str:
        return f"/portals/{self.portal}/accounts/{self.realm}/{self.object_type.value}"


def _api(request: Request) -> RegistryApi:
    api: RegistryApi = request.app.state.api
    return api


async def _addressed(request: Request) -> MappingSetOf:
    """The set the route names, if its account is connected to the route's portal."""
    portal, realm = request.path_params["portal_id"], request.path_params["realm"]
    object_type = _object_type(request)
    registry = _api(request).registry
    if await registry.accounts.portal_of(realm) != portal:
        raise UnknownAccount(f"account {realm} is not connected to portal {portal}")
    return MappingSetOf(portal, realm, object_type, await registry.current(realm, object_type))


async def _properties(request: Request, target: MappingSetOf) -> dict[str, CrmProperty]:
    return await _api(request).properties.get(target.portal, target.object_type)


def _view(target: MappingSetOf, state: MappingSetState) -> dict[str, Any]:
    base = f"{target.base}/mappings"
    return {
        "version": state.version,
        "settings": state.settings.model_dump(mode="json"),
        "mappings": [
            {
                **m.model_dump(mode="json"),
                "actions": {
                    "edit": {"method": "PATCH", "href": f"{base}/{m.mapping_id}"},
                    **(
                        {}
                        if m.required
                        else {"delete": {"method": "DELETE", "href": f"{base}/{m.mapping_id}"}}
                    ),
                },
            }
            for m in state.mappings
        ],
    }


# ---- the mappings of a set: view, add, edit, delete


@describe(
    answers={200: MappingsAnswer, 400: ErrorAnswer, 404: ErrorAnswer},
    summary="The account's mappings and settings for the object type (ETag: the version).",
)
async def list_mappings(request: Request) -> Response:
    target = await _addressed(request)
    return JSONResponse(_view(target, target.state), headers=_etag(target.state))


@describe(
    body=MappingBody,
    answers={
        201: AddedAnswer,
        400: ErrorAnswer,
        404: ErrorAnswer,
        409: ErrorAnswer,
        422: RejectedAnswer,
    },
    summary="Add a mapping (If-Match: the version it is based on).",
)
async def add_mapping(request: Request) -> Response:
    target = await _addressed(request)
    proposal = _proposal("add", await _json(request))
    changed = await _api(request).registry.change_mappings(
        target.realm,
        target.object_type,
        proposal,
        await _properties(request, target),
        _expected_version(request),
    )
    added = next(m for m in changed.mappings if m.crm_property == proposal.crm_property)
    return JSONResponse(
        {"version": changed.version, "mapping": added.model_dump(mode="json")},
        status_code=201,
        headers=_etag(changed),
    )


async def edit_mapping(request: Request) -> Response:
    target = await _addressed(request)
    mapping_id = _known_mapping(target.state, request.path_params["mapping_id"])
    expected = _expected_version(request)
    proposal = _proposal("edit", await _json(request), mapping_id)
    changed = await _api(request).registry.change_mappings(
        target.realm, target.object_type, proposal, await _properties(request, target), expected
    )
    return JSONResponse(_view(target, changed), headers=_etag(changed))


async def delete_mapping(request: Request) -> Response:
    target = await _addressed(request)
    mapping_id = _known_mapping(target.state, request.path_params["mapping_id"])
    proposal = Proposal(op="delete", mapping_id=mapping_id)
    changed = await _api(request).registry.change_mappings(
        target.realm, target.object_type, proposal, {}, _expected_version(request)
    )
    return JSONResponse({"version": changed.version}, headers=_etag(changed))


# ---- what a mapping may be made of


async def list_options(request: Request) -> Response:
    target = await _addressed(request)
    portal_props = await _properties(request, target)
    owned = {p.name for p in OWNED_PROPERTIES[target.object_type] if p.read_only}
    return JSONResponse(
        {
            "crm_properties": [
                {"name": p.name, "label": p.label, "type": p.type}
                for p in sorted(portal_props.values(), key=lambda p: p.name)
                if not p.read_only and p.name not in owned
            ],
            "qbo_fields": [
                {"name": name, "kind": kind.value, "fits": sorted(crm_types_for(kind))}
                for name, kind in sorted(QBO_FIELDS[target.object_type].items())
            ],
            "transforms": [t.value for t in MappingTransform],
        }
    )


# ---- sync settings


async def read_settings(request: Request) -> Response:
    state = (await _addressed(request)).state
    return JSONResponse(
        {"version": state.version, "settings": state.settings.model_dump(mode="json")},
        headers=_etag(state),
    )


async def change_settings(request: Request) -> Response:
    target = await _addressed(request)
    body = await _json(request)
    try:
        proposed = SyncSettings.model_validate(
            {**target.state.settings.model_dump(mode="json"), **body}
        )
    except ValidationError as exc:
        raise _BadRequest(f"invalid settings: {exc.errors()[0]['msg']}") from None
    changed = await _api(request).registry.change_settings(
        target.realm, target.object_type, proposed, _expected_version(request)
    )
    return JSONResponse(
        {"version": changed.version, "settings": changed.settings.model_dump(mode="json")},
        headers=_etag(changed),
    )


# ---- property-sync status


def _status_entry(doc: dict[str, Any]) -> dict[str, Any]:
    synced = doc.get("last_synced_at")
    failed_at = doc.get("last_error_at")
    return {
        "ok": doc.get("ok", 0),
        "failed": doc.get("failed", 0),
        "last_synced_at": synced.isoformat() if synced else None,
        "last_error": doc.get("last_error"),
        "last_error_at": failed_at.isoformat() if failed_at else None,
    }


async def read_status(request: Request) -> Response:
    target = await _addressed(request)
    registry = _api(request).registry
    since = registry.status.counted_since(datetime.now(UTC))
    stored = await registry.status.for_set(target.realm, target.object_type, since)
    return JSONResponse(
        {
            "version": target.state.version,
            "counted_since": since.isoformat(),
            "mappings": [
                {
                    "mapping_id": m.mapping_id,
                    "crm_property": m.crm_property,
                    "qbo_field": m.qbo_field,
                    **_status_entry(stored.get(m.mapping_id, {})),
                }
                for m in target.state.mappings
            ],
            "records": _status_entry(stored.get(RECORD_STATUS_KEY, {})),
        }
    )


# ---- the dry run of a change


async def dry_run_change(request: Request) -> Response:
    target = await _addressed(request)
    body = await _json(request)
    change = body.get("change")
    if not isinstance(change, dict) or "op" not in change:
        raise _BadRequest("'change' must be an object with 'op': add, edit or delete")
    sample_size = int(body.get("sample_size", 5))
    if not 1 <= sample_size <= MAX_SAMPLE:
        raise _BadRequest(f"sample_size must be within 1..{MAX_SAMPLE}")
    op = str(change["op"])
    if op in {"edit", "delete"}:
        _known_mapping(target.state, str(change.get("mapping_id") or ""))
    props = await _properties(request, target) if op != "delete" else {}
    proposed = propose(target.state, _proposal(op, change, change.get("mapping_id")), props)
    records = await _api(request).samples.get(target.realm, target.object_type, sample_size)
    return JSONResponse(
        {
            "version": target.state.version,
            "saved": False,
            "records": dry_run(target.object_type, records, target.state.mappings, proposed),
        }
    )


# ---- the app


def _per_method(**endpoints: Endpoint) -> Endpoint:
    """One endpoint for a path whose methods are served by separate route functions (HEAD by
    GET's), carrying what each declared for the OpenAPI document. The path stays one route,
    so a method it lacks is answered 405 with every method it has."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    for method, served_by in endpoints.items():
        declared = described(served_by, method)
        if declared is not None:
            describe(
                body=declared.body,
                answers=declared.answers,
                method=method,
                summary=declared.summary,
            )(endpoint)
    return endpoint


async def _rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MappingRejected)
    return _problems(exc)


async def _unknown(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=404)


async def _bad(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _conflict(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=409)


async def _crm_not_connected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CrmPortalNotConfigured | CrmPortalNotInstalled)
    return JSONResponse(
        {"error": exc.reason, "code": RejectionCode.CRM_NOT_CONNECTED.value}, status_code=409
    )


def build_api(
    registry: Registry, properties: PortalProperties, samples: QboSamples, guard: Guard
) -> Starlette:
    """The registry's routes, each open to a grant for the route's portal; base path
    `/portals/{portal_id}/accounts/{realm}/{object_type}`."""
    base = "/portals/{portal_id}/accounts/{realm}/{object_type}"

    def route(path: str, **endpoints: Endpoint) -> Route:
        return guard.route(base + path, _per_method(**endpoints), list(endpoints), Access.PORTAL)

    api = guard.api(
        [
            route("/mappings", GET=list_mappings, POST=add_mapping),
            route("/mappings/{mapping_id}", PATCH=edit_mapping, DELETE=delete_mapping),
            route("/options", GET=list_options),
            route("/settings", GET=read_settings, PUT=change_settings, PATCH=change_settings),
            route("/status", GET=read_status),
            route("/dry-run", POST=dry_run_change),
        ],
        exception_handlers={
            MappingRejected: _rejected,
            UnknownAccount: _unknown,
            _UnknownMapping: _unknown,
            _BadRequest: _bad,
            VersionConflict: _conflict,
            CrmPortalNotConfigured: _crm_not_connected,
            CrmPortalNotInstalled: _crm_not_connected,
        },
    )
    api.state.api = RegistryApi(registry, properties, samples)
    return api
