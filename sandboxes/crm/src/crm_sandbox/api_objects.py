"""CRM objects v3: single-record CRUD, list with after-cursor paging, batch and search."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.errors import ApiError, not_found, validation
from crm_sandbox.guard import SEARCH, Ctx, Guard, json_response, scopes_by_object_type
from crm_sandbox.schema import KIND_BY_ID, canonical_type
from crm_sandbox.search import search
from crm_sandbox.state import Portal, Record, iso, now_ms
from crm_sandbox.store import Source, Store

PREFIXES = ["/crm/v3/objects", "/crm/objects/2026-03"]
MAX_BATCH = 100
MAX_LIST = 100
# The scopes of which an objects call needs one, by object type; types not listed are not
# checked. HubSpot's tasks guide lists the contact scopes for tasks (engagements): reads take
# either, writes need `crm.objects.contacts.write`.
OBJECT_READ_SCOPES: dict[str, list[str]] = {
    "tasks": ["crm.objects.contacts.read", "crm.objects.contacts.write"],
}
OBJECT_WRITE_SCOPES: dict[str, list[str]] = {"tasks": ["crm.objects.contacts.write"]}
READ = scopes_by_object_type(OBJECT_READ_SCOPES)
WRITE = scopes_by_object_type(OBJECT_WRITE_SCOPES)


def object_type(ctx: Ctx) -> str:
    name = canonical_type(str(ctx.params["objectType"]))
    if name is None:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"Unable to infer object type from: {ctx.params['objectType']}",
        )
    return name


def inputs_of(body: Any, maximum: int = MAX_BATCH) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise validation("Invalid input JSON: `inputs` is required.")
    inputs: list[dict[str, Any]] = body["inputs"]
    if len(inputs) > maximum:
        raise validation(
            f"Batch input size exceeded: {len(inputs)}. The maximum is {maximum}.",
            sub_category="BATCH_INPUT_SIZE_EXCEEDED",
        )
    return inputs


def batch_response(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int = 200
) -> Response:
    ts = iso(now_ms())
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": ts,
        "completedAt": ts,
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return json_response(body, 207)
    return json_response(body, ok_status)


def inline_associations(
    store: Store, portal: Portal, type_name: str, specs: Any
) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """Resolve `associations: [{to:{id}, types:[...]}]` given at create time; validates all."""
    out = []
    for item in specs or []:
        to_id = str((item.get("to") or {}).get("id", ""))
        types = [
            (str(t.get("associationCategory", "HUBSPOT_DEFINED")), int(t["associationTypeId"]))
            for t in item.get("types") or []
        ]
        if not types:
            raise validation("Each association needs at least one type.")
        to_type = None
        for category, type_id in types:
            if category == "HUBSPOT_DEFINED":
                for (ft, tt, tid), _ in KIND_BY_ID.items():
                    if ft == type_name and tid == type_id:
                        to_type = tt
            else:
                for (ft, tt), labels in portal.custom_labels.items():
                    if ft == type_name and any(lb["typeId"] == type_id for lb in labels):
                        to_type = tt
        if to_type is None:
            raise validation(
                f"Association type {types[0][1]} is not valid for {type_name}.",
                sub_category="INVALID_ASSOCIATION_TYPE",
            )
        if store.find(portal, to_type, to_id) is None:
            raise validation(
                f"No {to_type} with id {to_id} exists to associate with.",
                sub_category="ASSOCIATION_TARGET_NOT_FOUND",
            )
        out.append((to_type, to_id, types))
    return out


def create_with_associations(
    store: Store, portal: Portal, type_name: str, body: dict[str, Any], source: Source
) -> Record:
    links = inline_associations(store, portal, type_name, body.get("associations"))
    record = store.create(portal, type_name, body.get("properties") or {}, source)
    for to_type, to_id, types in links:
        store.associate(portal, type_name, record.id, to_type, to_id, types, source)
    return record


class ObjectsApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.store = guard.store

    def routes(self) -> list[Route]:
        g = self.guard
        routes: list[Route] = []
        for prefix in PREFIXES:
            base = prefix + "/{objectType}"
            label = "/crm/v3/objects/{objectType}"
            routes += [
                g.route(
                    base + "/search",
                    self.search,
                    ["POST"],
                    limit=SEARCH,
                    scope=READ,
                    label=label + "/search",
                ),
                g.route(
                    base + "/batch/read",
                    self.batch_read,
                    ["POST"],
                    scope=READ,
                    label=label + "/batch/read",
                ),
                *[
                    g.route(
                        base + f"/batch/{action}",
                        handler,
                        ["POST"],
                        scope=WRITE,
                        label=label + f"/batch/{action}",
                    )
                    for action, handler in (
                        ("create", self.batch_create),
                        ("update", self.batch_update),
                        ("upsert", self.batch_upsert),
                        ("archive", self.batch_archive),
                    )
                ],
                g.route(base, self.list_records, ["GET"], scope=READ, label=label),
                g.route(base, self.create, ["POST"], scope=WRITE, label=label),
                g.route(
                    base + "/{objectId}",
                    self.read,
                    ["GET"],
                    scope=READ,
                    label=label + "/{objectId}",
                ),
                g.route(
                    base + "/{objectId}",
                    self.update,
                    ["PATCH"],
                    scope=WRITE,
                    label=label + "/{objectId}",
                ),
                g.route(
                    base + "/{objectId}",
                    self.archive,
                    ["DELETE"],
                    scope=WRITE,
                    label=label + "/{objectId}",
                ),
            ]
        return routes

    async def list_records(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        q = ctx.request.query_params
        try:
            limit = min(int(q.get("limit", "10")), MAX_LIST)
        except ValueError:
            raise validation("limit must be a number") from None
        archived = ctx.query_bool("archived")
        records = sorted(
            (r for r in ctx.portal.records[type_name].values() if r.archived == archived),
            key=lambda r: int(r.id),
        )
        after = q.get("after")
        if after:
            records = [r for r in records if int(r.id) >= int(after)]
        page, rest = records[:limit], records[limit:]
        body: dict[str, Any] = {
            "results": [
                self.store.render(
                    ctx.portal,
                    r,
                    ctx.query_list("properties"),
                    with_history=ctx.query_list("propertiesWithHistory"),
                    associations=self._assoc_types(ctx),
                )
                for r in page
            ]
        }
        if rest:
            nxt = rest[0].id
            body["paging"] = {
                "next": {
                    "after": nxt,
                    "link": f"{ctx.request.url.path}?after={nxt}&limit={limit}",
                }
            }
        return json_response(body)

    def _assoc_types(self, ctx: Ctx) -> list[str]:
        out = []
        for name in ctx.query_list("associations"):
            resolved = canonical_type(name)
            if resolved:
                out.append(resolved)
        return out

    async def create(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        body = await ctx.json()
        record = create_with_associations(self.store, ctx.portal, type_name, body, ctx.source)
        rendered = self.store.render(ctx.portal, record, list(record.properties))
        return json_response(rendered, 201)

    async def read(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        record = self.store.get(
            ctx.portal,
            type_name,
            str(ctx.params["objectId"]),
            id_property=ctx.request.query_params.get("idProperty"),
            archived=ctx.query_bool("archived"),
        )
        return json_response(
            self.store.render(
                ctx.portal,
                record,
                ctx.query_list("properties"),
                with_history=ctx.query_list("propertiesWithHistory"),
                associations=self._assoc_types(ctx),
            )
        )

    async def update(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        body = await ctx.json()
        record = self.store.get(
            ctx.portal,
            type_name,
            str(ctx.params["objectId"]),
            id_property=ctx.request.query_params.get("idProperty"),
        )
        self.store.update(ctx.portal, record, body.get("properties") or {}, ctx.source)
        return json_response(self.store.render(ctx.portal, record, list(record.properties)))

    async def archive(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        record = self.store.find(ctx.portal, type_name, str(ctx.params["objectId"]))
        if record is not None:
            self.store.archive(ctx.portal, record, ctx.source)
        return Response(status_code=204)

    async def batch_read(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        body = await ctx.json()
        inputs = inputs_of(body)
        id_property = body.get("idProperty")
        archived = ctx.query_bool("archived")
        results, missing = [], []
        for item in inputs:
            object_id = str(item.get("id", ""))
            record = self.store.find(
                ctx.portal, type_name, object_id, id_property=id_property, archived=archived
            )
            if record is None:
                missing.append(object_id)
                continue
            results.append(
                self.store.render(
                    ctx.portal,
                    record,
                    body.get("properties") or None,
                    with_history=body.get("propertiesWithHistory") or None,
                )
            )
        errors = []
        if missing:
            errors.append(
                ApiError(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {type_name.upper()} objects, they may be deleted or "
                    "not exist. Check that ids are valid.",
                ).standard_error({"ids": missing})
            )
        return batch_response(results, errors)

    async def batch_create(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        inputs = inputs_of(await ctx.json())
        traced = bool(inputs) and all(i.get("objectWriteTraceId") for i in inputs)
        if not traced:
            # Without objectWriteTraceId one bad input fails the whole call.
            self._dry_run(ctx.portal, type_name, inputs)
        results, errors = [], []
        for item in inputs:
            try:
                record = create_with_associations(
                    self.store, ctx.portal, type_name, item, ctx.source
                )
            except ApiError as exc:
                errors.append(
                    exc.standard_error(
                        {"objectWriteTraceId": [str(item.get("objectWriteTraceId"))]}
                    )
                )
                continue
            rendered = self.store.render(ctx.portal, record, list(record.properties))
            if item.get("objectWriteTraceId"):
                rendered["objectWriteTraceId"] = item["objectWriteTraceId"]
            results.append(rendered)
        return batch_response(results, errors, 201)

    def _dry_run(self, portal: Portal, type_name: str, inputs: list[dict[str, Any]]) -> None:
        seen: dict[str, int] = {}
        for item in inputs:
            props = self.store.validate(portal, type_name, item.get("properties"), existing=None)
            self.store.check_required(type_name, {k: v for k, v in props.items() if v})
            self.store.check_unique(portal, type_name, props, exclude=None)
            inline_associations(self.store, portal, type_name, item.get("associations"))
            email = props.get("email") if type_name == "contacts" else None
            if email:
                if email in seen:
                    raise ApiError(
                        409,
                        "CONFLICT",
                        f"Duplicate email in batch input: {email}",
                    )
                seen[email] = 1

    async def batch_update(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        inputs = inputs_of(await ctx.json())
        targets: list[tuple[Record, dict[str, Any]]] = []
        missing = []
        for item in inputs:
            record = self.store.find(
                ctx.portal, type_name, str(item.get("id", "")), id_property=item.get("idProperty")
            )
            if record is None:
                missing.append(str(item.get("id", "")))
                continue
            self.store.validate(ctx.portal, type_name, item.get("properties"), existing=record)
            targets.append((record, item.get("properties") or {}))
        results = []
        for record, props in targets:
            self.store.update(ctx.portal, record, props, ctx.source)
            results.append(self.store.render(ctx.portal, record, list(record.properties)))
        errors = []
        if missing:
            errors.append(
                not_found(f"Could not find some {type_name.upper()} objects.").standard_error(
                    {"ids": missing}
                )
            )
        return batch_response(results, errors)

    async def batch_upsert(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        inputs = inputs_of(await ctx.json())
        ids = [(str(i.get("idProperty", "")), str(i.get("id", ""))) for i in inputs]
        normalized = [(p, v.lower() if p == "email" else v) for p, v in ids]
        if len(set(normalized)) != len(normalized):
            raise validation("Duplicate IDs found in batch input.", sub_category="DUPLICATE_IDS")
        plan: list[tuple[Record | None, dict[str, Any]]] = []
        for item, (id_property, object_id) in zip(inputs, ids, strict=True):
            if not id_property:
                raise validation("idProperty is required for upsert.")
            record = self.store.find(ctx.portal, type_name, object_id, id_property=id_property)
            props = dict(item.get("properties") or {})
            if record is None:
                props.setdefault(id_property, object_id)
            self.store.validate(ctx.portal, type_name, props, existing=record)
            plan.append((record, props))
        results = []
        for record, props in plan:
            is_new = record is None
            if record is None:
                record = self.store.create(ctx.portal, type_name, props, ctx.source)
            else:
                self.store.update(ctx.portal, record, props, ctx.source)
            rendered = self.store.render(ctx.portal, record, list(record.properties))
            rendered["new"] = is_new
            results.append(rendered)
        return batch_response(results, [])

    async def batch_archive(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        for item in inputs_of(await ctx.json()):
            record = self.store.find(ctx.portal, type_name, str(item.get("id", "")))
            if record is not None:
                self.store.archive(ctx.portal, record, ctx.source)
        return Response(status_code=204)

    async def search(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        body = await ctx.json()
        return json_response(
            search(self.store, ctx.portal, type_name, body, self.guard.state.config)
        )
