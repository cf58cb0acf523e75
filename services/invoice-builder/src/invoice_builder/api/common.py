"""What every route module of the wizard API shares: the service object a route works over,
the company of the route's portal, the refusals and how a body is read."""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import RejectionCode
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.service import Service

NOT_CONNECTED = "account not connected to this portal"


class ErrorAnswer(BaseModel):
    """A refusal, in a sentence."""

    error: str


class RejectionAnswer(BaseModel):
    """Why a request cannot be drafted: a machine-readable code and a sentence for a person."""

    code: RejectionCode
    message: str
    field: str | None = None
    line_index: int | None = None


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


async def account(request: Request, realm_id: str | None = None) -> AccountFacts | None:
    """The company (the route's, or `realm_id`), if it is connected to the route's portal."""
    realm_id = realm_id or request.path_params["realm_id"]
    found = await service(request).store.account(realm_id)
    if found is None or found.portal_id != request.path_params["portal_id"]:
        return None
    return found
