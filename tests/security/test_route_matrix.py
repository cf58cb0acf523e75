"""Every HTTP route of every service, read from the apps themselves, against every kind of
caller who must be refused.

Each service's ASGI app is built by its own `build_app(settings)` with dummy settings whose
Kafka and MongoDB addresses have nothing listening: building connects to neither, and no
request below reaches them. The routes are the kit's fixed ones (`ServiceApp.routes`: health,
readiness, metrics, the AsyncAPI docs) and the service's Starlette API (`ServiceApp._api`), so a
route added without an access decision fails here.

While the apps are built, `Guard.route` is given a sentinel in place of each endpoint, which
records that it was entered. A refusal must come from the guard before the endpoint, so every
refusal asserts that no sentinel was entered: nothing the endpoint would read or change is
touched. A request from an admitted caller must enter it, so the refusals are not vacuous.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import schemathesis
from dealbooks_crm import signature_v3
from dealbooks_kit import PUBLIC_BY_DESIGN, Access, Guard, ServiceApp
from dealbooks_kit.auth import MissingCredential, mint_grant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

KEYS = "matrix:route-matrix-grant-key-0123456789"
SERVICE_CREDENTIAL = "matrix-service-credential"
OPERATOR_CREDENTIAL = "matrix-operator-credential"
CRM_SECRET = "matrix-crm-client-secret"
PORTAL, OTHER_PORTAL = "62515", "99999"
BASE_URL = "http://svc"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"

# The settings each credential kind needs (emptied to show production refuses to start).
CREDENTIAL_OF = {
    Access.SERVICE: "service_credentials",
    Access.OPERATOR: "operator_credentials",
    Access.PORTAL: "grant_keys",
    Access.CRM_SIGNED: "crm_client_secret",
}


def _settings(**overrides: Any) -> dict[str, Any]:
    """Dummy settings every service accepts; nothing listens on port 9."""
    return {
        "kafka_bootstrap": "127.0.0.1:9",
        "mongodb_uri": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200",
        "connector_auth_url": "http://127.0.0.1:9",
        "connector_auth_credential": "matrix-connector-auth-credential",
        "service_credentials": SERVICE_CREDENTIAL,
        "operator_credentials": OPERATOR_CREDENTIAL,
        "grant_keys": KEYS,
        "crm_client_secret": CRM_SECRET,
        **overrides,
    }


# ---- each service's own build_app, imported only when its case runs


def _connector_auth(**overrides: Any) -> ServiceApp:
    from connector_auth.app import build_app
    from connector_auth.settings import ConnectorAuthSettings

    token_key = base64.urlsafe_b64encode(b"matrix-token-key-32-bytes-long!!").decode().rstrip("=")
    extra = {
        "state_secret": "matrix-oauth-state-secret",
        "session_keys": "s1:matrix-session-key-0123456789",
        "token_keys": f"k1:{token_key}",
    }
    return build_app(ConnectorAuthSettings(**_settings(**extra, **overrides)))


def _webhook_gateway(**overrides: Any) -> ServiceApp:
    from webhook_gateway.app import build_app
    from webhook_gateway.settings import WebhookGatewaySettings

    extra = {"qbo_verifier_token": "matrix-qbo-verifier-token"}
    return build_app(WebhookGatewaySettings(**_settings(**extra, **overrides)))


def _invoice_builder(**overrides: Any) -> ServiceApp:
    from invoice_builder.app import build_app
    from invoice_builder.settings import InvoiceBuilderSettings

    return build_app(InvoiceBuilderSettings(**_settings(**overrides)))


def _status_tracker(**overrides: Any) -> ServiceApp:
    from status_tracker.app import build_app
    from status_tracker.settings import StatusTrackerSettings

    return build_app(StatusTrackerSettings(**_settings(**overrides)))


def _reminders(**overrides: Any) -> ServiceApp:
    from reminders.app import build_app
    from reminders.settings import RemindersSettings

    return build_app(RemindersSettings(**_settings(**overrides)))


def _contact_sync(**overrides: Any) -> ServiceApp:
    from contact_sync.app import Settings, build_app

    return build_app(Settings(**_settings(**overrides)))


def _product_sync(**overrides: Any) -> ServiceApp:
    from product_sync.app import Settings, build_app

    return build_app(Settings(**_settings(**overrides)))


def _mapping_registry(**overrides: Any) -> ServiceApp:
    from mapping_registry.app import Settings, build_app

    return build_app(Settings(**_settings(**overrides)))


def _console(**overrides: Any) -> Starlette:
    from console.app import build_app
    from console.settings import ConsoleSettings

    return build_app(ConsoleSettings(**_settings(**overrides)))


SERVICES: dict[str, Callable[..., ServiceApp | Starlette]] = {
    "connector-auth": _connector_auth,
    "webhook-gateway": _webhook_gateway,
    "invoice-builder": _invoice_builder,
    "status-tracker": _status_tracker,
    "reminders": _reminders,
    "contact-sync": _contact_sync,
    "product-sync": _product_sync,
    "mapping-registry": _mapping_registry,
    "console": _console,
}

every_service = pytest.mark.parametrize("service", list(SERVICES))


# ---- building with sentinels, and the routes an app has


@dataclass(frozen=True)
class Decided:
    """One API route and who may call it."""

    path: str
    methods: tuple[str, ...]
    access: frozenset[Access]

    @property
    def url_path(self) -> str:
        """The path with every parameter set to PORTAL (whichever one names the portal)."""
        return re.sub(r"\{[^}]+\}", PORTAL, self.path)

    def admits(self, kind: Access) -> bool:
        return kind in self.access


@dataclass
class Built:
    """A service's app, built with sentinel endpoints, and the routes entered so far."""

    service: str
    app: ServiceApp | Starlette
    entered: list[str] = field(default_factory=list)

    def kit_paths(self) -> list[str]:
        # The console is a plain Starlette app: it has no kit routes, only its guarded ones.
        if not isinstance(self.app, ServiceApp):
            return []
        return [path for path, _handler in self.app.routes]

    def decided(self) -> list[Decided]:
        """The API's routes; each must carry an access decision."""
        api = self.app._api if isinstance(self.app, ServiceApp) else self.app
        while not hasattr(api, "routes") and hasattr(api, "app"):  # under an ASGI middleware
            api = api.app
        routes = list(getattr(api, "routes", []))
        # Every service has an API: finding none means the routes were not reached, and every
        # check below would pass without checking anything.
        assert routes, f"{self.service}: no API routes found under {type(api).__name__}"
        undecided = [getattr(r, "path", repr(r)) for r in routes if not getattr(r, "access", None)]
        assert not undecided, f"{self.service}: routes without an access decision: {undecided}"
        return [
            Decided(r.path, tuple(sorted(set(r.methods or ()) - {"HEAD"})), frozenset(r.access))
            for r in routes
        ]

    def guarded(self) -> list[Decided]:
        return [r for r in self.decided() if not r.admits(Access.PUBLIC)]

    async def send(
        self,
        route: Decided,
        method: str,
        *,
        bearer: str | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        body: bytes = b"",
    ) -> httpx.Response:
        sent = dict(headers or {})
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        if body:
            sent["Content-Type"] = "application/json"
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            url = route.url_path + (f"?{query}" if query else "")
            return await http.request(method, url, headers=sent, content=body or None)

    async def refused(self, route: Decided, method: str, **request: Any) -> int:
        """The status of a request that must be refused; fails if it reached the endpoint."""
        self.entered.clear()
        answer = await self.send(route, method, **request)
        assert self.entered == [], (
            f"{self.service} {method} {route.path}: the endpoint was entered ({answer.status_code})"
        )
        return answer.status_code

    async def admitted(self, route: Decided, method: str, **request: Any) -> None:
        """A request that must reach the endpoint (the sentinel answers 200)."""
        self.entered.clear()
        answer = await self.send(route, method, **request)
        assert (answer.status_code, self.entered) == (200, [route.path]), (
            f"{self.service} {method} {route.path}: an admitted caller got "
            f"{answer.status_code} {answer.text[:200]}"
        )


@pytest.fixture
def build(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Built]]:
    """Builds a service's app with every guarded endpoint replaced by a sentinel."""
    entered: list[str] = []
    route = Guard.route

    def with_sentinel(
        guard: Guard,
        path: str,
        endpoint: Any,
        methods: list[str],
        *access: Access,
        portal_param: str = "portal_id",
    ) -> Any:
        async def sentinel(request: Request) -> Response:
            entered.append(path)
            return JSONResponse({"entered": path})

        return route(guard, path, sentinel, methods, *access, portal_param=portal_param)

    monkeypatch.setattr(Guard, "route", with_sentinel)

    def make(service: str, **overrides: Any) -> Built:
        return Built(service, SERVICES[service](**overrides), entered)

    yield make


def _grant(*portals: str, keys: str = KEYS, ttl: float = 300.0) -> str:
    return mint_grant(keys, portals, user_id="matrix-user", ttl_seconds=ttl)


def _signed(
    route: Decided, method: str, body: bytes, *, secret: str = CRM_SECRET, age_ms: int = 0
) -> dict[str, str]:
    """HubSpot v3 signature headers for a request to `route` naming PORTAL."""
    timestamp = str(int(time.time() * 1000) - age_ms)
    url = f"{BASE_URL}{route.url_path}?portalId={PORTAL}"
    return {
        "X-HubSpot-Signature-v3": signature_v3(secret, method, url, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def _body(method: str) -> bytes:
    return b"{}" if method in {"POST", "PUT", "PATCH"} else b""


# ---- what the apps have


@every_service
def test_the_kits_fixed_routes_are_public_by_design(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    unlisted = [p for p in built.kit_paths() if p not in PUBLIC_BY_DESIGN]
    assert not unlisted, (
        f"{service}: the kit serves {unlisted} to anyone, and PUBLIC_BY_DESIGN does not list them"
    )


@every_service
def test_every_api_route_has_an_access_decision(build: Callable[..., Built], service: str) -> None:
    assert build(service).decided() is not None


@every_service
def test_public_routes_are_exactly_the_listed_ones_the_app_has(
    build: Callable[..., Built], service: str
) -> None:
    decided = build(service).decided()
    public = {r.path for r in decided if r.admits(Access.PUBLIC)}
    listed = {r.path for r in decided if r.path in PUBLIC_BY_DESIGN}
    assert public == listed
    assert all(r.access == {Access.PUBLIC} for r in decided if r.path in public)


@every_service
async def test_public_routes_answer_without_a_credential(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    for route in built.decided():
        if route.admits(Access.PUBLIC):
            for method in route.methods:
                await built.admitted(route, method, body=_body(method))


# ---- who is refused, and that the refusal comes before the endpoint


@every_service
async def test_no_credential_is_401(build: Callable[..., Built], service: str) -> None:
    built = build(service)
    for route in built.guarded():
        for method in route.methods:
            assert await built.refused(route, method, body=_body(method)) == 401
            assert await built.refused(route, method, bearer="", body=_body(method)) == 401


@every_service
async def test_a_grant_for_another_portal_is_refused(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    for route in built.guarded():
        for method in route.methods:
            body = _body(method)
            other = await built.refused(route, method, bearer=_grant(OTHER_PORTAL), body=body)
            assert other in ({403, 404} if route.admits(Access.PORTAL) else {401}), route.path
            for refused in (
                _grant(PORTAL, ttl=-1),  # expired
                _grant(PORTAL, keys="stranger:not-our-signing-key-0123456789"),
                _grant(PORTAL)[:-4] + "AAAA",  # altered signature
            ):
                assert await built.refused(route, method, bearer=refused, body=body) == 401


@every_service
async def test_a_wrong_service_or_operator_credential_is_401(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    valid = {
        Access.SERVICE: SERVICE_CREDENTIAL,
        Access.OPERATOR: OPERATOR_CREDENTIAL,
        Access.PORTAL: _grant(PORTAL),
    }
    for route in built.guarded():
        for method in route.methods:
            body = _body(method)
            for wrong in ("wrong-credential", SERVICE_CREDENTIAL + "x", OPERATOR_CREDENTIAL[:-1]):
                assert await built.refused(route, method, bearer=wrong, body=body) == 401
            # A valid credential of a kind the route does not admit opens nothing either.
            for kind, credential in valid.items():
                if not route.admits(kind):
                    status = await built.refused(route, method, bearer=credential, body=body)
                    assert status == 401, (route.path, kind)


@every_service
async def test_a_forged_stale_or_replayed_crm_signature_is_401(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    query = f"portalId={PORTAL}"
    for route in built.guarded():
        for method in route.methods:
            body = _body(method)
            forged = _signed(route, method, body, secret="not-the-client-secret")
            stale = _signed(route, method, body, age_ms=600_000)
            for headers in (forged, stale):
                status = await built.refused(route, method, headers=headers, query=query, body=body)
                assert status == 401
            valid = _signed(route, method, body)
            if route.admits(Access.CRM_SIGNED):
                await built.admitted(route, method, headers=valid, query=query, body=body)
            replayed = await built.refused(route, method, headers=valid, query=query, body=body)
            assert replayed == 401


# ---- the refusals are not vacuous: admitted callers get through


@every_service
async def test_an_admitted_caller_reaches_the_endpoint(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    credential = {
        Access.SERVICE: SERVICE_CREDENTIAL,
        Access.OPERATOR: OPERATOR_CREDENTIAL,
        Access.PORTAL: _grant(PORTAL),
    }
    for route in built.guarded():
        for method in route.methods:
            body = _body(method)
            for kind in route.access & credential.keys():
                await built.admitted(route, method, bearer=credential[kind], body=body)
            if route.admits(Access.CRM_SIGNED):
                headers = _signed(route, method, body)
                await built.admitted(
                    route, method, headers=headers, query=f"portalId={PORTAL}", body=body
                )
            # Routes open only to SESSION need connector-auth's session store; its own tests
            # sign people in.


# ---- production refuses to start without what its routes check


@every_service
def test_production_mode_refuses_to_start_without_a_credential_its_routes_need(
    build: Callable[..., Built], service: str
) -> None:
    needed = {kind for r in build(service).decided() for kind in r.access} & CREDENTIAL_OF.keys()
    assert build(service, dealbooks_mode="production").app is not None
    for kind in needed:
        with pytest.raises(MissingCredential):
            build(service, dealbooks_mode="production", **{CREDENTIAL_OF[kind]: ""})


# ---- generated bad input: whatever an unadmitted caller sends, no 5xx and no endpoint


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
fuzzed_request = st.fixed_dictionaries(
    {
        "authorization": st.one_of(
            st.none(),
            header_text,
            header_text.map(lambda t: f"Bearer {t}"),
            st.sampled_from(["dbg1", "dbg1.matrix", "dbg1.matrix.e30.AAAA", "Bearer dbg1...."]).map(
                lambda t: f"Bearer {t}"
            ),
        ),
        "signature": st.one_of(st.none(), header_text),
        "timestamp": st.one_of(st.none(), header_text, st.integers().map(str)),
        "cookie": st.one_of(st.none(), header_text),
        "query": st.one_of(st.just(""), header_text.map(lambda t: f"portalId={t}")),
        "body": st.binary(max_size=200),
    }
)


@every_service
def test_generated_bad_requests_never_reach_an_endpoint_nor_get_a_5xx(
    build: Callable[..., Built], service: str
) -> None:
    built = build(service)
    routes = [(route, method) for route in built.guarded() for method in route.methods]
    if not routes:
        return  # webhook-gateway: only public intakes, fuzzed against the running gateway

    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(pick=st.integers(min_value=0, max_value=len(routes) - 1), request=fuzzed_request)
    def fuzz(pick: int, request: dict[str, Any]) -> None:
        route, method = routes[pick]
        headers = {}
        if request["authorization"] is not None:
            headers["Authorization"] = request["authorization"]
        if request["signature"] is not None:
            headers["X-HubSpot-Signature-v3"] = request["signature"]
        if request["timestamp"] is not None:
            headers["X-HubSpot-Request-Timestamp"] = request["timestamp"]
        if request["cookie"] is not None:
            headers["Cookie"] = f"dealbooks_session={request['cookie']}"
        refusal = built.refused(
            route, method, headers=headers, query=request["query"], body=request["body"]
        )
        status = asyncio.run(refusal)
        assert status in {400, 401, 403, 404, 405, 413, 422}, (route.path, status)

    fuzz()


@every_service
def test_requests_generated_from_the_services_openapi_document_are_refused_without_a_credential(
    build: Callable[..., Built], service: str
) -> None:
    """schemathesis draws requests (paths, queries, bodies) from the service's committed OpenAPI
    document; sent without a credential, each guarded one is refused before its endpoint."""
    built = build(service)
    document = json.loads((DOCS / f"{service}.json").read_text())
    schema = schemathesis.openapi.from_dict(document)
    guarded = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.definition.raw.get("security")
    ]
    if not guarded:
        return  # webhook-gateway: only public intakes, fuzzed against the running gateway
    by_path = {route.path: route for route in built.guarded()}

    @settings(
        max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(guarded))
        case = data.draw(operation.as_strategy())
        sent = case.as_transport_kwargs(base_url=BASE_URL)
        route = by_path[operation.path]
        body = case.body if isinstance(case.body, dict | list) else None
        # Sent as a client must send it: whatever the path holds, percent-encoded.
        path = quote(urlsplit(sent["url"]).path, safe="/%")
        request = Decided(path, route.methods, route.access)
        status = asyncio.run(
            built.refused(
                request,
                operation.method.upper(),
                query=str(httpx.QueryParams(sent.get("params") or {})),
                body=json.dumps(body).encode() if body is not None else b"",
            )
        )
        assert status in {401, 404}, (operation.path, status)

    fuzz()
