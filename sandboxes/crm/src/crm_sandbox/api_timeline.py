"""Timeline events v3: templates per app with typed tokens, idempotent events by `id`."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.api_objects import batch_response, inputs_of
from crm_sandbox.errors import ApiError, conflict, not_found, validation
from crm_sandbox.guard import Ctx, Guard, json_response, read_json
from crm_sandbox.schema import canonical_type
from crm_sandbox.state import EventTemplate, Portal, iso, now_ms
from crm_sandbox.store import Source, Store

# The legacy API has no date-versioned form: /integrators/timeline/2026-03 is the app events
# API (api_app_events).
PREFIXES = ["/integrators/timeline/v3", "/crm/v3/timeline"]
TOKEN_TYPES = {"string", "number", "date", "enumeration"}
TOKEN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
TEMPLATE_OBJECT_TYPES = {"contacts", "companies", "deals", "tickets"}
MAX_TEMPLATES = 750
MAX_TOKENS = 500


def _check_tokens(tokens: Any) -> list[dict[str, Any]]:
    if not isinstance(tokens, list):
        raise validation("tokens must be a list")
    if len(tokens) > MAX_TOKENS:
        raise validation(f"A template can have at most {MAX_TOKENS} tokens.")
    for token in tokens:
        name = str(token.get("name", ""))
        if not TOKEN_NAME.match(name) or name in {"log", "lookup"}:
            raise validation(f"Invalid token name {name!r}")
        if token.get("type") not in TOKEN_TYPES:
            raise validation(f"Invalid token type {token.get('type')!r} for {name}")
        if token["type"] == "enumeration" and not token.get("options"):
            raise validation(f"Enumeration token {name} needs options")
    return list(tokens)


class TimelineApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.state = guard.state
        self.store: Store = guard.store

    def routes(self) -> list[Route]:
        g = self.guard
        out: list[Route] = []
        for prefix in PREFIXES:
            templates = prefix + "/{appId}/event-templates"
            lb = "/integrators/timeline/v3"
            out += [
                g.route(
                    prefix + "/events/batch/create",
                    self.batch_create,
                    ["POST"],
                    oauth_only=True,
                    scope="timeline",
                    label=lb + "/events/batch/create",
                ),
                g.route(
                    prefix + "/events",
                    self.create,
                    ["POST"],
                    oauth_only=True,
                    scope="timeline",
                    label=lb + "/events",
                ),
                g.route(
                    prefix + "/events/{templateId}/{eventId}",
                    self.read,
                    ["GET"],
                    label=lb + "/events/{templateId}/{eventId}",
                ),
                g.developer_route(templates, self.list_templates, ["GET"]),
                g.developer_route(templates, self.create_template, ["POST"]),
                g.developer_route(templates + "/{templateId}", self.read_template, ["GET"]),
                g.developer_route(templates + "/{templateId}", self.update_template, ["PUT"]),
                g.developer_route(templates + "/{templateId}", self.delete_template, ["DELETE"]),
                g.developer_route(templates + "/{templateId}/tokens", self.add_token, ["POST"]),
            ]
        return out

    # ---- templates (app level, developer key) ---------------------------------------------

    def add_template(self, body: dict[str, Any]) -> EventTemplate:
        for key in ("name", "objectType", "tokens"):
            if key not in body:
                raise validation(f"{key} is required")
        object_type = (
            canonical_type(str(body["objectType"]).lower()) or str(body["objectType"]).lower()
        )
        if object_type not in TEMPLATE_OBJECT_TYPES:
            raise validation(
                f"objectType {body['objectType']} is not supported for timeline events"
            )
        if len(self.state.app.templates) >= MAX_TEMPLATES:
            raise validation(f"An app can have at most {MAX_TEMPLATES} event templates.")
        template = EventTemplate(
            id=self.state.new_template_id(),
            name=str(body["name"]),
            object_type=object_type,
            tokens=_check_tokens(body["tokens"]),
            header_template=str(body.get("headerTemplate", "")),
            detail_template=str(body.get("detailTemplate", "")),
        )
        self.state.app.templates[template.id] = template
        return template

    def _template(self, template_id: str) -> EventTemplate:
        template = self.state.app.templates.get(str(template_id))
        if template is None:
            raise not_found(f"Event template {template_id} not found")
        return template

    async def list_templates(self, request: Request) -> Response:
        return json_response({"results": [t.to_api() for t in self.state.app.templates.values()]})

    async def create_template(self, request: Request) -> Response:
        return json_response(self.add_template(await read_json(request)).to_api(), 201)

    async def read_template(self, request: Request) -> Response:
        return json_response(self._template(request.path_params["templateId"]).to_api())

    async def update_template(self, request: Request) -> Response:
        template = self._template(request.path_params["templateId"])
        body = await read_json(request)
        template.name = str(body.get("name", template.name))
        template.header_template = str(body.get("headerTemplate", template.header_template))
        template.detail_template = str(body.get("detailTemplate", template.detail_template))
        if "tokens" in body:
            template.tokens = _check_tokens(body["tokens"])
        return json_response(template.to_api())

    async def delete_template(self, request: Request) -> Response:
        template = self._template(request.path_params["templateId"])
        del self.state.app.templates[template.id]
        for portal in self.state.portals.values():
            # Deleting a template also removes its events.
            for key in [k for k in portal.timeline if k[0] == template.id]:
                del portal.timeline[key]
        return Response(status_code=204)

    async def add_token(self, request: Request) -> Response:
        template = self._template(request.path_params["templateId"])
        token = _check_tokens([await read_json(request)])[0]
        template.tokens = [t for t in template.tokens if t["name"] != token["name"]] + [token]
        return json_response(token)

    # ---- events (portal level, OAuth token) -------------------------------------------------

    def _validate_event(
        self, portal: Portal, body: dict[str, Any]
    ) -> tuple[EventTemplate, str, str]:
        if not isinstance(body, dict) or "eventTemplateId" not in body or "tokens" not in body:
            raise validation("eventTemplateId and tokens are required")
        template = self._template(str(body["eventTemplateId"]))
        declared = {t["name"]: t for t in template.tokens}
        tokens = body.get("tokens") or {}
        for name, value in tokens.items():
            spec = declared.get(name)
            if spec is None:
                raise validation(f"Token {name} is not defined on template {template.id}")
            text = str(value)
            if spec["type"] == "number":
                try:
                    Decimal(text)
                except InvalidOperation:
                    raise validation(f"Token {name} must be a number, was {text!r}") from None
            elif spec["type"] == "date" and not text.isdigit():
                raise validation(f"Token {name} must be epoch milliseconds, was {text!r}")
            elif spec["type"] == "enumeration":
                allowed = {str(o.get("value")) for o in spec.get("options") or []}
                if text not in allowed:
                    raise validation(f"Token {name}: {text!r} is not one of {sorted(allowed)}")
        object_id = body.get("objectId")
        if object_id is None and template.object_type == "contacts" and body.get("email"):
            found = self.store.find(portal, "contacts", str(body["email"]), id_property="email")
            if found is None:
                found = self.store.create(
                    portal, "contacts", {"email": body["email"]}, self._source(portal)
                )
            object_id = found.id
        if object_id is None:
            raise validation("objectId is required")
        if template.object_type in portal.records:
            self.store.get(portal, template.object_type, str(object_id))
        event_id = str(body.get("id") or uuid.uuid4())
        event_id = event_id.replace("{{uuid}}", str(uuid.uuid4()))
        return template, str(object_id), event_id

    def _source(self, portal: Portal) -> Source:
        return Source("INTEGRATION", str(self.state.app.id))

    def _put_event(self, portal: Portal, body: dict[str, Any]) -> dict[str, Any]:
        template, object_id, event_id = self._validate_event(portal, body)
        key = (template.id, event_id)
        if key in portal.timeline and self.state.config.timeline_duplicate == "conflict":
            raise conflict(
                f"An event with id {event_id} already exists for template {template.id}."
            )
        ts = body.get("timestamp")
        timestamp = (
            iso(int(ts))
            if isinstance(ts, int | str) and str(ts).isdigit()
            else (ts or iso(now_ms()))
        )
        event = {
            "id": event_id,
            "eventTemplateId": template.id,
            "objectId": object_id,
            "objectType": template.object_type,
            "tokens": {k: str(v) for k, v in (body.get("tokens") or {}).items()},
            "timestamp": timestamp,
            "createdAt": iso(now_ms()),
        }
        for optional in ("extraData", "timelineIFrame", "domain", "utk", "email"):
            if optional in body:
                event[optional] = body[optional]
        # Same id again: last write wins and there is still exactly one event.
        portal.timeline[key] = event
        return event

    async def create(self, ctx: Ctx) -> Response:
        return json_response(self._put_event(ctx.portal, await ctx.json()), 201)

    async def batch_create(self, ctx: Ctx) -> Response:
        results, errors = [], []
        for item in inputs_of(await ctx.json()):
            try:
                results.append(self._put_event(ctx.portal, item))
            except ApiError as exc:
                errors.append(exc.standard_error({"id": [str(item.get("id"))]}))
        return batch_response(results, errors, 201)

    async def read(self, ctx: Ctx) -> Response:
        event = ctx.portal.timeline.get((str(ctx.params["templateId"]), str(ctx.params["eventId"])))
        if event is None:
            raise not_found("Timeline event not found")
        return json_response(event)
