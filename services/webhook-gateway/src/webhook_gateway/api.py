"""The public webhook routes (`PUBLIC_BY_DESIGN`: every delivery is signature-checked by the
intake). Bodies are read raw (signatures cover the exact bytes) and capped."""

from __future__ import annotations

from dealbooks_kit import Access, Guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webhook_gateway.handlers import REJECTED, Intake


class BodyTooLarge(Exception):
    """The delivery is larger than the gateway accepts."""


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(sender: str, limit: int) -> Response:
    REJECTED.labels(sender, "too_large").inc()
    return JSONResponse(
        {"error": "too_large", "message": f"Bodies over {limit} bytes are refused."},
        status_code=413,
    )


async def _delivery(request: Request, sender: str) -> bytes | Response:
    """The delivery's raw body, or its refusal (413) when it is over the gateway's cap."""
    limit = _intake(request).settings.max_body_bytes
    try:
        return await _read_capped(request, limit)
    except BodyTooLarge:
        return _too_large(sender, limit)


def _signed_uri(request: Request, public_base: str) -> str:
    """The URL the CRM signed: the request's, under the public prefix when one is set."""
    if not public_base:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{public_base.rstrip('/')}{request.url.path}{query}"


async def quickbooks(request: Request) -> Response:
    intake = _intake(request)
    body = await _delivery(request, "quickbooks")
    if isinstance(body, Response):
        return body
    outcome = await intake.quickbooks(body, request.headers.get("intuit-signature"))
    return JSONResponse(outcome.body, status_code=outcome.status)


async def crm(request: Request) -> Response:
    intake = _intake(request)
    body = await _delivery(request, "crm")
    if isinstance(body, Response):
        return body
    outcome = await intake.crm(
        body,
        _signed_uri(request, intake.settings.public_base_url),
        request.headers.get("x-hubspot-signature-v3"),
        request.headers.get("x-hubspot-request-timestamp"),
    )
    return JSONResponse(outcome.body, status_code=outcome.status)


def build_api(intake: Intake, guard: Guard) -> Starlette:
    """POST /webhooks/quickbooks and POST /webhooks/crm, public by design."""
    api = guard.api(
        [
            guard.route("/webhooks/quickbooks", quickbooks, ["POST"], Access.PUBLIC),
            guard.route("/webhooks/crm", crm, ["POST"], Access.PUBLIC),
        ]
    )
    api.state.intake = intake
    return api
