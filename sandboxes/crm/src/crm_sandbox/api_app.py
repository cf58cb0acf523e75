"""App-level and account endpoints: webhook settings and subscriptions, account details,
company currency and the default deal pipeline (OAuth is in api_oauth.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm_sandbox.errors import not_found, validation
from crm_sandbox.guard import Ctx, Guard, json_response, read_json
from crm_sandbox.schema import DEAL_STAGES
from crm_sandbox.state import Subscription, now_ms

WEBHOOK_PREFIXES = ["/webhooks/v3", "/webhooks/2026-03"]
MAX_SUBSCRIPTIONS = 1000
EVENT_OBJECTS = {"contact", "company", "deal", "product", "line_item", "quote"}
EVENT_KINDS = {"creation", "deletion", "propertyChange", "associationChange", "merge", "restore"}
UNSUBSCRIBABLE = {"hs_lastmodifieddate", "num_unique_conversion_events"}


class AppApi:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.state = guard.state

    def routes(self) -> list[Route]:
        g = self.guard
        out: list[Route] = []
        for prefix in WEBHOOK_PREFIXES:
            base = prefix + "/{appId}"
            out += [
                g.developer_route(base + "/settings", self.read_settings, ["GET"]),
                g.developer_route(base + "/settings", self.put_settings, ["PUT"]),
                g.developer_route(base + "/settings", self.delete_settings, ["DELETE"]),
                g.developer_route(
                    base + "/subscriptions/batch/update", self.batch_update, ["POST"]
                ),
                g.developer_route(base + "/subscriptions", self.list_subscriptions, ["GET"]),
                g.developer_route(base + "/subscriptions", self.create_subscription, ["POST"]),
                g.developer_route(
                    base + "/subscriptions/{subscriptionId}", self.read_subscription, ["GET"]
                ),
                g.developer_route(
                    base + "/subscriptions/{subscriptionId}",
                    self.patch_subscription,
                    ["PATCH", "PUT"],
                ),
                g.developer_route(
                    base + "/subscriptions/{subscriptionId}", self.delete_subscription, ["DELETE"]
                ),
            ]
        out += [
            g.route("/account-info/v3/details", self.account, ["GET"]),
            g.route("/settings/v3/currencies/company-currency", self.currency, ["GET"]),
            g.route("/crm/v3/pipelines/deals", self.pipelines, ["GET"]),
        ]
        return out

    # ---- webhook management --------------------------------------------------------------

    def settings_body(self) -> dict[str, Any]:
        app = self.state.app
        return {
            "targetUrl": app.target_url,
            "throttling": {"maxConcurrentRequests": app.max_concurrent},
            "createdAt": "2024-01-01T00:00:00.000Z",
        }

    async def read_settings(self, request: Request) -> Response:
        if not self.state.app.target_url:
            raise not_found("No webhook settings for this app")
        return json_response(self.settings_body())

    def apply_settings(self, body: dict[str, Any]) -> None:
        target = body.get("targetUrl")
        if not target or not str(target).startswith(("http://", "https://")):
            raise validation("targetUrl must be an http(s) URL")
        concurrent = int((body.get("throttling") or {}).get("maxConcurrentRequests", 10))
        if concurrent <= 5:
            raise validation("maxConcurrentRequests must be more than 5")
        self.state.app.target_url = str(target)
        self.state.app.max_concurrent = concurrent

    async def put_settings(self, request: Request) -> Response:
        self.apply_settings(await read_json(request))
        return json_response(self.settings_body())

    async def delete_settings(self, request: Request) -> Response:
        self.state.app.target_url = None
        return Response(status_code=204)

    def add_subscription(self, body: dict[str, Any]) -> Subscription:
        event_type = str(body.get("eventType", ""))
        obj, _, kind = event_type.partition(".")
        if obj not in EVENT_OBJECTS or kind not in EVENT_KINDS:
            raise validation(f"Unsupported eventType {event_type!r}")
        if obj == "product" and kind == "associationChange":
            raise validation("product.associationChange does not exist")
        prop = body.get("propertyName")
        if kind == "propertyChange" and not prop:
            raise validation("propertyName is required for propertyChange subscriptions")
        if prop in UNSUBSCRIBABLE:
            raise validation(f"{prop} cannot be subscribed to")
        if len(self.state.app.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise validation("Couldn't create another subscription; the app has 1000 already.")
        sub = Subscription(
            id=self.state.new_subscription_id(),
            event_type=event_type,
            property_name=str(prop) if prop else None,
            active=bool(body.get("active", False)),  # HubSpot creates subscriptions paused
            created_at=now_ms(),
        )
        self.state.app.subscriptions[sub.id] = sub
        return sub

    def _subscription(self, request: Request) -> Subscription:
        raw = str(request.path_params["subscriptionId"])
        sub = self.state.app.subscriptions.get(int(raw)) if raw.isdigit() else None
        if sub is None:
            raise not_found(f"Subscription {raw} not found")
        return sub

    async def list_subscriptions(self, request: Request) -> Response:
        return json_response(
            {"results": [s.to_api() for s in self.state.app.subscriptions.values()]}
        )

    async def create_subscription(self, request: Request) -> Response:
        return json_response(self.add_subscription(await read_json(request)).to_api(), 201)

    async def read_subscription(self, request: Request) -> Response:
        return json_response(self._subscription(request).to_api())

    async def patch_subscription(self, request: Request) -> Response:
        sub = self._subscription(request)
        body = await read_json(request)
        if "active" in body:
            sub.active = bool(body["active"])
        return json_response(sub.to_api())

    async def delete_subscription(self, request: Request) -> Response:
        del self.state.app.subscriptions[self._subscription(request).id]
        return Response(status_code=204)

    async def batch_update(self, request: Request) -> Response:
        body = await read_json(request)
        results = []
        for item in body.get("inputs") or []:
            sub = self.state.app.subscriptions.get(int(item["id"]))
            if sub is not None:
                sub.active = bool(item.get("active", sub.active))
                results.append(sub.to_api())
        return json_response({"status": "COMPLETE", "results": results})

    # ---- account -------------------------------------------------------------------------

    async def account(self, ctx: Ctx) -> Response:
        return json_response(ctx.portal.account_info())

    async def currency(self, ctx: Ctx) -> Response:
        return json_response(
            {"id": ctx.portal.company_currency, "createdAt": "2024-01-01T00:00:00.000Z"}
        )

    async def pipelines(self, ctx: Ctx) -> Response:
        stages = [
            {
                "id": stage,
                "label": stage,
                "displayOrder": i,
                "metadata": {"isClosed": str(stage.startswith("closed")).lower()},
                "archived": False,
            }
            for i, stage in enumerate(DEAL_STAGES)
        ]
        return json_response(
            {
                "results": [
                    {
                        "id": "default",
                        "label": "Sales Pipeline",
                        "displayOrder": 0,
                        "stages": stages,
                        "archived": False,
                    }
                ]
            }
        )
