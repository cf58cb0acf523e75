"""Who may call which route: decided once per route, checked the same way in every service.

Every HTTP route of every service is built through a `Guard` with an `Access` decision:

- `SERVICE`: another dealbooks service, with a credential from `DEALBOOKS_SERVICE_CREDENTIALS`;
- `OPERATOR`: a person running dealbooks, with one from `DEALBOOKS_OPERATOR_CREDENTIALS`;
- `PORTAL`: a signed-in person acting on one CRM portal, with a short-lived *portal grant*
  (a bearer token connector-auth mints from a sign-in session, signed with
  `DEALBOOKS_GRANT_KEYS`) that names the portal of the route's `{portal_id}`;
- `CRM_SIGNED`: the CRM itself (an app-card fetch, a workflow action), signed with HubSpot's v3
  signature and the app's client secret; the portal is the one the signed request names;
- `SESSION`: connector-auth's own browser routes, with its session cookie (it passes the check);
- `PUBLIC`: only the routes named in `PUBLIC_BY_DESIGN`, each with the reason it is public.

No credential, a wrong one, an expired grant, or a forged, stale or replayed signature is a
401; a valid credential for another portal is a 403. Credentials are compared in constant time
and never logged. `Guard.api` refuses to build an app with a route that has no decision, so a new
route cannot be added without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import parse_qsl

from dealbooks_crm import InvalidWebhookSignature, verify_signature_v3
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dealbooks_kit.failures import ANSWERED, failure_answer
from dealbooks_kit.logging import get_logger
from dealbooks_kit.priority import person_waiting

log = get_logger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class Access(StrEnum):
    """Who may call a route."""

    PUBLIC = "public"
    SERVICE = "service"
    OPERATOR = "operator"
    PORTAL = "portal"
    CRM_SIGNED = "crm-signed"
    SESSION = "session"


# The callers who are people using the product: a signed-in person's grant or session, and the
# CRM's signed requests from the app card a person is looking at.
PEOPLE = frozenset({Access.PORTAL, Access.SESSION, Access.CRM_SIGNED})

# Every route anyone may call, and why. `Guard.route(..., Access.PUBLIC)` refuses any other path.
PUBLIC_BY_DESIGN: dict[str, str] = {
    "/healthz": "liveness probe; says only that the process runs",
    "/readyz": "readiness probe; says only whether Kafka and MongoDB answer",
    "/metrics": "Prometheus counters; no tenant data, scraped on the cluster network",
    "/docs/asyncapi": "the event catalogue; no tenant data",
    "/docs/asyncapi.json": "the event catalogue as JSON; no tenant data",
    "/docs/openapi.json": "the HTTP API's description (OpenAPI); no tenant data",
    "/webhooks/quickbooks": "QuickBooks webhook intake; every delivery is signature-checked",
    "/webhooks/crm": "CRM webhook intake; every delivery is signature-checked (v3)",
    "/oauth/callback": "QuickBooks OAuth redirect; checked by its signed single-use state",
    "/install": "starts the CRM's OAuth install; the CRM asks the person for consent",
    "/signin": "starts sign-in with the CRM; the CRM identifies the person",
    "/oauth/crm/callback": "CRM OAuth redirect; checked by its signed single-use state",
    "/": "the console's front page: a sign-in button, or a redirect for a signed-in person",
    "/static/{name}": "the console's stylesheet and script; no tenant data",
    "/launch": "opens the console from the CRM app card; checked by its signed, short-lived ticket",
}

GRANT_PREFIX = "dbg1"
SESSION_PREFIX = "dbs1"


class AuthSettings(BaseSettings):
    """The credentials every service checks callers against (unprefixed, shared by all).

    `DEALBOOKS_MODE=production` makes a service refuse to start without the credentials its
    routes need (`Guard.require`)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    dealbooks_mode: Literal["development", "production"] = Field(
        default="development", validation_alias=AliasChoices("DEALBOOKS_MODE")
    )
    # Comma-separated, so a credential can be rotated without downtime.
    service_credentials: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("DEALBOOKS_SERVICE_CREDENTIALS")
    )
    operator_credentials: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("DEALBOOKS_OPERATOR_CREDENTIALS")
    )
    # "kid:secret" separated by commas: the first signs, all of them verify.
    grant_keys: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("DEALBOOKS_GRANT_KEYS")
    )
    # The CRM app's client secret: HubSpot signs its requests to the app with it.
    crm_client_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("CRM_CLIENT_SECRET")
    )
    # This service's public URL as the CRM calls it (scheme, host and any path prefix the
    # ingress strips), which the CRM's signatures cover; empty: the URL as received. Per
    # service (`<PREFIX>PUBLIC_BASE_URL`).
    public_base_url: str = ""


class MissingCredential(SystemExit):
    """A production service lacks a credential it needs: it must not start."""


@dataclass(frozen=True)
class Caller:
    """Who made a request, once the guard has checked it."""

    access: Access
    portals: frozenset[str] = frozenset()
    user_id: str | None = None
    email: str | None = None
    session_id: str | None = None

    def may_act_for(self, portal_id: str) -> bool:
        return portal_id in self.portals


# ------------------------------------------------------------------ signed tokens


class Signer:
    """HMAC-SHA256 signed, expiring JSON tokens with rotating keys.

    Keys are "kid:secret" separated by commas; the first signs, every one verifies, so a new
    key is put first and the old one removed once tokens signed with it have expired."""

    def __init__(self, spec: str, prefix: str) -> None:
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._prefix = prefix
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            if not sep or not kid or len(secret) < 16:
                raise ValueError("signing keys are 'kid:secret' with a secret of 16+ characters")
            self._keys[kid] = secret.encode()
            self._current = self._current or kid

    def __bool__(self) -> bool:
        return self._current is not None

    def sign(self, claims: dict[str, Any], ttl_seconds: float, now: float | None = None) -> str:
        if self._current is None:
            raise ValueError("no signing key is configured")
        issued = int(time.time() if now is None else now)
        body = {**claims, "iat": issued, "exp": issued + int(ttl_seconds)}
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        head = f"{self._prefix}.{self._current}.{payload}"
        return f"{head}.{self._mac(self._current, head)}"

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The claims of a token this signer made and that has not expired; else None."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != self._prefix or parts[1] not in self._keys:
            return None
        head = ".".join(parts[:3])
        if not hmac.compare_digest(self._mac(parts[1], head).encode(), parts[3].encode()):
            return None
        try:
            claims = json.loads(_unb64(parts[2]))
        except ValueError:
            return None
        current = time.time() if now is None else now
        if not isinstance(claims, dict) or not float(claims.get("exp", 0)) > current:
            return None
        return claims

    def _mac(self, kid: str, head: str) -> str:
        return _b64(hmac.new(self._keys[kid], head.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def grant_claims(
    user_id: str, email: str | None, portals: Iterable[str], sid: str
) -> dict[str, Any]:
    """What a portal grant says: the person, their portals and the session it came from."""
    return {"sub": user_id, "email": email, "portals": sorted(set(portals)), "sid": sid}


def mint_grant(
    keys: str,
    portals: Iterable[str],
    *,
    user_id: str,
    email: str | None = None,
    sid: str = "",
    ttl_seconds: float = 300.0,
) -> str:
    """A portal grant signed with `keys` (connector-auth mints them from sessions)."""
    return Signer(keys, GRANT_PREFIX).sign(grant_claims(user_id, email, portals, sid), ttl_seconds)


# ------------------------------------------------------------------ replays


class SeenSignatures:
    """Signatures of CRM-signed requests seen within the signature window, so a captured
    request sent again is refused. Per process: a replay to another replica within the window
    is caught only by the effect's own idempotency (every such route is idempotent)."""

    def __init__(self, window_seconds: float = 300.0, limit: int = 100_000) -> None:
        self._window = window_seconds
        self._limit = limit
        self._seen: dict[str, float] = {}

    def first_time(self, signature: str, now: float | None = None) -> bool:
        current = time.monotonic() if now is None else now
        if len(self._seen) >= self._limit:
            self._seen = {s: t for s, t in self._seen.items() if current - t < self._window}
        if signature in self._seen and current - self._seen[signature] < self._window:
            return False
        self._seen[signature] = current
        return True


# ------------------------------------------------------------------ the guard


def problem(status: int, error: str, message: str) -> JSONResponse:
    """The error body every guarded route answers with."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


async def _failure_response(request: Request, exc: Exception) -> Response:
    answer = failure_answer(exc)
    if answer is None:
        raise exc
    status, body, headers = answer
    log.warning("call failed", path=request.url.path, failure=body["error"], status=status)
    return JSONResponse(body, status_code=status, headers=headers)


def _bearer(request: Request) -> str:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def _matches(presented: str, accepted: Sequence[bytes]) -> bool:
    # Compare against every credential, so timing does not tell which one nearly matched.
    given = presented.encode()
    return bool(given) and any([hmac.compare_digest(given, c) for c in accepted])


def _credentials(raw: SecretStr) -> list[bytes]:
    return [c.strip().encode() for c in raw.get_secret_value().split(",") if c.strip()]


@dataclass
class Guard:
    """Builds a service's routes with their access decisions, and checks callers."""

    settings: AuthSettings
    service: str
    # The URL the CRM signs requests to; empty: the settings' `public_base_url`.
    public_base_url: str = ""
    # connector-auth's cookie check, for `Access.SESSION` routes.
    session: Callable[[Request], Awaitable[Caller | None]] | None = None
    seen: SeenSignatures = field(default_factory=SeenSignatures)
    # How a refusal is answered; default: as it is (a JSON problem). The console turns it into
    # a sign-in redirect or a page.
    refused: Callable[[Request, Response], Response] | None = None

    def __post_init__(self) -> None:
        self.public_base_url = self.public_base_url or self.settings.public_base_url
        self._service = _credentials(self.settings.service_credentials)
        self._operator = _credentials(self.settings.operator_credentials)
        self.grants = Signer(self.settings.grant_keys.get_secret_value(), GRANT_PREFIX)
        self._crm_secret = self.settings.crm_client_secret.get_secret_value()

    # ---- building

    def route(
        self,
        path: str,
        endpoint: Endpoint,
        methods: list[str],
        *access: Access,
        portal_param: str = "portal_id",
    ) -> Route:
        """A route that admits only callers of the given kinds (see the module docstring).

        A `PORTAL` route must have `{portal_param}` in its path: the grant must name it."""
        if not access:
            raise ValueError(f"{path}: say who may call it")
        if Access.PUBLIC in access and path not in PUBLIC_BY_DESIGN:
            raise ValueError(f"{path} is not in PUBLIC_BY_DESIGN; it cannot be public")
        if Access.PORTAL in access and "{" + portal_param not in path:
            raise ValueError(f"{path}: a portal route needs {{{portal_param}}} in its path")
        kinds = frozenset(access)

        async def guarded(request: Request) -> Response:
            caller, refusal = await self.check(request, kinds, portal_param)
            if refusal is not None:
                return self.refused(request, refusal) if self.refused else refusal
            request.state.caller = caller
            # A person's request goes first in the API budgets; a service's call or an
            # operator's sweep waits its turn (`dealbooks_kit.priority`).
            with person_waiting(caller is not None and caller.access in PEOPLE):
                return await endpoint(request)

        route = Route(path, guarded, methods=methods)
        route.access = kinds  # type: ignore[attr-defined]  # read by the route-matrix test
        # What the endpoint declared of its body and answers (`dealbooks_kit.openapi`).
        route.served_by = endpoint  # type: ignore[attr-defined]
        return route

    def api(self, routes: Sequence[BaseRoute], **kwargs: Any) -> Starlette:
        """The service's Starlette app; every route must have come from `route`."""
        for r in routes:
            if not getattr(r, "access", None):
                raise ValueError(f"{getattr(r, 'path', r)} has no access decision")
        # The failure policy answers failures of the calls a route makes (503 with
        # Retry-After, 409 reconnect, 404 gone...); a service's own handlers come first.
        handlers: dict[Any, Any] = dict.fromkeys(ANSWERED, _failure_response)
        handlers.update(kwargs.pop("exception_handlers", None) or {})
        return Starlette(routes=list(routes), exception_handlers=handlers, **kwargs)

    def require(self, *kinds: Access) -> None:
        """In production, refuse to start without the credentials `kinds` need."""
        if self.settings.dealbooks_mode != "production":
            return
        missing = {
            Access.SERVICE: ("DEALBOOKS_SERVICE_CREDENTIALS", self._service),
            Access.OPERATOR: ("DEALBOOKS_OPERATOR_CREDENTIALS", self._operator),
            Access.PORTAL: ("DEALBOOKS_GRANT_KEYS", self.grants),
            Access.CRM_SIGNED: ("CRM_CLIENT_SECRET", self._crm_secret),
        }
        for kind in kinds:
            name, value = missing.get(kind, ("", True))
            if not value:
                raise MissingCredential(
                    f"{self.service}: {name} is empty; it is required in production mode"
                )

    # ---- checking

    async def check(
        self, request: Request, kinds: frozenset[Access], portal_param: str = "portal_id"
    ) -> tuple[Caller | None, Response | None]:
        """The caller, or the refusal to answer with (401 unknown, 403 another portal)."""
        if Access.PUBLIC in kinds:
            return Caller(Access.PUBLIC), None
        bearer = _bearer(request)
        if bearer:
            if Access.SERVICE in kinds and _matches(bearer, self._service):
                return Caller(Access.SERVICE), None
            if Access.OPERATOR in kinds and _matches(bearer, self._operator):
                return Caller(Access.OPERATOR), None
            if Access.PORTAL in kinds and self.grants:
                claims = self.grants.verify(bearer)
                if claims is not None:
                    caller = Caller(
                        Access.PORTAL,
                        frozenset(str(p) for p in claims.get("portals") or ()),
                        str(claims.get("sub")),
                        claims.get("email"),
                        claims.get("sid"),
                    )
                    return self._for_portal(caller, request, portal_param)
        if Access.SESSION in kinds and self.session is not None:
            person = await self.session(request)
            if person is not None:
                return self._for_portal(person, request, portal_param)
        if Access.CRM_SIGNED in kinds and "x-hubspot-signature-v3" in request.headers:
            signed, refusal = await self._crm_signed(request)
            if signed is None:
                return None, refusal
            return self._for_portal(signed, request, portal_param)
        return None, problem(401, "unauthenticated", "A valid credential is required.")

    @staticmethod
    def _for_portal(
        caller: Caller, request: Request, portal_param: str
    ) -> tuple[Caller | None, Response | None]:
        portal = request.path_params.get(portal_param)
        if portal is not None and not caller.may_act_for(str(portal)):
            return None, problem(403, "forbidden", "You are not signed in for this portal.")
        return caller, None

    async def _crm_signed(self, request: Request) -> tuple[Caller | None, Response | None]:
        refused = problem(401, "invalid_signature", "The request is not signed by the CRM.")
        if not self._crm_secret:
            return None, refused
        body = await request.body()
        signature = request.headers.get("x-hubspot-signature-v3")
        try:
            verify_signature_v3(
                client_secret=self._crm_secret,
                method=request.method,
                uri=self._public_url(request),
                body=body,
                signature=signature,
                timestamp=request.headers.get("x-hubspot-request-timestamp"),
            )
        except InvalidWebhookSignature:
            return None, refused
        if not self.seen.first_time(str(signature)):
            return None, problem(401, "replayed", "This signed request was already received.")
        portal = signed_portal(request.url.query, body)
        if portal is None:
            return None, problem(401, "invalid_signature", "The signed request names no portal.")
        user = dict(parse_qsl(request.url.query)).get("userId")
        return Caller(Access.CRM_SIGNED, frozenset({portal}), user_id=user), None

    def _public_url(self, request: Request) -> str:
        if not self.public_base_url:
            return str(request.url)
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{self.public_base_url.rstrip('/')}{request.url.path}{query}"


def signed_portal(query: str, body: bytes) -> str | None:
    """The portal a CRM-signed request names: `portalId` in its (signed) query, as card fetches
    send it, or `origin.portalId` in its (signed) body, as workflow actions send it."""
    found = dict(parse_qsl(query)).get("portalId")
    if found:
        return found
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None
    origin = data.get("origin") if isinstance(data, dict) else None
    portal = origin.get("portalId") if isinstance(origin, dict) else None
    return str(portal) if portal is not None else None


__all__ = [
    "PUBLIC_BY_DESIGN",
    "Access",
    "AuthSettings",
    "Caller",
    "Guard",
    "MissingCredential",
    "SeenSignatures",
    "Signer",
    "grant_claims",
    "mint_grant",
    "problem",
    "signed_portal",
]
