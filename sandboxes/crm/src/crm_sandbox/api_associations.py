"""Associations v4 (and the 2026-03 paths): single, batch, labels. Always bidirectional."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.api_objects import batch_response, inputs_of
from crm_sandbox.errors import ApiError, validation
from crm_sandbox.guard import EXEMPT, Ctx, Guard, json_response
from crm_sandbox.schema import ASSOCIATION_KINDS, OBJECT_TYPE_IDS, canonical_type, default_kind

OBJECT_PREFIXES = ["/crm/v4/objects", "/crm/objects/2026-03"]
BATCH_PREFIXES = ["/crm/v4/associations", "/crm/associations/2026-03"]
MAX_BATCH_READ = 1000
MAX_BATCH_CREATE = 2000


def _type(name: str) -> str:
    resolved = canonical_type(name)
    if resolved is None:
        raise validation(f"Unable to infer object type from: {name}")
    return resolved


def _specs(items: Any) -> list[tuple[str, int]]:
    if not isinstance(items, list) or not items:
        raise validation("At least one association type is required.")
    try:
        return [
            (str(i.get("associationCategory", "HUBSPOT_DEFINED")), int(i["associationTypeId"]))
            for i in items
        ]
    except (KeyError, TypeError, ValueError):
        raise validation(
            "Each association type needs associationCategory and associationTypeId."
        ) from None


class AssociationsApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.store = guard.store

    def routes(self) -> list[Route]:
        g = self.guard
        out: list[Route] = []
        for prefix in OBJECT_PREFIXES:
            base = prefix + "/{fromType}/{fromId}/associations"
            lb = "/crm/v4/objects/{fromType}/{fromId}/associations"
            out += [
                g.route(
                    base + "/default/{toType}/{toId}",
                    self.put_default,
                    ["PUT"],
                    label=lb + "/default/{toType}/{toId}",
                ),
                g.route(
                    base + "/{toType}/{toId}",
                    self.put_labelled,
                    ["PUT"],
                    label=lb + "/{toType}/{toId}",
                ),
                g.route(
                    base + "/{toType}/{toId}",
                    self.delete_pair,
                    ["DELETE"],
                    label=lb + "/{toType}/{toId}",
                ),
                g.route(base + "/{toType}", self.list_for, ["GET"], label=lb + "/{toType}"),
            ]
        # Legacy v3 per-object association, still used by older docs.
        out.append(
            g.route(
                "/crm/v3/objects/{fromType}/{fromId}/associations/{toType}/{toId}/{typeId}",
                self.put_legacy,
                ["PUT"],
            )
        )
        for prefix in BATCH_PREFIXES:
            base = prefix + "/{fromType}/{toType}"
            lb = "/crm/v4/associations/{fromType}/{toType}"
            out += [
                g.route(
                    base + "/batch/associate/default",
                    self.batch_default,
                    ["POST"],
                    limit=EXEMPT,
                    label=lb + "/batch/associate/default",
                ),
                g.route(
                    base + "/batch/create",
                    self.batch_create,
                    ["POST"],
                    limit=EXEMPT,
                    label=lb + "/batch/create",
                ),
                g.route(
                    base + "/batch/read",
                    self.batch_read,
                    ["POST"],
                    limit=EXEMPT,
                    label=lb + "/batch/read",
                ),
                g.route(
                    base + "/batch/archive",
                    self.batch_archive,
                    ["POST"],
                    limit=EXEMPT,
                    label=lb + "/batch/archive",
                ),
                g.route(
                    base + "/batch/labels/archive",
                    self.batch_labels_archive,
                    ["POST"],
                    limit=EXEMPT,
                    label=lb + "/batch/labels/archive",
                ),
                g.route(base + "/labels", self.list_labels, ["GET"], label=lb + "/labels"),
                g.route(base + "/labels", self.create_label, ["POST"], label=lb + "/labels"),
            ]
        return out

    def _default_spec(self, from_type: str, to_type: str) -> tuple[str, int]:
        kind = default_kind(from_type, to_type)
        if kind is None:
            raise validation(f"There is no default association between {from_type} and {to_type}.")
        return ("HUBSPOT_DEFINED", kind.type_id)

    def _default_result(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> list[dict[str, Any]]:
        kind = default_kind(from_type, to_type)
        assert kind is not None
        return [
            {
                "from": {"id": from_id},
                "to": {"id": to_id},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": kind.type_id,
                },
            },
            {
                "from": {"id": to_id},
                "to": {"id": from_id},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": kind.reverse_id,
                },
            },
        ]

    async def put_default(self, ctx: Ctx) -> Response:
        p = ctx.params
        ft, tt = _type(p["fromType"]), _type(p["toType"])
        spec = self._default_spec(ft, tt)
        self.store.associate(
            ctx.portal, ft, str(p["fromId"]), tt, str(p["toId"]), [spec], ctx.source
        )
        return batch_response(self._default_result(ft, str(p["fromId"]), tt, str(p["toId"])), [])

    async def put_labelled(self, ctx: Ctx) -> Response:
        p = ctx.params
        ft, tt = _type(p["fromType"]), _type(p["toType"])
        specs = _specs(await ctx.json())
        labels = self.store.associate(
            ctx.portal, ft, str(p["fromId"]), tt, str(p["toId"]), specs, ctx.source, replace=True
        )
        return json_response(
            {
                "fromObjectTypeId": OBJECT_TYPE_IDS[ft],
                "fromObjectId": int(p["fromId"]),
                "toObjectTypeId": OBJECT_TYPE_IDS[tt],
                "toObjectId": int(p["toId"]),
                "labels": sorted({lb for lb in labels if lb}),
            },
            201,
        )

    async def put_legacy(self, ctx: Ctx) -> Response:
        p = ctx.params
        ft, tt = _type(p["fromType"]), _type(p["toType"])
        spec = ("HUBSPOT_DEFINED", int(p["typeId"]))
        self.store.associate(
            ctx.portal, ft, str(p["fromId"]), tt, str(p["toId"]), [spec], ctx.source
        )
        record = self.store.get(ctx.portal, ft, str(p["fromId"]))
        return json_response(self.store.render(ctx.portal, record, associations=[tt]))

    async def delete_pair(self, ctx: Ctx) -> Response:
        p = ctx.params
        ft, tt = _type(p["fromType"]), _type(p["toType"])
        self.store.disassociate(ctx.portal, ft, str(p["fromId"]), tt, str(p["toId"]), ctx.source)
        return Response(status_code=204)

    def _types_of(
        self, ctx: Ctx, ft: str, tt: str, kinds: set[tuple[str, int]]
    ) -> list[dict[str, Any]]:
        out = []
        for category, type_id in sorted(kinds, key=lambda k: k[1]):
            label = None
            for k in ASSOCIATION_KINDS:
                if (k.from_type, k.to_type, k.type_id) == (
                    ft,
                    tt,
                    type_id,
                ) and category == "HUBSPOT_DEFINED":
                    label = k.label
            for custom in ctx.portal.custom_labels.get((ft, tt), []):
                if custom["typeId"] == type_id and category == "USER_DEFINED":
                    label = custom["label"]
            out.append({"category": category, "typeId": type_id, "label": label})
        return out

    def _page(
        self, ctx: Ctx, ft: str, fid: str, tt: str, after: str | None, limit: int
    ) -> dict[str, Any]:
        pairs = self.store.associations_of(ctx.portal, ft, fid, tt)
        start = int(after) if after and after.isdigit() else 0
        chunk = pairs[start : start + limit]
        body: dict[str, Any] = {
            "results": [
                {"toObjectId": int(to_id), "associationTypes": self._types_of(ctx, ft, tt, kinds)}
                for to_id, kinds in chunk
            ]
        }
        if start + limit < len(pairs):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return body

    async def list_for(self, ctx: Ctx) -> Response:
        p = ctx.params
        ft, tt = _type(p["fromType"]), _type(p["toType"])
        self.store.get(ctx.portal, ft, str(p["fromId"]))
        q = ctx.request.query_params
        limit = min(int(q.get("limit", "500")), 500)
        return json_response(self._page(ctx, ft, str(p["fromId"]), tt, q.get("after"), limit))

    async def batch_default(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        spec = self._default_spec(ft, tt)
        results, errors = [], []
        for item in inputs_of(await ctx.json(), MAX_BATCH_CREATE):
            fid, tid = str(item["from"]["id"]), str(item["to"]["id"])
            try:
                self.store.associate(ctx.portal, ft, fid, tt, tid, [spec], ctx.source)
            except ApiError as exc:
                errors.append(exc.standard_error({"from": [fid], "to": [tid]}))
                continue
            results.extend(self._default_result(ft, fid, tt, tid))
        return batch_response(results, errors)

    async def batch_create(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        results, errors = [], []
        for item in inputs_of(await ctx.json(), MAX_BATCH_CREATE):
            fid, tid = str(item["from"]["id"]), str(item["to"]["id"])
            try:
                labels = self.store.associate(
                    ctx.portal,
                    ft,
                    fid,
                    tt,
                    tid,
                    _specs(item.get("types")),
                    ctx.source,
                    replace=True,
                )
            except ApiError as exc:
                errors.append(exc.standard_error({"from": [fid], "to": [tid]}))
                continue
            results.append(
                {
                    "fromObjectTypeId": OBJECT_TYPE_IDS[ft],
                    "fromObjectId": int(fid),
                    "toObjectTypeId": OBJECT_TYPE_IDS[tt],
                    "toObjectId": int(tid),
                    "labels": sorted({lb for lb in labels if lb}),
                }
            )
        return batch_response(results, errors, 201)

    async def batch_read(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        results, errors = [], []
        for item in inputs_of(await ctx.json(), MAX_BATCH_READ):
            fid = str(item.get("id", ""))
            if self.store.find(ctx.portal, ft, fid) is None:
                errors.append(
                    ApiError(404, "OBJECT_NOT_FOUND", f"No {ft} with id {fid}").standard_error(
                        {"fromObjectId": [fid]}
                    )
                )
                continue
            page = self._page(ctx, ft, fid, tt, item.get("after"), 500)
            entry: dict[str, Any] = {"from": {"id": fid}, "to": page["results"]}
            if "paging" in page:
                entry["paging"] = page["paging"]
            results.append(entry)
        return batch_response(results, errors)

    async def batch_archive(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        for item in inputs_of(await ctx.json(), MAX_BATCH_CREATE):
            fid = str(item["from"]["id"])
            for to in item.get("to") or []:
                self.store.disassociate(ctx.portal, ft, fid, tt, str(to["id"]), ctx.source)
        return Response(status_code=204)

    async def batch_labels_archive(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        for item in inputs_of(await ctx.json(), MAX_BATCH_CREATE):
            fid, tid = str(item["from"]["id"]), str(item["to"]["id"])
            only = set(_specs(item.get("types")))
            self.store.disassociate(ctx.portal, ft, fid, tt, tid, ctx.source, only=only)
        return Response(status_code=204)

    async def list_labels(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        results = [
            {"category": "HUBSPOT_DEFINED", "typeId": k.type_id, "label": k.label}
            for k in ASSOCIATION_KINDS
            if k.from_type == ft and k.to_type == tt
        ]
        results += [
            {"category": "USER_DEFINED", "typeId": c["typeId"], "label": c["label"]}
            for c in ctx.portal.custom_labels.get((ft, tt), [])
        ]
        return json_response({"results": results})

    async def create_label(self, ctx: Ctx) -> Response:
        ft, tt = _type(ctx.params["fromType"]), _type(ctx.params["toType"])
        body = await ctx.json()
        if not body.get("name") or not body.get("label"):
            raise validation("A label needs a name and a label.")
        existing = ctx.portal.custom_labels.setdefault((ft, tt), [])
        if len(existing) >= 10:
            raise validation("At most 10 custom labels per object pair.")
        used = [c["typeId"] for labels in ctx.portal.custom_labels.values() for c in labels]
        forward = max([1000, *used]) + 1
        reverse = forward + 1
        inverse = str(body.get("inverseLabel") or body["label"])
        existing.append({"typeId": forward, "inverseTypeId": reverse, "label": str(body["label"])})
        if ft != tt or body.get("inverseLabel"):
            ctx.portal.custom_labels.setdefault((tt, ft), []).append(
                {"typeId": reverse, "inverseTypeId": forward, "label": inverse}
            )
        return json_response(
            {
                "results": [
                    {"category": "USER_DEFINED", "typeId": forward, "label": str(body["label"])},
                    {"category": "USER_DEFINED", "typeId": reverse, "label": inverse},
                ]
            }
        )
