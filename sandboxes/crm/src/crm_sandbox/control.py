"""Control API under /_sandbox: portals, users and tokens, installs and the consent screen,
the app's secret and webhook target, signed requests to the app, objects changed "as a CRM
user" (so webhooks fire), faults, counters and assertions."""

from __future__ import annotations

import json
import secrets
import time
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_sandbox.api_app import AppApi
from crm_sandbox.api_app_events import as_timeline_entry, register_event_type
from crm_sandbox.api_objects import create_with_associations
from crm_sandbox.api_timeline import TimelineApi
from crm_sandbox.app_requests import AppRequests
from crm_sandbox.errors import ApiError, not_found, validation
from crm_sandbox.guard import read_json
from crm_sandbox.installs import Installs
from crm_sandbox.schema import canonical_type, default_kind
from crm_sandbox.state import DEFAULT_SCOPES, Counters, Fault, Portal, SandboxState, Token
from crm_sandbox.store import USER, Store
from crm_sandbox.webhooks import WebhookSender

FAULT_KINDS = {"latency", "status", "rate_limit", "drop_webhooks", "fail_webhooks"}


def _portal_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    mapping = {
        "portalId": "portal_id",
        "companyCurrency": "company_currency",
        "additionalCurrencies": "additional_currencies",
        "timeZone": "time_zone",
        "limitPer10s": "limit_per_window",
        "dailyLimit": "daily_limit",
        "searchPerSecond": "search_per_second",
        "appEventsApproved": "app_events_approved",
    }
    for key, attr in mapping.items():
        if body.get(key) is not None:
            kw[attr] = body[key]
    if body.get("exchangeRates"):
        kw["exchange_rates"] = {k: Decimal(str(v)) for k, v in body["exchangeRates"].items()}
    return kw


def _token_body(token: Token) -> dict[str, Any]:
    return {
        "token": token.value,
        "kind": token.kind,
        "portalId": token.portal_id,
        "expiresAt": token.expires_at,
    }


class ControlApi:
    def __init__(
        self,
        state: SandboxState,
        store: Store,
        sender: WebhookSender,
        app_api: AppApi,
        timeline_api: TimelineApi,
        installs: Installs,
    ) -> None:
        self.state = state
        self.store = store
        self.sender = sender
        self.app_api = app_api
        self.timeline_api = timeline_api
        self.installs = installs
        self.app_requests = AppRequests(state, store)

    def routes(self) -> list[Route]:
        p = "/_sandbox"
        pp = p + "/portals/{portalId}"
        table: list[tuple[str, Any, list[str]]] = [
            (p + "/health", self.health, ["GET"]),
            (p + "/app", self.read_app, ["GET"]),
            (p + "/app", self.put_app, ["PUT"]),
            (p + "/app/subscriptions", self.add_subscription, ["POST"]),
            (p + "/app/subscriptions", self.clear_subscriptions, ["DELETE"]),
            (p + "/app/event-templates", self.add_template, ["POST"]),
            (p + "/app/app-events", self.list_event_types, ["GET"]),
            (p + "/app/app-events", self.add_event_type, ["POST"]),
            (p + "/app/requests", self.send_app_request, ["POST"]),
            (p + "/oauth/consent", self.read_consent, ["GET"]),
            (p + "/oauth/consent", self.set_consent, ["POST"]),
            (p + "/oauth/consent", self.reset_consent, ["DELETE"]),
            (p + "/portals", self.list_portals, ["GET"]),
            (p + "/portals", self.create_portal, ["POST"]),
            (pp, self.read_portal, ["GET"]),
            (pp, self.patch_portal, ["PATCH"]),
            (pp + "/users", self.list_users, ["GET"]),
            (pp + "/users", self.add_user, ["POST"]),
            (pp + "/install", self.uninstall, ["DELETE"]),
            (pp + "/tokens", self.create_token, ["POST"]),
            (pp + "/authorization-codes", self.create_code, ["POST"]),
            (pp + "/counters", self.counters, ["GET"]),
            (pp + "/counters", self.reset_counters, ["DELETE"]),
            (pp + "/objects/{objectType}", self.list_objects, ["GET"]),
            (pp + "/objects/{objectType}", self.create_object, ["POST"]),
            (pp + "/objects/{objectType}/{objectId}", self.read_object, ["GET"]),
            (pp + "/objects/{objectType}/{objectId}", self.update_object, ["PATCH"]),
            (pp + "/objects/{objectType}/{objectId}", self.archive_object, ["DELETE"]),
            (pp + "/objects/{objectType}/{objectId}/timeline", self.record_timeline, ["GET"]),
            (pp + "/associations", self.associate, ["PUT"]),
            (pp + "/timeline-events", self.timeline_events, ["GET"]),
            (pp + "/app-events", self.app_events, ["GET"]),
            (p + "/tokens/{token}/expire", self.expire_token, ["POST"]),
            (p + "/webhooks/deliveries", self.deliveries, ["GET"]),
            (p + "/webhooks/deliveries", self.clear_deliveries, ["DELETE"]),
            (p + "/faults", self.list_faults, ["GET"]),
            (p + "/faults", self.add_fault, ["POST"]),
            (p + "/faults", self.clear_faults, ["DELETE"]),
        ]
        return [Route(path, self._wrap(h), methods=m) for path, h, m in table]

    @staticmethod
    def _wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                result = await handler(request)
            except ApiError as exc:
                return exc.response()
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    def _portal(self, request: Request) -> Portal:
        raw = str(request.path_params["portalId"])
        portal = self.state.portals.get(int(raw)) if raw.isdigit() else None
        if portal is None:
            raise not_found(f"Portal {raw} not found")
        return portal

    def _type(self, request: Request) -> str:
        name = canonical_type(str(request.path_params["objectType"]))
        if name is None:
            raise validation(f"Unknown object type {request.path_params['objectType']}")
        return name

    # ---- app -----------------------------------------------------------------------------

    async def health(self, request: Request) -> Any:
        return {"status": "ok", "portals": len(self.state.portals)}

    def app_body(self) -> dict[str, Any]:
        app = self.state.app
        return {
            "appId": app.id,
            "clientId": app.client_id,
            "clientSecret": app.client_secret,
            "developerKey": app.developer_key,
            "name": app.name,
            "redirectUrls": list(app.redirect_urls),
            "targetUrl": app.target_url,
            "maxConcurrentRequests": app.max_concurrent,
            "subscriptions": [s.to_api() for s in app.subscriptions.values()],
            "eventTemplates": [t.to_api() for t in app.templates.values()],
            "appEvents": [t.to_api() for t in app.event_types.values()],
        }

    async def read_app(self, request: Request) -> Any:
        return self.app_body()

    async def put_app(self, request: Request) -> Any:
        body = await read_json(request)
        app = self.state.app
        if body.get("clientSecret"):
            app.client_secret = str(body["clientSecret"])
        if body.get("name"):
            app.name = str(body["name"])
        if "redirectUrls" in body:
            urls = body["redirectUrls"] or []
            if not isinstance(urls, list) or not all(
                str(u).startswith(("http://", "https://")) for u in urls
            ):
                raise validation("redirectUrls must be a list of http(s) URLs")
            app.redirect_urls = [str(u) for u in urls]
        if "targetUrl" in body:
            if body["targetUrl"]:
                self.app_api.apply_settings(
                    {
                        "targetUrl": body["targetUrl"],
                        "throttling": {
                            "maxConcurrentRequests": body.get("maxConcurrentRequests", 10)
                        },
                    }
                )
            else:
                app.target_url = None
        return self.app_body()

    async def add_subscription(self, request: Request) -> Any:
        body = await read_json(request)
        body.setdefault("active", True)
        return self.app_api.add_subscription(body).to_api()

    async def clear_subscriptions(self, request: Request) -> Any:
        self.state.app.subscriptions.clear()
        return Response(status_code=204)

    async def add_template(self, request: Request) -> Any:
        return self.timeline_api.add_template(await read_json(request)).to_api()

    async def list_event_types(self, request: Request) -> Any:
        return {"results": [t.to_api() for t in self.state.app.event_types.values()]}

    async def add_event_type(self, request: Request) -> Any:
        """Deploy an app event type: the JSON of an `app-events/*-hsmeta.json` file."""
        event_type = register_event_type(self.state, await read_json(request))
        return JSONResponse(event_type.to_api(), status_code=201)

    async def send_app_request(self, request: Request) -> Any:
        # Plain floats here: the body is re-sent to the app as JSON.
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise validation("Invalid input JSON") from None
        return await self.app_requests.send(body)

    # ---- the browser session at the authorize screen ---------------------------------------

    async def read_consent(self, request: Request) -> Any:
        return self.installs.current_consent().to_api()

    async def set_consent(self, request: Request) -> Any:
        return self.installs.set_consent(await read_json(request)).to_api()

    async def reset_consent(self, request: Request) -> Any:
        self.installs.reset_consent()
        return Response(status_code=204)

    # ---- portals and tokens ----------------------------------------------------------------

    def portal_body(self, portal: Portal, tokens: dict[str, str] | None = None) -> dict[str, Any]:
        body = portal.account_info()
        body.update(
            {
                "limitPer10s": portal.limit_per_window,
                "dailyLimit": portal.daily_limit,
                "searchPerSecond": portal.search_per_second,
                "exchangeRates": {k: str(v) for k, v in portal.exchange_rates.items()},
                "installed": portal.install is not None,
                "scopes": list(portal.install.scopes) if portal.install else [],
                "installingUserId": portal.install.user_id if portal.install else None,
                "appEventsApproved": portal.app_events_approved,
                "users": [u.to_api() for u in portal.users.values()],
            }
        )
        if tokens:
            body.update(tokens)
        return body

    def create_portal_from(self, body: dict[str, Any]) -> dict[str, Any]:
        portal = self.state.create_portal(**_portal_kwargs(body))
        admin = portal.admin.id
        if body.get("accessToken"):
            oauth = Token(str(body["accessToken"]), portal.id, "oauth", None, user_id=admin)
            self.state.tokens[oauth.value] = oauth
        else:
            oauth = self.state.issue_token(portal.id, "oauth", user_id=admin)
        if body.get("privateAppToken"):
            private = Token(str(body["privateAppToken"]), portal.id, "private", None)
            self.state.tokens[private.value] = private
        else:
            private = self.state.issue_token(portal.id, "private")
        refresh = self.state.issue_refresh_token(portal.id, value=body.get("refreshToken")).value
        for type_name, items in (body.get("objects") or {}).items():
            resolved = canonical_type(type_name)
            if resolved is None:
                raise validation(f"Unknown object type {type_name}")
            for item in items:
                create_with_associations(self.store, portal, resolved, item, USER)
        return self.portal_body(
            portal,
            {"accessToken": oauth.value, "privateAppToken": private.value, "refreshToken": refresh},
        )

    async def create_portal(self, request: Request) -> Any:
        return JSONResponse(self.create_portal_from(await read_json(request)), status_code=201)

    async def list_portals(self, request: Request) -> Any:
        return {"results": [self.portal_body(p) for p in self.state.portals.values()]}

    async def read_portal(self, request: Request) -> Any:
        return self.portal_body(self._portal(request))

    async def patch_portal(self, request: Request) -> Any:
        portal = self._portal(request)
        kw = _portal_kwargs(await read_json(request))
        kw.pop("portal_id", None)
        for attr, value in kw.items():
            setattr(portal, attr, value)
        return self.portal_body(portal)

    async def create_token(self, request: Request) -> Any:
        portal = self._portal(request)
        body = await read_json(request)
        scopes = set(body["scopes"]) if body.get("scopes") is not None else None
        token = self.state.issue_token(
            portal.id, str(body.get("kind", "oauth")), ttl=body.get("ttlSeconds"), scopes=scopes
        )
        return JSONResponse(_token_body(token), status_code=201)

    async def list_users(self, request: Request) -> Any:
        return {"results": [u.to_api() for u in self._portal(request).users.values()]}

    async def add_user(self, request: Request) -> Any:
        portal = self._portal(request)
        body = await read_json(request)
        user = self.installs.add_user(
            portal,
            str(body.get("email") or ""),
            str(body.get("firstName") or ""),
            str(body.get("lastName") or ""),
        )
        return JSONResponse(user.to_api(), status_code=201)

    async def uninstall(self, request: Request) -> Any:
        self.installs.uninstall(self._portal(request))
        return Response(status_code=204)

    async def create_code(self, request: Request) -> Any:
        """A code as if the authorize screen had been approved; `redirectUri` omitted means
        the token endpoint does not compare it."""
        portal = self._portal(request)
        body = await read_json(request)
        user_id = int(body["userId"]) if body.get("userId") is not None else portal.admin.id
        if user_id not in portal.users:
            raise validation(f"User {user_id} is not a user of portal {portal.id}")
        install = portal.install
        scopes = body.get("scopes") or (install.scopes if install else DEFAULT_SCOPES)
        code = self.installs.issue_code(
            self.state.app.client_id,
            body.get("redirectUri"),
            portal,
            user_id,
            [str(s) for s in scopes],
            code=f"code-{portal.id}-{secrets.token_hex(6)}",
        )
        return JSONResponse({"code": code.code, "expiresAt": code.expires_at}, status_code=201)

    async def expire_token(self, request: Request) -> Any:
        token = self.state.tokens.get(str(request.path_params["token"]))
        if token is None:
            raise not_found("Token not found")
        token.expires_at = time.time() - 1
        return _token_body(token)

    async def counters(self, request: Request) -> Any:
        return self._portal(request).counters.to_api()

    async def reset_counters(self, request: Request) -> Any:
        portal = self._portal(request)
        portal.counters = Counters()
        return Response(status_code=204)

    # ---- objects as a CRM user -------------------------------------------------------------

    def _raw(self, portal: Portal, record: Any) -> dict[str, Any]:
        body = self.store.render(portal, record, list(record.properties))
        associations: dict[str, list[dict[str, Any]]] = {}
        for (ft, fid, tt, tid), kinds in portal.associations.items():
            if ft == record.type and fid == record.id and kinds:
                associations.setdefault(tt, []).append(
                    {"id": tid, "types": [{"category": c, "typeId": t} for c, t in sorted(kinds)]}
                )
        body["associations"] = associations
        return body

    async def list_objects(self, request: Request) -> Any:
        portal = self._portal(request)
        type_name = self._type(request)
        archived = request.query_params.get("archived", "any")
        records = [
            r
            for r in portal.records[type_name].values()
            if archived == "any" or r.archived == (archived == "true")
        ]
        return {"results": [self._raw(portal, r) for r in records]}

    async def read_object(self, request: Request) -> Any:
        portal = self._portal(request)
        record = portal.records[self._type(request)].get(str(request.path_params["objectId"]))
        if record is None:
            raise not_found()
        return self._raw(portal, record)

    async def create_object(self, request: Request) -> Any:
        portal = self._portal(request)
        record = create_with_associations(
            self.store, portal, self._type(request), await read_json(request), USER
        )
        return JSONResponse(self._raw(portal, record), status_code=201)

    async def update_object(self, request: Request) -> Any:
        portal = self._portal(request)
        record = self.store.get(portal, self._type(request), str(request.path_params["objectId"]))
        body = await read_json(request)
        self.store.update(portal, record, body.get("properties") or {}, USER)
        return self._raw(portal, record)

    async def archive_object(self, request: Request) -> Any:
        portal = self._portal(request)
        record = self.store.get(portal, self._type(request), str(request.path_params["objectId"]))
        self.store.archive(portal, record, USER)
        return Response(status_code=204)

    async def associate(self, request: Request) -> Any:
        portal = self._portal(request)
        body = await read_json(request)
        ft = canonical_type(str(body.get("fromType", "")))
        tt = canonical_type(str(body.get("toType", "")))
        if ft is None or tt is None:
            raise validation("fromType and toType are required")
        type_id = body.get("typeId")
        if type_id is None:
            kind = default_kind(ft, tt)
            if kind is None:
                raise validation(f"No default association between {ft} and {tt}")
            type_id = kind.type_id
        spec = (str(body.get("category", "HUBSPOT_DEFINED")), int(type_id))
        self.store.associate(portal, ft, str(body["fromId"]), tt, str(body["toId"]), [spec], USER)
        return {"status": "ok"}

    async def timeline_events(self, request: Request) -> Any:
        """The app's events on timelines: v3 events, then app event occurrences (those carry
        no template, so a template filter leaves them out)."""
        portal = self._portal(request)
        q = request.query_params
        occurrences = [] if q.get("eventTemplateId") else list(portal.app_events.values())
        events = [
            e
            for e in [*portal.timeline.values(), *map(as_timeline_entry, occurrences)]
            if (not q.get("objectId") or e["objectId"] == q["objectId"])
            and (not q.get("objectType") or e["objectType"] == canonical_type(q["objectType"]))
            and (not q.get("eventTemplateId") or e["eventTemplateId"] == q["eventTemplateId"])
        ]
        return {"results": events}

    async def app_events(self, request: Request) -> Any:
        portal = self._portal(request)
        q = request.query_params
        found = [
            e
            for e in portal.app_events.values()
            if (not q.get("objectId") or e["objectId"] == q["objectId"])
            and (
                not q.get("eventTypeName")
                or q["eventTypeName"] in {e["eventTypeUid"], e["eventTypeName"]}
            )
        ]
        return {"results": found}

    async def record_timeline(self, request: Request) -> Any:
        """What a record's timeline shows from the app, oldest first: v3 timeline events,
        app event occurrences and the notes associated with it."""
        portal = self._portal(request)
        type_name = self._type(request)
        record = self.store.get(portal, type_name, str(request.path_params["objectId"]))
        entries: list[dict[str, Any]] = [
            {"kind": "timeline-event", **e}
            for e in portal.timeline.values()
            if e["objectType"] == type_name and e["objectId"] == record.id
        ]
        entries += [
            {"kind": "app-event", **e}
            for e in portal.app_events.values()
            if e["objectType"] == type_name and e["objectId"] == record.id
        ]
        if type_name in {"contacts", "companies", "deals"}:
            for note_id in self.store.associated_ids(portal, type_name, record.id, "notes"):
                note = portal.records["notes"][note_id]
                entries.append(
                    {
                        "kind": "note",
                        "id": note.id,
                        "timestamp": note.properties.get("hs_timestamp"),
                        "body": note.properties.get("hs_note_body", ""),
                        "properties": dict(note.properties),
                    }
                )
        entries.sort(key=lambda e: (str(e.get("timestamp") or ""), str(e["id"])))
        return {"results": entries}

    # ---- webhooks and faults ---------------------------------------------------------------

    async def deliveries(self, request: Request) -> Any:
        return {
            "results": [d.to_api() for d in self.sender.deliveries],
            "pending": len(self.sender.pending),
        }

    async def clear_deliveries(self, request: Request) -> Any:
        self.sender.deliveries.clear()
        self.sender.pending.clear()
        return Response(status_code=204)

    async def list_faults(self, request: Request) -> Any:
        return {"results": [vars(f) for f in self.state.faults if f.remaining > 0]}

    async def add_fault(self, request: Request) -> Any:
        body = await read_json(request)
        kind = str(body.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise validation(f"kind must be one of {sorted(FAULT_KINDS)}")
        fault = Fault(
            kind=kind,
            remaining=int(body.get("count", 1)),
            portal_id=int(body["portalId"]) if body.get("portalId") is not None else None,
            path_prefix=body.get("pathPrefix"),
            status=int(body.get("status", 503)),
            seconds=float(body.get("seconds", 0.0)),
            policy=str(body.get("policyName", "TEN_SECONDLY_ROLLING")),
        )
        self.state.faults.append(fault)
        return JSONResponse(vars(fault), status_code=201)

    async def clear_faults(self, request: Request) -> Any:
        self.state.faults.clear()
        return Response(status_code=204)
