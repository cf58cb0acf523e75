"""connector-auth's HTTP routes, each with its access decision (`dealbooks_kit.Guard`), in two
routers over the service objects:

- `CrmRoutes`, over `Installs`: install and sign-in (the CRM's OAuth), the session, its portal
  grants, sign-out, uninstall, and CRM access tokens for other services (per portal);
- `QuickBooksRoutes`, over `ConnectorAuth`: connecting a company (from a signed-in person only),
  the account list, disconnecting, and QuickBooks access tokens for other services (per
  account).
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from dealbooks_kit import Access, Caller, Guard, TransientError, get_logger
from dealbooks_kit.auth import problem
from dealbooks_kit.openapi import describe
from dealbooks_qbo import OAuthError
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connector_auth.crm_oauth import CrmOAuthRefused
from connector_auth.domain import ConnectRefused, InvalidState
from connector_auth.handlers import AccountNotFound, Connected, ConnectorAuth, ReauthRequired
from connector_auth.installs import (
    Installs,
    MissingScopes,
    PortalNotInstalled,
    SignedIn,
    UnknownPerson,
)
from connector_auth.refresh import RefreshBusy

log = get_logger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
COOKIE = "dealbooks_session"
# Held by the browser that starts the CRM's OAuth, so only it can finish the flow.
FLOW_COOKIE = "dealbooks_oauth"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PORTAL = "/v1/portals/{portal_id}"
INTERNAL = "/internal" + PORTAL
# A person signed in for the route's portal: by the session cookie or a portal grant.
PERSON = (Access.SESSION, Access.PORTAL)


def build_api(service: ConnectorAuth, installs: Installs) -> Starlette:
    """The Starlette app the service runtime falls back to for everything but health/metrics."""
    settings = service.settings
    crm = CrmRoutes(installs, service.advanced_portals)
    guard = Guard(settings, settings.service_name, session=crm.session_caller)
    guard.require(Access.SERVICE, Access.PORTAL)
    return guard.api([*crm.routes(guard), *QuickBooksRoutes(service, installs).routes(guard)])


class AccountView(BaseModel):
    """A QuickBooks company connected to the portal, and its facts."""

    account_id: str
    status: str
    environment: str | None = Field(default=None, description="sandbox or production")
    company_name: str | None = None
    country: str | None = None
    currency: str | None = None
    multicurrency_enabled: bool | None = None
    custom_transaction_numbers: bool | None = None
    connected_at: str
    last_refresh_at: str | None = None


class AccountsAnswer(BaseModel):
    """The portal's connected QuickBooks companies."""

    results: list[AccountView]


# ---------------------------------------------------------------- CRM side


class CrmRoutes:
    """The CRM side: the app's installs in portals and the people who sign in through them."""

    def __init__(
        self, installs: Installs, advanced: Callable[[Sequence[str]], Awaitable[list[str]]]
    ) -> None:
        self.installs = installs
        self.settings = installs.settings
        # Which of a person's portals have a company on QuickBooks Online Advanced.
        self.advanced = advanced

    def routes(self, g: Guard) -> list[Route]:
        return [
            g.route("/install", self.install, ["GET"], Access.PUBLIC),
            g.route("/signin", self.signin, ["GET"], Access.PUBLIC),
            g.route("/oauth/crm/callback", self.crm_callback, ["GET"], Access.PUBLIC),
            g.route("/v1/session", self.session, ["GET"], Access.SESSION),
            g.route("/signout", self.signout, ["POST"], Access.SESSION),
            g.route(PORTAL + "/install", self.uninstall, ["DELETE"], *PERSON),
            g.route(INTERNAL + "/crm/access-token", self.crm_token, ["POST"], Access.SERVICE),
        ]

    async def session_caller(self, request: Request) -> Caller | None:
        """The signed-in person of the session cookie; a state-changing request must also
        carry the session's CSRF token (header `X-CSRF-Token` or form field `csrf_token`)."""
        session = await self.installs.session(request.cookies.get(COOKIE))
        if session is None:
            return None
        if request.method not in SAFE_METHODS:
            presented = request.headers.get("x-csrf-token")
            if presented is None and "form" in request.headers.get("content-type", ""):
                presented = str((await request.form()).get("csrf_token") or "")
            if not hmac.compare_digest((presented or "").encode(), session.csrf.encode()):
                return None
        return Caller(
            Access.SESSION, frozenset(session.portals), session.user_id, session.email, session.sid
        )

    async def install(self, request: Request) -> Response:
        return await self._start("install")

    async def signin(self, request: Request) -> Response:
        return await self._start("signin")

    async def _start(self, purpose: str) -> Response:
        url, browser = await self.installs.start(purpose)
        response = RedirectResponse(url, 302, headers=NO_STORE)
        max_age = self.settings.state_max_age_seconds
        self._cookie(response, FLOW_COOKIE, browser, max_age, path="/oauth/crm")
        return response

    def _cookie(
        self, response: Response, name: str, value: str, max_age: int, *, path: str = "/"
    ) -> None:
        """Our cookies: HttpOnly, SameSite=Lax, Secure unless served from this machine."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            secure=self.settings.secure_cookies,
            samesite="lax",
            path=path,
        )

    async def crm_callback(self, request: Request) -> Response:
        q = request.query_params
        if q.get("error"):
            return _page(
                400,
                "dealbooks was not installed",
                f"The CRM did not authorize dealbooks ({q['error']}: "
                f"{q.get('error_description') or 'no reason given'})."
                " Nothing was changed. You can start again from the app's page.",
            )
        code, state = q.get("code"), q.get("state")
        if not code or not state:
            return _page(400, "Incomplete answer from the CRM", "Start the install again.")
        try:
            done = await self.installs.complete(
                state, code, request.cookies.get(COOKIE), request.cookies.get(FLOW_COOKIE)
            )
        except (InvalidState, UnknownPerson, TransientError, MissingScopes, CrmOAuthRefused) as exc:
            return _install_refused(exc)
        return self._signed_in(done)

    def _signed_in(self, done: SignedIn) -> Response:
        """Back to the console (or a page saying so), with the session cookie."""
        target = self.settings.console_url or ""
        if target:
            query = urlencode({"portal_id": done.portal_id})
            response: Response = RedirectResponse(f"{target}?{query}", 302, headers=NO_STORE)
        else:
            response = _page(
                200,
                "dealbooks is installed",
                f"dealbooks is installed in portal {done.portal_id}, and you are signed in.",
            )
        response.delete_cookie(FLOW_COOKIE, path="/oauth/crm")
        self._cookie(response, COOKIE, done.cookie, self.settings.session_max_age_seconds)
        return response

    async def session(self, request: Request) -> Response:
        caller = _caller(request)
        session = await self.installs.session(request.cookies.get(COOKIE))
        if session is None or session.sid != caller.session_id:
            return problem(401, "unauthenticated", "Sign in first.")
        return JSONResponse(
            {
                "user_id": session.user_id,
                "email": session.email,
                "portals": list(session.portals),
                "advanced_portals": await self._advanced(session.portals),
                "csrf_token": session.csrf,
                "expires_at": session.expires_at.isoformat(),
                "grant": {
                    "token": self.installs.grant(session),
                    "expires_in": self.settings.grant_ttl_seconds,
                },
            },
            headers=NO_STORE,
        )

    async def _advanced(self, portals: Sequence[str]) -> list[str] | None:
        """The session's portals with a company on QuickBooks Online Advanced, so the console
        shows approvals and reminders where they apply without asking; None (the console
        then shows them everywhere) when the accounts cannot be read now, which must not
        cost the person their page."""
        try:
            return await self.advanced(portals)
        except PyMongoError as exc:
            log.warning("advanced portals not read", error=type(exc).__name__)
            return None

    async def signout(self, request: Request) -> Response:
        session = await self.installs.session(request.cookies.get(COOKIE))
        if session is not None:
            await self.installs.sign_out(session)
        # A person's sign-out form (the console's) goes back to the console; an API call is
        # answered as such.
        console = self.settings.console_url
        form = "form" in request.headers.get("content-type", "")
        response: Response = (
            RedirectResponse(f"{console}?signed_out=1", 303, headers=NO_STORE)
            if console and form
            else Response(status_code=204, headers=NO_STORE)
        )
        response.delete_cookie(COOKIE, path="/")
        return response

    async def uninstall(self, request: Request) -> Response:
        await self.installs.uninstall(request.path_params["portal_id"])
        return Response(status_code=204)

    async def crm_token(self, request: Request) -> Response:
        try:
            token = await self.installs.access_token(
                request.path_params["portal_id"], await _rejected(request)
            )
        except PortalNotInstalled:
            return problem(404, "not_installed", "The app is not installed in this portal.")
        except (RefreshBusy, TransientError):
            return _try_again()
        left = int((token.expires_at - self.installs.clock()).total_seconds())
        return JSONResponse(
            {"access_token": token.access_token, "token_type": "bearer", "expires_in": left},
            headers=NO_STORE,
        )


def _install_refused(exc: Exception) -> HTMLResponse:
    """The page a person sees when the CRM's OAuth callback did not install or sign in."""
    if isinstance(exc, InvalidState):
        return _page(
            400,
            "This link has expired",
            "This install or sign-in link has expired, was already used, or was started "
            "in another browser. Start again.",
        )
    if isinstance(exc, UnknownPerson):
        return _page(400, "The CRM did not say who you are", "Nobody was signed in. Start again.")
    if isinstance(exc, TransientError):
        return _page(
            503,
            "The CRM is not answering",
            "The CRM did not answer in time; nothing was changed. Start again in a minute.",
        )
    if isinstance(exc, MissingScopes):
        return _page(
            403,
            "dealbooks needs more permissions",
            "The CRM granted dealbooks fewer permissions than it needs, so it was not "
            f"installed. Missing: {', '.join(exc.missing)}. Ask a super admin of the "
            "portal to install the app and accept every permission it asks for.",
        )
    assert isinstance(exc, CrmOAuthRefused)
    log.warning("crm code exchange refused", status=exc.status)
    return _page(400, "The CRM refused the install", "Start the install again.")


# ---------------------------------------------------------------- QuickBooks side


class QuickBooksRoutes:
    """The QuickBooks side: the companies connected to a portal, and their tokens."""

    def __init__(self, service: ConnectorAuth, installs: Installs) -> None:
        self.service = service
        # Who finishes a connection: the person of the session cookie.
        self.installs = installs
        self.settings = service.settings

    def routes(self, g: Guard) -> list[Route]:
        accounts = PORTAL + "/accounts"
        return [
            g.route("/oauth/callback", self.qbo_callback, ["GET"], Access.PUBLIC),
            g.route(PORTAL + "/quickbooks/connect", self.connect, ["GET"], *PERSON),
            g.route(accounts, self.list_accounts, ["GET"], *PERSON, Access.SERVICE),
            g.route(accounts + "/{account_id}", self.disconnect, ["DELETE"], *PERSON),
            g.route(
                INTERNAL + "/accounts/{account_id}/access-token",
                self.access_token,
                ["POST"],
                Access.SERVICE,
            ),
        ]

    async def connect(self, request: Request) -> Response:
        caller = _caller(request)
        url = await self.service.start_connect(
            request.path_params["portal_id"], caller.user_id or ""
        )
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    async def qbo_callback(self, request: Request) -> Response:
        q = request.query_params
        if q.get("error"):
            return self._connect_refused(
                q["error"], 400, "QuickBooks did not authorize the connection; nothing changed."
            )
        code, state, realm_id = q.get("code"), q.get("state"), q.get("realmId")
        if not code or not state or not realm_id:
            return problem(400, "invalid_request", "The QuickBooks redirect is incomplete.")
        session = await self.installs.session(request.cookies.get(COOKIE))
        try:
            connected = await self.service.complete_connect(
                state, code, realm_id, session.user_id if session else None
            )
        except InvalidState:
            return self._connect_refused(
                "invalid_state",
                400,
                "This connection link has expired, was already used, or was started by "
                "someone else. Start the connection again from dealbooks.",
            )
        except ConnectRefused as refused:
            return self._connect_refused(refused.code, 403, refused.message)
        except OAuthError as exc:
            log.warning("code exchange refused", error=exc.error)
            return self._connect_refused(
                "authorization_failed", 400, "QuickBooks refused the authorization."
            )
        return self._connected(connected)

    def _connected(self, connected: Connected) -> Response:
        """Back to the console with the new account, or the outcome itself."""
        target = self.settings.connected_redirect_url
        if target:
            query = urlencode({"portal_id": connected.portal_id, "account_id": connected.realm_id})
            return RedirectResponse(f"{target}?{query}", status_code=302)
        return JSONResponse(
            {
                "status": "connected",
                "portal_id": connected.portal_id,
                "account_id": connected.realm_id,
                "company_name": connected.facts.company_name,
                "reason": connected.reason.value,
            }
        )

    def _connect_refused(self, code: str, status: int, message: str) -> Response:
        """A connection that did not happen: back to the console with the reason's code when
        there is one (it says it in the person's language), else the problem itself."""
        target = self.settings.connected_redirect_url
        if target:
            return RedirectResponse(f"{target}?{urlencode({'error': code})}", status_code=302)
        return problem(status, code, message)

    @describe(answers={200: AccountsAnswer})
    async def list_accounts(self, request: Request) -> Response:
        docs = await self.service.list_accounts(request.path_params["portal_id"])
        return JSONResponse({"results": [_account_view(d) for d in docs]})

    async def disconnect(self, request: Request) -> Response:
        try:
            await self.service.disconnect(
                request.path_params["portal_id"], request.path_params["account_id"]
            )
        except AccountNotFound:
            return problem(404, "not_found", "No such connected account in this portal.")
        return Response(status_code=204)

    async def access_token(self, request: Request) -> Response:
        try:
            token = await self.service.access_token(
                request.path_params["portal_id"],
                request.path_params["account_id"],
                await _rejected(request),
            )
        except AccountNotFound:
            return problem(404, "not_found", "No such connected account in this portal.")
        except ReauthRequired:
            return problem(409, "reauth_required", "The account must be reconnected by a person.")
        except (RefreshBusy, TransientError):
            return _try_again()
        now = self.service.clock()
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


# ---------------------------------------------------------------- both sides


def _caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


def _page(status: int, title: str, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · dealbooks</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></main>"
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


async def _rejected(request: Request) -> str | None:
    """The digest of a token the caller's API rejected, if it says so."""
    if not await request.body():
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    found = body.get("rejected_sha256") if isinstance(body, dict) else None
    return str(found) if found else None


def _try_again() -> JSONResponse:
    return JSONResponse(
        {"error": "try_again", "message": "Token refresh in progress or failing."},
        status_code=503,
        headers={"Retry-After": "1"},
    )
