"""The public webhook routes. Bodies are read raw (signatures cover the exact bytes) and capped."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhook_gateway.handlers import REJECTED, Intake


class BodyTooLarge(Exception):
    """The delivery is larger than the gateway accepts."""


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


def build_api(intake: Intake) -> Starlette:
    """POST /webhooks/quickbooks and POST /webhooks/crm."""
    limit = intake.settings.max_body_bytes
    public_base = intake.settings.public_base_url.rstrip("/")

    def too_large(sender: str) -> Response:
        REJECTED.labels(sender, "too_large").inc()
        return JSONResponse(
            {"error": "too_large", "message": f"Bodies over {limit} bytes are refused."},
            status_code=413,
        )

    async def quickbooks(request: Request) -> Response:
        try:
            body = await _read_capped(request, limit)
        except BodyTooLarge:
            return too_large("quickbooks")
        outcome = await intake.quickbooks(body, request.headers.get("intuit-signature"))
        return JSONResponse(outcome.body, status_code=outcome.status)

    async def crm(request: Request) -> Response:
        try:
            body = await _read_capped(request, limit)
        except BodyTooLarge:
            return too_large("crm")
        uri = str(request.url)
        if public_base:
            query = f"?{request.url.query}" if request.url.query else ""
            uri = f"{public_base}{request.url.path}{query}"
        outcome = await intake.crm(
            body,
            uri,
            request.headers.get("x-hubspot-signature-v3"),
            request.headers.get("x-hubspot-request-timestamp"),
        )
        return JSONResponse(outcome.body, status_code=outcome.status)

    return Starlette(
        routes=[
            Route("/webhooks/quickbooks", quickbooks, methods=["POST"]),
            Route("/webhooks/crm", crm, methods=["POST"]),
        ]
    )
