"""OAuth as a public app meets it: the authorize screen (automatic or a consent page), the
token endpoint, token info, refresh-token deletion and the app's own uninstall call."""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crm_sandbox.errors import ApiError, OAuthError
from crm_sandbox.guard import Ctx, Guard
from crm_sandbox.installs import Installs, Pending
from crm_sandbox.pages import DECISION_PATH, consent_page, error_page
from crm_sandbox.state import DEFAULT_SCOPES, App, Portal, RefreshToken, Token, User

TOKEN_PATHS = ["/oauth/v1/token", "/oauth/v3/token", "/oauth/2026-03/token"]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
DENIED = "The user denied the app access to their HubSpot account."


class AuthorizeError(Exception):
    """Shown to the browser as HubSpot's 400 error page (there is no redirect to the app)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> HTMLResponse:
        return HTMLResponse(error_page("Authorization failed", self.message), status_code=400)


def _form(raw: bytes) -> dict[str, str]:
    # Form-encoded; parsed here so the sandbox needs no multipart library.
    return {k: v[0] for k, v in parse_qs(raw.decode()).items()}


def with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    extra = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def check_redirect(app: App, uri: str) -> None:
    """A registered redirect URL if the app has any; otherwise https, or http on loopback."""
    if app.redirect_urls:
        if uri not in app.redirect_urls:
            raise AuthorizeError(
                "The redirect_uri does not match any redirect URL configured for this app."
            )
        return
    parts = urlsplit(uri)
    secure = parts.scheme == "https" and bool(parts.hostname)
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if not (secure or loopback):
        raise AuthorizeError("The redirect_uri must be https (http only for localhost).")


def scope_group_pk(scope: str) -> int:
    """HubSpot lists an opaque numeric scope group per scope; a stable stand-in."""
    return zlib.crc32(scope.encode()) % 1000 + 1


def _opaque(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class OAuthApi:
    def __init__(self, guard: Guard, installs: Installs) -> None:
        self.guard = guard
        self.state = guard.state
        self.installs = installs

    def routes(self) -> list[Route]:
        return [
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/oauth/{portalId:int}/authorize", self.authorize, methods=["GET"]),
            Route(DECISION_PATH, self.decision, methods=["POST"]),
            *(Route(path, self.token, methods=["POST"]) for path in TOKEN_PATHS),
            Route("/oauth/v1/access-tokens/{token}", self.access_token_info, methods=["GET"]),
            Route("/oauth/v1/refresh-tokens/{token}", self.refresh_token_info, methods=["GET"]),
            Route("/oauth/v1/refresh-tokens/{token}", self.delete_refresh, methods=["DELETE"]),
            self.guard.route(
                "/appinstalls/v3/external-install", self.uninstall, ["DELETE"], oauth_only=True
            ),
        ]

    # ---- authorize -----------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        app = self.state.app
        try:
            client_id = q.get("client_id", "")
            if client_id != app.client_id:
                raise AuthorizeError("The client_id is not the client ID of any app.")
            redirect_uri = q.get("redirect_uri", "")
            if not redirect_uri:
                raise AuthorizeError("The redirect_uri is missing.")
            check_redirect(app, redirect_uri)
            requested = q.get("scope", "").split()
            if not requested:
                raise AuthorizeError("The scope parameter is missing.")
            optional = q.get("optional_scope", "").split()
            try:
                portal, user, consent = self.installs.sign_in(request.path_params.get("portalId"))
            except LookupError as exc:
                raise AuthorizeError(str(exc)) from None
        except AuthorizeError as exc:
            return exc.response()
        granted = consent.scopes if consent.scopes is not None else requested + optional
        pending = self.installs.hold(
            client_id, redirect_uri, list(dict.fromkeys(granted)), q.get("state"), portal, user
        )
        if consent.mode == "page":
            portals = list(self.state.portals.values())
            return HTMLResponse(consent_page(app, pending, portal, user, portals))
        del self.installs.pending[pending.id]
        return self._answer(pending, consent.decision, portal, user)

    async def decision(self, request: Request) -> Response:
        form = _form(await request.body())
        pending = self.installs.pending.pop(form.get("request", ""), None)
        if pending is None:
            return AuthorizeError(
                "This authorization request has expired or was already answered."
            ).response()
        chosen = form.get("portalId", "")
        portal = self.state.portals.get(int(chosen)) if chosen.isdigit() else None
        if portal is None:
            return AuthorizeError(f"HubSpot account {chosen} does not exist.").response()
        # The signed-in user, or (in another account) that account's first user.
        user = portal.users.get(pending.user_id) or portal.admin
        decision = "approve" if form.get("decision") == "approve" else "deny"
        return self._answer(pending, decision, portal, user)

    def _answer(self, pending: Pending, decision: str, portal: Portal, user: User) -> Response:
        params: dict[str, str]
        if decision == "deny":
            params = {"error": "access_denied", "error_description": DENIED}
        else:
            code = self.installs.issue_code(
                pending.client_id, pending.redirect_uri, portal, user.id, pending.scopes
            )
            params = {"code": code.code}
        if pending.state is not None:
            params["state"] = pending.state
        return RedirectResponse(with_params(pending.redirect_uri, params), status_code=302)

    # ---- token endpoint ------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = _form(await request.body())
        app = self.state.app
        try:
            if form.get("client_id") != app.client_id or (
                form.get("client_secret") != app.client_secret
            ):
                raise OAuthError("BAD_CLIENT_ID", "missing or invalid client_id/client_secret")
            grant = str(form.get("grant_type", ""))
            if grant == "refresh_token":
                refresh = self.state.refresh_tokens.get(str(form.get("refresh_token", "")))
                if refresh is None or refresh.portal_id not in self.state.portals:
                    raise OAuthError("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
            elif grant == "authorization_code":
                code = self.installs.redeem_code(
                    str(form.get("code", "")), app.client_id, form.get("redirect_uri")
                )
                portal = self.state.portals[code.portal_id]
                self.installs.install(portal, code.user_id, code.scopes)
                refresh = self.state.issue_refresh_token(
                    portal.id, user_id=code.user_id, scopes=code.scopes
                )
            else:
                raise OAuthError("BAD_GRANT_TYPE", f"unsupported grant_type {grant}")
        except OAuthError as exc:
            return exc.response()
        access = self.state.issue_token(
            refresh.portal_id, "oauth", scopes=set(refresh.scopes), user_id=refresh.user_id
        )
        return JSONResponse(
            {
                "token_type": "bearer",
                "refresh_token": refresh.value,
                "access_token": access.value,
                "expires_in": self.state.config.token_ttl_seconds,
                "hub_id": refresh.portal_id,
                "user_id": refresh.user_id,
                "scopes": sorted(refresh.scopes),
            }
        )

    # ---- token info ----------------------------------------------------------------------

    def _who(self, portal_id: int, user_id: int | None) -> tuple[Portal, User]:
        portal = self.state.portals[portal_id]
        user = portal.users.get(user_id) if user_id is not None else None
        return portal, user or portal.admin

    def _scopes(self, token: Token, portal: Portal) -> list[str]:
        if token.scopes is not None:
            return sorted(token.scopes)
        return sorted(portal.install.scopes if portal.install else DEFAULT_SCOPES)

    def _gone(self) -> Response:
        return ApiError(
            404, "OBJECT_NOT_FOUND", "The token does not exist or has expired."
        ).response()

    async def access_token_info(self, request: Request) -> Response:
        value = str(request.path_params["token"])
        token = self.state.tokens.get(value)
        now = time.time()
        if (
            token is None
            or token.kind != "oauth"
            or token.portal_id not in self.state.portals
            or (token.expires_at is not None and token.expires_at <= now)
        ):
            return self._gone()
        portal, user = self._who(token.portal_id, token.user_id)
        scopes = self._scopes(token, portal)
        expires_at = token.expires_at or now + self.state.config.token_ttl_seconds
        installer = portal.install.user_id if portal.install else user.id
        app_id = self.state.app.id
        pks = [scope_group_pk(s) for s in scopes]
        return JSONResponse(
            {
                "token": value,
                "user": user.email,
                "hub_domain": portal.domain,
                "scopes": scopes,
                "scope_to_scope_group_pks": pks,
                "trial_scopes": [],
                "trial_scope_to_scope_group_pks": [],
                "hub_id": portal.id,
                "app_id": app_id,
                "expires_in": max(0, int(expires_at - now)),
                "user_id": user.id,
                "token_type": "access",
                "is_private_distribution": False,
                "signed_access_token": {
                    "expiresAt": int(expires_at * 1000),
                    "scopes": _opaque("scopes", *scopes),
                    "hubId": portal.id,
                    "userId": user.id,
                    "appId": app_id,
                    "signature": _opaque("signature", value),
                    "scopeToScopeGroupPks": _opaque("pks", *pks),
                    "newSignature": _opaque("newSignature", value),
                    "hublet": "na1",
                    "trialScopes": "",
                    "trialScopeToScopeGroupPks": "",
                    "isUserLevel": False,
                    "installingUserId": installer,
                    "isServiceAccount": False,
                    "isPrivateDistribution": False,
                },
            }
        )

    def _refresh(self, request: Request) -> RefreshToken | None:
        refresh = self.state.refresh_tokens.get(str(request.path_params["token"]))
        if refresh is None or refresh.portal_id not in self.state.portals:
            return None
        return refresh

    async def refresh_token_info(self, request: Request) -> Response:
        refresh = self._refresh(request)
        if refresh is None:
            return self._gone()
        portal, user = self._who(refresh.portal_id, refresh.user_id)
        body: dict[str, Any] = {
            "token": refresh.value,
            "user": user.email,
            "hub_domain": portal.domain,
            "scopes": sorted(refresh.scopes),
            "hub_id": portal.id,
            "client_id": self.state.app.client_id,
            "user_id": user.id,
            "token_type": "refresh",
        }
        return JSONResponse(body)

    async def delete_refresh(self, request: Request) -> Response:
        refresh = self._refresh(request)
        if refresh is None:
            return self._gone()
        # Only this refresh token: access tokens stay valid and the app stays installed.
        del self.state.refresh_tokens[refresh.value]
        return Response(status_code=204)

    # ---- uninstall -----------------------------------------------------------------------

    async def uninstall(self, ctx: Ctx) -> Response:
        self.installs.uninstall(ctx.portal)
        return Response(status_code=204)
