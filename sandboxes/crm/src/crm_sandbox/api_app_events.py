"""App events (timeline v4): event types an app's project defines in `app-events/*-hsmeta.json`,
and their occurrences sent to `POST /integrators/timeline/v4/events` (single) and
`.../events/batch` (many), also under the date-versioned `/integrators/timeline/2026-03`.

HubSpot answers a single occurrence with no body and a batch with a batch response; an
occurrence must match its event type's schema, names a record of the type's object type, and
is immutable. Whether the app's app events are approved is set per portal (control API).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.api_objects import batch_response, inputs_of
from crm_sandbox.errors import ApiError, conflict, not_found, validation
from crm_sandbox.guard import Ctx, Guard
from crm_sandbox.state import AppEventType, Portal, SandboxState, iso, now_ms
from crm_sandbox.store import Source, Store

PREFIXES = ["/integrators/timeline/v4", "/integrators/timeline/2026-03"]
# The object types an event type may name (the reference's list), as record types here.
OBJECT_TYPES = {"CONTACT": "contacts", "COMPANY": "companies", "DEAL": "deals", "TICKET": "tickets"}
# Property types: the docs show string and enumeration; the others are assumed.
PROPERTY_TYPES = {"string", "number", "enumeration", "bool", "date", "datetime"}
MAX_EVENT_TYPES = 750
MAX_PROPERTIES = 500
MAX_NAME = 50
MAX_HEADER = 1_000
MAX_DETAIL = 10_000
MAX_BATCH = 100  # not documented for app events; the CRM's usual batch size
APP_EVENTS_DIR = Path("hubspot-app/src/app/app-events")


# ---- event types ---------------------------------------------------------------------------


def _check_property(prop: Any) -> dict[str, Any]:
    if not isinstance(prop, dict) or not prop.get("name") or not prop.get("label"):
        raise validation("Each event type property needs a name and a label.")
    kind = prop.get("type")
    if kind not in PROPERTY_TYPES:
        raise validation(f"Property {prop['name']}: type {kind!r} is not supported.")
    if kind == "enumeration" and not prop.get("options"):
        raise validation(f"Enumeration property {prop['name']} needs options.")
    return dict(prop)


def event_type_from_hsmeta(body: Any, app_id: int) -> AppEventType:
    """An event type from the JSON of an `app-events/*-hsmeta.json` file, validated as a
    project build would (required fields, lengths, object types, property types)."""
    if not isinstance(body, dict) or not body.get("uid"):
        raise validation("An app event definition needs a uid.")
    if body.get("type") != "app-event":
        raise validation(f"{body['uid']}: type must be app-event.")
    config = body.get("config")
    if not isinstance(config, dict):
        raise validation(f"{body['uid']}: config is required.")
    name = str(config.get("name") or "")
    if not name or len(name) > MAX_NAME:
        raise validation(f"{body['uid']}: name is required, at most {MAX_NAME} characters.")
    if config.get("supportsCustomObject"):
        raise validation("Event types for custom objects are not emulated.")
    object_type = OBJECT_TYPES.get(str(config.get("objectType", "")).upper())
    if object_type is None:
        raise validation(f"{body['uid']}: objectType must be one of {sorted(OBJECT_TYPES)}.")
    header = str(config.get("headerTemplate") or "")
    detail = str(config.get("detailTemplate") or "")
    if len(header) > MAX_HEADER or len(detail) > MAX_DETAIL:
        raise validation(f"{body['uid']}: a template is longer than allowed.")
    props = config.get("properties") or []
    if not isinstance(props, list) or len(props) > MAX_PROPERTIES:
        raise validation(f"{body['uid']}: at most {MAX_PROPERTIES} properties, as a list.")
    checked = [_check_property(p) for p in props]
    uid = str(body["uid"])
    return AppEventType(
        uid=uid,
        name=name,
        object_type=object_type,
        properties={p["name"]: p for p in checked},
        # HubSpot's format for this name is not documented beyond an example; ours is stable.
        fully_qualified_name=f"ae{app_id}_{uid}",
        header_template=header,
        detail_template=detail,
    )


def register_event_type(state: SandboxState, body: Any) -> AppEventType:
    """Add (or deploy again) an event type; its name and object type cannot change."""
    event_type = event_type_from_hsmeta(body, state.app.id)
    known = state.app.event_types.get(event_type.uid)
    if known is not None and (known.name, known.object_type) != (
        event_type.name,
        event_type.object_type,
    ):
        raise validation(f"{event_type.uid}: name and objectType cannot change after creation.")
    if known is None and len(state.app.event_types) >= MAX_EVENT_TYPES:
        raise validation(f"An app can have at most {MAX_EVENT_TYPES} event types.")
    state.app.event_types[event_type.uid] = event_type
    return event_type


def find_app_events_dir(*starts: Path) -> Path | None:
    """The app project's `app-events` folder of the checkout a start path is in, if any."""
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / APP_EVENTS_DIR
            if candidate.is_dir():
                return candidate
    return None


def load_event_types(state: SandboxState, folder: Path) -> list[AppEventType]:
    """Deploy every `*-hsmeta.json` of an `app-events` folder, as `hs project upload` does."""
    return [
        register_event_type(state, json.loads(path.read_text()))
        for path in sorted(folder.glob("*-hsmeta.json"))
    ]


# ---- occurrences ---------------------------------------------------------------------------


def _property_value(spec: dict[str, Any], value: Any) -> str:
    name, kind = spec["name"], spec["type"]
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "number":
        try:
            if not Decimal(text).is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise validation(f"Property {name} must be a number, was {text!r}.") from None
    elif kind == "enumeration":
        allowed = {str(o.get("value")) for o in spec.get("options") or []}
        if text not in allowed:
            raise validation(f"Property {name}: {text!r} is not one of {sorted(allowed)}.")
    elif kind == "bool" and text not in {"true", "false"}:
        raise validation(f"Property {name} must be true or false, was {text!r}.")
    elif kind in {"date", "datetime"} and not text.isdigit():
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise validation(f"Property {name} must be a date, was {text!r}.") from None
    return text


def _timestamp(raw: Any) -> str:
    if raw is None:
        return iso(now_ms())
    try:
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise validation(f"timestamp must be ISO 8601, was {raw!r}.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso(int(parsed.timestamp() * 1000))


class AppEventsApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.state = guard.state
        self.store: Store = guard.store

    def routes(self) -> list[Route]:
        g = self.guard
        label = "/integrators/timeline/v4/events"
        out: list[Route] = []
        for prefix in PREFIXES:
            out += [
                g.route(
                    prefix + "/events/batch",
                    self.batch_create,
                    ["POST"],
                    oauth_only=True,
                    scope="timeline",
                    label=label + "/batch",
                ),
                g.route(
                    prefix + "/events",
                    self.create,
                    ["POST"],
                    oauth_only=True,
                    scope="timeline",
                    label=label,
                ),
            ]
        return out

    def _approved(self, portal: Portal) -> None:
        if not portal.app_events_approved:
            # HubSpot says app events need its approval and that other requests fail; the
            # exact answer is not documented.
            raise ApiError(
                403,
                "FORBIDDEN",
                "This app is not approved to send app events. Apply for app events access "
                "in your developer account.",
            )

    def _event_type(self, name: Any) -> AppEventType:
        if not name:
            raise validation("eventTypeName is required.")
        for event_type in self.state.app.event_types.values():
            if str(name) in event_type.names():
                return event_type
        raise not_found(f"Event type {name} was not found for this app.")

    def _object_id(self, portal: Portal, event_type: AppEventType, body: dict[str, Any]) -> str:
        if body.get("objectTypeFullyQualifiedName"):
            raise validation(
                "objectTypeFullyQualifiedName is only for event types of custom objects."
            )
        if event_type.object_type not in portal.records:
            raise validation(f"Occurrences on {event_type.object_type} are not emulated.")
        object_id = body.get("objectId")
        if object_id is None and event_type.object_type == "contacts" and body.get("email"):
            found = self.store.find(portal, "contacts", str(body["email"]), id_property="email")
            if found is None:
                source = Source("INTEGRATION", str(self.state.app.id))
                found = self.store.create(portal, "contacts", {"email": body["email"]}, source)
            object_id = found.id
        if object_id is None:
            raise validation("objectId is required.")
        return self.store.get(portal, event_type.object_type, str(object_id)).id

    def put(self, portal: Portal, body: Any) -> dict[str, Any] | None:
        """Store one occurrence; None when its id was seen before and duplicates are ignored."""
        if not isinstance(body, dict):
            raise validation("An occurrence must be a JSON object.")
        event_type = self._event_type(body.get("eventTypeName"))
        if not body.get("id"):
            raise validation("id is required.")
        object_id = self._object_id(portal, event_type, body)
        raw = body.get("properties") or {}
        if not isinstance(raw, dict):
            raise validation("properties must be an object.")
        unknown = sorted(set(raw) - set(event_type.properties))
        if unknown:
            raise validation(
                f"Properties {unknown} are not defined on event type {event_type.uid}."
            )
        properties = {k: _property_value(event_type.properties[k], v) for k, v in raw.items()}
        timestamp = _timestamp(body.get("timestamp"))
        occurrence_id = str(body["id"]).replace("{{uuid}}", str(uuid.uuid4()))
        key = (event_type.uid, occurrence_id)
        if key in portal.app_events:
            if self.state.config.app_event_duplicate == "ignore":
                return None
            raise conflict(
                f"An occurrence with id {occurrence_id} already exists for event type "
                f"{event_type.uid}; occurrences cannot be changed."
            )
        occurrence: dict[str, Any] = {
            "id": occurrence_id,
            "eventTypeName": str(body["eventTypeName"]),
            "eventTypeUid": event_type.uid,
            "objectId": object_id,
            "objectType": event_type.object_type,
            "properties": properties,
            "timestamp": timestamp,
            "createdAt": iso(now_ms()),
        }
        for optional in ("extraData", "timelineIFrame", "domain", "utk", "email"):
            if optional in body:
                occurrence[optional] = body[optional]
        portal.app_events[key] = occurrence
        return occurrence

    async def create(self, ctx: Ctx) -> Response:
        self._approved(ctx.portal)
        self.put(ctx.portal, await ctx.json())
        return Response(status_code=204)

    async def batch_create(self, ctx: Ctx) -> Response:
        self._approved(ctx.portal)
        results, errors = [], []
        for item in inputs_of(await ctx.json(), MAX_BATCH):
            try:
                stored = self.put(ctx.portal, item)
            except ApiError as exc:
                errors.append(exc.standard_error({"id": [str(item.get("id"))]}))
                continue
            if stored is not None:
                results.append(stored)
        return batch_response(results, errors, 201)


def as_timeline_entry(occurrence: dict[str, Any]) -> dict[str, Any]:
    """An occurrence as the control API lists it beside v3 events: its properties also under
    `tokens`, the name v3 events give their values, so one reader covers both."""
    return {**occurrence, "tokens": dict(occurrence["properties"])}
