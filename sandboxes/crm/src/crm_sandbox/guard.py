"""Per-request plumbing shared by every API route: bearer auth bound to one portal,
call counters, injected faults, HubSpot's rolling rate limits and headers, error bodies."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_sandbox.errors import ApiError, missing_scopes
from crm_sandbox.schema import canonical_type
from crm_sandbox.state import Fault, Portal, SandboxState, Token
from crm_sandbox.store import Source, Store
from crm_sandbox.webhooks import WebhookSender

STANDARD = "standard"
SEARCH = "search"
EXEMPT = "exempt"


@dataclass
class Ctx:
    request: Request
    portal: Portal
    token: Token
    source: Source

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.request.path_params)

    def query_list(self, name: str) -> list[str]:
        """`properties=a,b&properties=c` -> [a, b, c], the way HubSpot reads repeated lists."""
        out: list[str] = []
        for raw in self.request.query_params.getlist(name):
            out.extend(p.strip() for p in raw.split(",") if p.strip())
        return out

    def query_bool(self, name: str) -> bool:
        return self.request.query_params.get(name, "false").lower() == "true"

    async def json(self) -> Any:
        return await read_json(self.request)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        # Decimal keeps money exact: a client sending 10.1 gets "10.1" back, never 10.0999...
        return json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON on line 1") from None


def json_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


Handler = Callable[[Ctx], Awaitable[Response]]
# The scopes of which a call needs one, when they depend on the request (its object type).
ScopeRule = Callable[[Request], Sequence[str]]


def scopes_by_object_type(table: dict[str, list[str]]) -> ScopeRule:
    """A rule for routes with `{objectType}`: the scopes `table` lists for the request's type
    (a type it does not list needs none)."""

    def accepted(request: Request) -> Sequence[str]:
        type_name = canonical_type(str(request.path_params["objectType"]))
        return table.get(type_name or "", [])

    return accepted


class Guard:
    def __init__(self, state: SandboxState, store: Store, sender: WebhookSender) -> None:
        self.state = state
        self.store = store
        self.sender = sender

    def route(
        self,
        path: str,
        handler: Handler,
        methods: list[str],
        *,
        limit: str = STANDARD,
        oauth_only: bool = False,
        scope: str | ScopeRule | None = None,
        label: str | None = None,
    ) -> Route:
        """An API route: bearer auth, then `scope` (one scope, or a rule giving the scopes of
        which the token needs one; a token without `scopes` has them all), counters, faults
        and rate limits, then `handler`."""
        route_label = label or path

        async def endpoint(request: Request) -> Response:
            try:
                token, portal = self._authenticate(request)
                if oauth_only and token.kind != "oauth":
                    raise ApiError(
                        403,
                        "MISSING_SCOPES",
                        "This endpoint needs an OAuth access token of the installing account.",
                    )
                accepted = scope(request) if callable(scope) else [scope] if scope else []
                if accepted and token.scopes is not None and token.scopes.isdisjoint(accepted):
                    raise missing_scopes(accepted)
                counters = portal.counters
                counters.total += 1
                key = f"{request.method} {route_label}"
                counters.by_route[key] = counters.by_route.get(key, 0) + 1
                await self._faults(request, portal)
                headers = self._rate_limit(portal, token, limit)
                source = Source("INTEGRATION", str(self.state.app.id))
                if token.kind == "private":
                    source = Source("INTEGRATION", f"privateApp:{portal.id}")
                response = await handler(Ctx(request, portal, token, source))
                response.headers.update(headers)
                return response
            except ApiError as exc:
                return exc.response()

        return Route(path, endpoint, methods=methods)

    def developer_route(
        self, path: str, handler: Callable[[Request], Awaitable[Response]], methods: list[str]
    ) -> Route:
        """App-level endpoints (webhook settings, event templates): developer key auth."""

        async def endpoint(request: Request) -> Response:
            try:
                key = request.query_params.get("hapikey") or _bearer(request)
                if key != self.state.app.developer_key:
                    raise ApiError(
                        401,
                        "INVALID_AUTHENTICATION",
                        "The developer API key provided is invalid.",
                    )
                app_id = request.path_params.get("appId")
                if app_id is not None and str(app_id) != str(self.state.app.id):
                    raise ApiError(404, "OBJECT_NOT_FOUND", f"App {app_id} not found")
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return Route(path, endpoint, methods=methods)

    def _authenticate(self, request: Request) -> tuple[Token, Portal]:
        value = _bearer(request)
        token = self.state.tokens.get(value) if value else None
        if token is None:
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        if token.expires_at is not None and token.expires_at <= time.time():
            ago = int(time.time() - token.expires_at)
            raise ApiError(
                401,
                "EXPIRED_AUTHENTICATION",
                f"The OAuth token used to make this call expired {ago} second(s) ago.",
            )
        portal = self.state.portals.get(token.portal_id)
        if portal is None:
            raise ApiError(401, "INVALID_AUTHENTICATION", "The portal of this token is gone.")
        return token, portal

    def _take_faults(self, request: Request, portal: Portal) -> list[Fault]:
        taken = []
        for fault in self.state.faults:
            if fault.remaining <= 0 or fault.kind not in {"latency", "status", "rate_limit"}:
                continue
            if fault.portal_id not in (None, portal.id):
                continue
            if fault.path_prefix and not request.url.path.startswith(fault.path_prefix):
                continue
            fault.remaining -= 1
            taken.append(fault)
        return taken

    async def _faults(self, request: Request, portal: Portal) -> None:
        for fault in self._take_faults(request, portal):
            portal.counters.injected_faults += 1
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "status":
                raise ApiError(
                    fault.status,
                    "INTERNAL_ERROR" if fault.status >= 500 else "LOCKED",
                    "Injected failure from the CRM sandbox.",
                    headers={"Retry-After": "0"} if fault.status in {423, 477} else None,
                )
            elif fault.kind == "rate_limit":
                raise self._too_many(portal, fault.policy, injected=True)

    def _too_many(self, portal: Portal, policy: str, *, injected: bool = False) -> ApiError:
        config = self.state.config
        if not injected:
            portal.counters.rate_limited += 1
        messages = {
            "DAILY": "You have reached your daily limit.",
            "SECONDLY": "You have reached your secondly limit.",
            "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        }
        headers: dict[str, str] = {}
        if config.retry_after_on_429 and policy != "DAILY":
            window = 1.0 if policy == "SECONDLY" else config.window_seconds
            # Retry-After takes whole seconds; below one second on a sped-up clock, say 0.
            real = config.scaled(window)
            headers["Retry-After"] = str(math.floor(real)) if real < 1 else str(math.ceil(real))
        return ApiError(
            429,
            "RATE_LIMITS",
            messages.get(policy, "You have reached your limit."),
            extra={
                "errorType": "RATE_LIMIT",
                "policyName": policy,
                "requestId": uuid.uuid4().hex,
            },
            headers=headers,
        )

    def _rate_limit(self, portal: Portal, token: Token, limit: str) -> dict[str, str]:
        config = self.state.config
        now = time.monotonic()
        if limit == SEARCH:
            window = portal.search_window
            horizon = now - config.scaled(1.0)
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= portal.search_per_second:
                raise self._too_many(portal, "SECONDLY")
            window.append(now)
            return {}  # search responses carry no rate-limit headers
        if limit == EXEMPT:
            return {}
        if portal.daily_limit is not None:
            if portal.daily_count >= portal.daily_limit:
                raise self._too_many(portal, "DAILY")
            portal.daily_count += 1
        window = portal.window
        horizon = now - config.scaled(config.window_seconds)
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= portal.limit_per_window:
            raise self._too_many(portal, "TEN_SECONDLY_ROLLING")
        window.append(now)
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(config.window_seconds * 1000)),
            "X-HubSpot-RateLimit-Max": str(portal.limit_per_window),
            "X-HubSpot-RateLimit-Remaining": str(portal.limit_per_window - len(window)),
        }
        if token.kind == "private" and portal.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(portal.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                portal.daily_limit - portal.daily_count
            )
        return headers
