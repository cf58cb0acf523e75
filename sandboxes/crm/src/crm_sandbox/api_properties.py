"""Properties API: property groups and custom properties with type/fieldType validation."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.api_objects import batch_response, inputs_of, object_type
from crm_sandbox.errors import ApiError, conflict, not_found, validation
from crm_sandbox.guard import Ctx, Guard, json_response, scopes_by_object_type
from crm_sandbox.schema import VALID_FIELD_TYPES, PropertyDef
from crm_sandbox.state import Portal, iso, now_ms

PREFIXES = ["/crm/v3/properties", "/crm/properties/2026-03"]
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_UNIQUE = 10
BUILTIN_GROUPS = {
    "contacts": "contactinformation",
    "companies": "companyinformation",
    "deals": "dealinformation",
    "products": "productinformation",
    "line_items": "lineiteminformation",
    "quotes": "quoteinformation",
}

# The scopes of which a properties or property-groups call needs one, by object type (HubSpot's
# OpenAPI spec of the properties API, per operation). Writing needs the type's schema scope;
# products and line items have none, `e-commerce` stands for it. Reading also takes the type's
# object scopes. Types not listed are not checked.
SCHEMA_WRITE_SCOPES: dict[str, list[str]] = {
    "contacts": ["crm.schemas.contacts.write"],
    "companies": ["crm.schemas.companies.write"],
    "deals": ["crm.schemas.deals.write"],
    "quotes": ["crm.schemas.quotes.write"],
    "products": ["e-commerce"],
    "line_items": ["e-commerce"],
}
SCHEMA_READ_SCOPES: dict[str, list[str]] = {
    "contacts": [
        "crm.schemas.contacts.read",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
    ],
    "companies": [
        "crm.schemas.companies.read",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
    ],
    "deals": ["crm.schemas.deals.read", "crm.objects.deals.read", "crm.objects.deals.write"],
    "quotes": ["crm.schemas.quotes.read", "crm.objects.quotes.read", "crm.objects.quotes.write"],
    "products": ["e-commerce", "crm.objects.products.write"],
    "line_items": [
        "crm.schemas.line_items.read",
        "crm.objects.line_items.read",
        "crm.objects.line_items.write",
        "e-commerce",
    ],
}


READ = scopes_by_object_type(SCHEMA_READ_SCOPES)
WRITE = scopes_by_object_type(SCHEMA_WRITE_SCOPES)


def _groups(portal: Portal, type_name: str) -> dict[str, dict[str, Any]]:
    groups = portal.groups[type_name]
    builtin = BUILTIN_GROUPS[type_name]
    if builtin not in groups:
        groups[builtin] = {
            "name": builtin,
            "label": builtin.replace("information", " information").title(),
            "displayOrder": 0,
            "archived": False,
        }
    return groups


def build_property(portal: Portal, type_name: str, body: dict[str, Any]) -> PropertyDef:
    """Validate a PropertyCreate body the way HubSpot does; raise 400/409."""
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise validation(f"Missing required fields: {', '.join(missing)}")
    name = str(body["name"])
    type_ = str(body["type"])
    field_type = str(body["fieldType"])
    if not NAME.match(name):
        raise validation(
            f"Property name {name!r} must start with a lower-case letter and contain only "
            "lower-case letters, digits and underscores."
        )
    if type_ not in VALID_FIELD_TYPES:
        raise validation(f"Invalid type {type_!r}; expected one of {sorted(VALID_FIELD_TYPES)}")
    if field_type not in VALID_FIELD_TYPES[type_]:
        raise validation(
            f"fieldType {field_type!r} is not valid for type {type_!r}; expected one of "
            f"{sorted(VALID_FIELD_TYPES[type_])}",
            sub_category="INVALID_FIELD_TYPE",
        )
    options = body.get("options") or []
    if type_ == "enumeration" and field_type != "booleancheckbox" and not options:
        raise validation("Enumeration properties need at least one option.")
    for option in options:
        if "label" not in option or "value" not in option:
            raise validation("Each option needs a label and a value.")
    existing = portal.properties[type_name].get(name)
    if existing is not None and not existing.archived:
        raise conflict(f"Property with name {name!r} already exists.")
    if str(body["groupName"]) not in _groups(portal, type_name):
        raise validation(f"Property group {body['groupName']!r} does not exist.")
    unique = bool(body.get("hasUniqueValue"))
    if unique:
        count = sum(1 for p in portal.properties[type_name].values() if p.has_unique_value)
        if count >= MAX_UNIQUE:
            raise validation(f"An object can have at most {MAX_UNIQUE} unique-value properties.")
    ts = iso(now_ms())
    extra: dict[str, Any] = {
        k: body[k]
        for k in ("numberDisplayHint", "showCurrencySymbol", "textDisplayHint", "dataSensitivity")
        if k in body
    }
    return PropertyDef(
        name=name,
        type=type_,
        field_type=field_type,
        label=str(body["label"]),
        group_name=str(body["groupName"]),
        description=str(body.get("description", "")),
        options=list(options),
        has_unique_value=unique,
        hubspot_defined=False,
        hidden=bool(body.get("hidden", False)),
        display_order=int(body.get("displayOrder", -1)),
        created_at=ts,
        updated_at=ts,
        extra=extra,
    )


class PropertiesApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def routes(self) -> list[Route]:
        g = self.guard
        out: list[Route] = []
        for prefix in PREFIXES:
            base = prefix + "/{objectType}"
            lb = "/crm/v3/properties/{objectType}"
            out += [
                g.route(
                    base + "/groups", self.list_groups, ["GET"], scope=READ, label=lb + "/groups"
                ),
                g.route(
                    base + "/groups",
                    self.create_group,
                    ["POST"],
                    scope=WRITE,
                    label=lb + "/groups",
                ),
                g.route(
                    base + "/groups/{name}",
                    self.read_group,
                    ["GET"],
                    scope=READ,
                    label=lb + "/groups/{name}",
                ),
                g.route(
                    base + "/groups/{name}",
                    self.update_group,
                    ["PATCH"],
                    scope=WRITE,
                    label=lb + "/groups/{name}",
                ),
                g.route(
                    base + "/groups/{name}",
                    self.archive_group,
                    ["DELETE"],
                    scope=WRITE,
                    label=lb + "/groups/{name}",
                ),
                g.route(
                    base + "/batch/create",
                    self.batch_create,
                    ["POST"],
                    scope=WRITE,
                    label=lb + "/batch/create",
                ),
                g.route(
                    base + "/batch/read",
                    self.batch_read,
                    ["POST"],
                    scope=READ,
                    label=lb + "/batch/read",
                ),
                g.route(
                    base + "/batch/archive",
                    self.batch_archive,
                    ["POST"],
                    scope=WRITE,
                    label=lb + "/batch/archive",
                ),
                g.route(base, self.list_records, ["GET"], scope=READ, label=lb),
                g.route(base, self.create, ["POST"], scope=WRITE, label=lb),
                g.route(base + "/{name}", self.read, ["GET"], scope=READ, label=lb + "/{name}"),
                g.route(
                    base + "/{name}", self.update, ["PATCH"], scope=WRITE, label=lb + "/{name}"
                ),
                g.route(
                    base + "/{name}", self.archive, ["DELETE"], scope=WRITE, label=lb + "/{name}"
                ),
            ]
        return out

    def _get(self, ctx: Ctx) -> PropertyDef:
        prop = ctx.portal.properties[object_type(ctx)].get(str(ctx.params["name"]))
        if prop is None or prop.archived:
            raise not_found(f"Property {ctx.params['name']} does not exist")
        return prop

    async def list_records(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        archived = ctx.query_bool("archived")
        props = [
            p.to_api() for p in ctx.portal.properties[type_name].values() if p.archived == archived
        ]
        return json_response({"results": props})

    async def create(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        prop = build_property(ctx.portal, type_name, await ctx.json())
        ctx.portal.properties[type_name][prop.name] = prop
        return json_response(prop.to_api(), 201)

    async def read(self, ctx: Ctx) -> Response:
        return json_response(self._get(ctx).to_api())

    async def update(self, ctx: Ctx) -> Response:
        prop = self._get(ctx)
        body = await ctx.json()
        if prop.hubspot_defined:
            raise validation(f"{prop.name} is a HubSpot-defined property and cannot be changed.")
        if "hasUniqueValue" in body and bool(body["hasUniqueValue"]) != prop.has_unique_value:
            raise validation("hasUniqueValue cannot be changed once set.")
        if "type" in body or "fieldType" in body:
            type_ = str(body.get("type", prop.type))
            field_type = str(body.get("fieldType", prop.field_type))
            if field_type not in VALID_FIELD_TYPES.get(type_, set()):
                raise validation(f"fieldType {field_type!r} is not valid for type {type_!r}")
            prop.type, prop.field_type = type_, field_type
        for key, attr in (
            ("label", "label"),
            ("description", "description"),
            ("groupName", "group_name"),
        ):
            if key in body:
                setattr(prop, attr, str(body[key]))
        if "options" in body:
            prop.options = list(body["options"])
        if "hidden" in body:
            prop.hidden = bool(body["hidden"])
        prop.updated_at = iso(now_ms())
        return json_response(prop.to_api())

    async def archive(self, ctx: Ctx) -> Response:
        prop = self._get(ctx)
        if prop.hubspot_defined:
            raise validation(f"{prop.name} is a HubSpot-defined property and cannot be archived.")
        prop.archived = True
        return Response(status_code=204)

    async def batch_create(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        results, errors = [], []
        for item in inputs_of(await ctx.json()):
            try:
                prop = build_property(ctx.portal, type_name, item)
            except ApiError as exc:
                errors.append(exc.standard_error({"name": [str(item.get("name"))]}))
                continue
            ctx.portal.properties[type_name][prop.name] = prop
            results.append(prop.to_api())
        return batch_response(results, errors, 201)

    async def batch_read(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        results, missing = [], []
        for item in inputs_of(await ctx.json()):
            prop = ctx.portal.properties[type_name].get(str(item.get("name")))
            if prop is None or prop.archived:
                missing.append(str(item.get("name")))
            else:
                results.append(prop.to_api())
        errors = (
            [not_found("Some properties do not exist").standard_error({"names": missing})]
            if missing
            else []
        )
        return batch_response(results, errors)

    async def batch_archive(self, ctx: Ctx) -> Response:
        type_name = object_type(ctx)
        for item in inputs_of(await ctx.json()):
            prop = ctx.portal.properties[type_name].get(str(item.get("name")))
            if prop is not None and not prop.hubspot_defined:
                prop.archived = True
        return Response(status_code=204)

    async def list_groups(self, ctx: Ctx) -> Response:
        groups = _groups(ctx.portal, object_type(ctx))
        return json_response({"results": [g for g in groups.values() if not g["archived"]]})

    async def create_group(self, ctx: Ctx) -> Response:
        groups = _groups(ctx.portal, object_type(ctx))
        body = await ctx.json()
        name, label = body.get("name"), body.get("label")
        if not name or not label:
            raise validation("A property group needs a name and a label.")
        if not NAME.match(str(name)):
            raise validation(
                f"Group name {name!r} must be lower-case letters, digits and underscores."
            )
        if name in groups and not groups[name]["archived"]:
            raise conflict(f"Property group with name {name!r} already exists.")
        group = {
            "name": str(name),
            "label": str(label),
            "displayOrder": int(body.get("displayOrder", -1)),
            "archived": False,
        }
        groups[str(name)] = group
        return json_response(group, 201)

    def _group(self, ctx: Ctx) -> dict[str, Any]:
        group = _groups(ctx.portal, object_type(ctx)).get(str(ctx.params["name"]))
        if group is None or group["archived"]:
            raise not_found(f"Property group {ctx.params['name']} does not exist")
        return group

    async def read_group(self, ctx: Ctx) -> Response:
        return json_response(self._group(ctx))

    async def update_group(self, ctx: Ctx) -> Response:
        group = self._group(ctx)
        body = await ctx.json()
        for key in ("label", "displayOrder"):
            if key in body:
                group[key] = body[key]
        return json_response(group)

    async def archive_group(self, ctx: Ctx) -> Response:
        self._group(ctx)["archived"] = True
        return Response(status_code=204)
