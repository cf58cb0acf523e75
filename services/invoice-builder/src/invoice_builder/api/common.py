"""What every route module of the wizard API shares: the service object a route works over,
the company of the route's portal, the refusals and how a body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dealbooks_contracts import RejectionCode
from dealbooks_kit import Access, Guard
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.service import Service

NOT_CONNECTED = "account not connected to this portal"
# The path of one company of the route's portal, under the portal's.
ACCOUNT = "/accounts/{realm_id}"
Endpoint = TypeVar("Endpoint", bound=Callable[[Request], Awaitable[Response]])


class Router:
    """The routes of one resource, each declared on its function, under
    `/portals/{portal_id}`: every one of them is open to a grant for the route's portal
    (`Access.PORTAL`), which `mount` says once for all (the kit's Guard guards each)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = []

    def route(self, method: str, path: str) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            self._routes.append((method, path, endpoint))
            return endpoint

        return add

    def mount(self, guard: Guard, base: str) -> list[BaseRoute]:
        """The guarded routes, under `base` (the portal's path)."""
        return [
            guard.route(base + path, endpoint, [method], Access.PORTAL)
            for method, path, endpoint in self._routes
        ]


def requester(request: Request, said: object) -> str | None:
    """Who asks: a person's own CRM user, from their grant, whatever the body says (nobody
    asks in another's name); what the body says only where the caller is no person."""
    user = getattr(getattr(request.state, "caller", None), "user_id", None)
    if user:
        return str(user)
    return str(said) if said else None


class RejectionAnswer(BaseModel):
    """Why a request cannot be drafted: a machine-readable code and a sentence for a person."""

    code: RejectionCode
    message: str
    field: str | None = None
    line_index: int | None = None


class NotConnected(Exception):
    """The route's company is not connected to the route's portal (a 404)."""


class BadBody(Exception):
    """The body is not the JSON object this route takes; `message` says why."""


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise BadBody("the body must be JSON") from exc
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def rejection_view(rejection: Rejection) -> dict[str, Any]:
    return {
        "code": rejection.code.value,
        "message": rejection.message,
        "field": rejection.field,
        "line_index": rejection.line_index,
    }


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


async def connected(request: Request, realm_id: str | None = None) -> AccountFacts:
    """The company (the route's, or `realm_id`), connected to the route's portal; else
    NotConnected (404)."""
    realm_id = realm_id or request.path_params["realm_id"]
    found = await service(request).store.account(realm_id)
    if found is None or found.portal_id != request.path_params["portal_id"]:
        raise NotConnected(NOT_CONNECTED)
    return found
