"""connector-auth's HTTP routes: the OAuth round trip, account list and disconnect, and the
internal access-token endpoint for other services."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from dealbooks_kit import TransientError, get_logger
from dealbooks_qbo import OAuthError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connector_auth.domain import ConnectRefused, InvalidState
from connector_auth.handlers import AccountNotFound, ConnectorAuth, ReauthRequired, RefreshBusy

log = get_logger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _problem(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def build_api(service: ConnectorAuth) -> Starlette:
    """The Starlette app the service runtime falls back to for everything but health/metrics."""
    credentials = [c.encode() for c in service.settings.credentials()]

    def authenticated(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            # Compare against every credential, so timing does not tell which one nearly matched.
            matches = [hmac.compare_digest(presented.strip().encode(), c) for c in credentials]
            if scheme.lower() != "bearer" or not any(matches):
                return _problem(401, "unauthenticated", "A service credential is required.")
            return await endpoint(request)

        return guarded

    async def connect(request: Request) -> Response:
        portal_id = request.query_params.get("portal_id", "").strip()
        if not portal_id:
            return _problem(400, "portal_id_required", "Say which CRM portal to connect.")
        url = await service.start_connect(portal_id)
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    async def callback(request: Request) -> Response:
        q = request.query_params
        if q.get("error"):
            return _problem(
                400,
                q["error"],
                "QuickBooks did not authorize the connection; nothing was connected.",
            )
        code, state, realm_id = q.get("code"), q.get("state"), q.get("realmId")
        if not code or not state or not realm_id:
            return _problem(400, "invalid_request", "The QuickBooks redirect is incomplete.")
        try:
            connected = await service.complete_connect(state, code, realm_id)
        except InvalidState:
            return _problem(
                400,
                "invalid_state",
                "This connection link has expired or was already used. "
                "Start the connection again from dealbooks.",
            )
        except ConnectRefused as refused:
            return _problem(403, refused.code, refused.message)
        except OAuthError as exc:
            log.warning("code exchange refused", error=exc.error)
            return _problem(400, "authorization_failed", "QuickBooks refused the authorization.")
        if service.settings.connected_redirect_url:
            query = urlencode({"portal_id": connected.portal_id, "account_id": connected.realm_id})
            return RedirectResponse(
                f"{service.settings.connected_redirect_url}?{query}", status_code=302
            )
        return JSONResponse(
            {
                "status": "connected",
                "portal_id": connected.portal_id,
                "account_id": connected.realm_id,
                "company_name": connected.facts.company_name,
                "reason": connected.reason.value,
            }
        )

    async def list_accounts(request: Request) -> Response:
        docs = await service.list_accounts(request.path_params["portal_id"])
        return JSONResponse({"results": [_account_view(d) for d in docs]})

    async def disconnect(request: Request) -> Response:
        try:
            await service.disconnect(
                request.path_params["portal_id"], request.path_params["account_id"]
            )
        except AccountNotFound:
            return _problem(404, "not_found", "No such connected account in this portal.")
        return Response(status_code=204)

    async def access_token(request: Request) -> Response:
        rejected: str | None = None
        if await request.body():
            try:
                body = await request.json()
            except ValueError:
                return _problem(400, "invalid_json", "The body must be JSON.")
            rejected = body.get("rejected_sha256") if isinstance(body, dict) else None
        try:
            token = await service.access_token(
                request.path_params["portal_id"], request.path_params["account_id"], rejected
            )
        except AccountNotFound:
            return _problem(404, "not_found", "No such connected account in this portal.")
        except ReauthRequired:
            return _problem(409, "reauth_required", "The account must be reconnected by a person.")
        except (RefreshBusy, TransientError):
            return JSONResponse(
                {"error": "try_again", "message": "Token refresh in progress or failing."},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        now = service.clock()
        return JSONResponse(
            {
                "access_token": token.access_token,
                "token_type": "bearer",
                "realm_id": token.realm_id,
                "expires_at": token.expires_at.isoformat(),
                "expires_in": max(0, int((token.expires_at - now).total_seconds())),
            },
            headers=NO_STORE,
        )

    prefix = "/v1/portals/{portal_id}/accounts"
    return Starlette(
        routes=[
            Route("/oauth/connect", connect, methods=["GET"]),
            Route("/oauth/callback", callback, methods=["GET"]),
            Route(prefix, authenticated(list_accounts), methods=["GET"]),
            Route(prefix + "/{account_id}", authenticated(disconnect), methods=["DELETE"]),
            Route(
                "/internal" + prefix + "/{account_id}/access-token",
                authenticated(access_token),
                methods=["POST"],
            ),
        ]
    )


def _account_view(doc: dict[str, Any]) -> dict[str, Any]:
    company = doc.get("company") or {}
    last_refresh = doc.get("last_refresh_at")
    return {
        "account_id": doc["realm_id"],
        "status": doc["status"],
        "environment": doc.get("environment"),
        "company_name": company.get("company_name"),
        "country": company.get("country"),
        "currency": company.get("home_currency"),
        "multicurrency_enabled": company.get("multicurrency_enabled"),
        "custom_transaction_numbers": company.get("custom_transaction_numbers"),
        "connected_at": doc["connected_at"].isoformat(),
        "last_refresh_at": last_refresh.isoformat() if last_refresh else None,
    }
