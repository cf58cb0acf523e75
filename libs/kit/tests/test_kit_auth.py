"""The guard every route is built through: who gets in, who is refused, and how."""

from __future__ import annotations

import time

import httpx
import pytest
from dealbooks_crm import signature_v3
from dealbooks_kit.auth import (
    GRANT_PREFIX,
    Access,
    AuthSettings,
    Guard,
    MissingCredential,
    Signer,
    mint_grant,
)
from dealbooks_kit.priority import a_person_waits
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

KEYS = "k2:second-secret-0123456789,k1:first-secret-0123456789"
SECRET = "crm-client-secret"


def settings(**overrides: str) -> AuthSettings:
    values = {
        "service_credentials": "svc-new,svc-old",
        "operator_credentials": "ops-1",
        "grant_keys": KEYS,
        "crm_client_secret": SECRET,
        **overrides,
    }
    return AuthSettings(**values)  # type: ignore[arg-type]


async def echo(request: Request) -> Response:
    caller = request.state.caller
    return JSONResponse({"access": caller.access.value, "portals": sorted(caller.portals)})


def client(guard: Guard) -> httpx.AsyncClient:
    app = guard.api(
        [
            guard.route("/portals/{portal_id}/things", echo, ["GET"], Access.PORTAL),
            guard.route("/internal/things", echo, ["POST"], Access.SERVICE),
            guard.route("/sweeps/things", echo, ["POST"], Access.OPERATOR),
            guard.route("/crm/card", echo, ["GET", "POST"], Access.CRM_SIGNED),
            guard.route("/portals/{portal_id}/card", echo, ["GET"], Access.CRM_SIGNED),
            guard.route("/healthz", echo, ["GET"], Access.PUBLIC),
        ]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_grant_admits_its_own_portals_and_is_forbidden_elsewhere() -> None:
    grant = mint_grant(KEYS, ["62515"], user_id="u1")
    async with client(Guard(settings(), "test")) as http:
        own = await http.get("/portals/62515/things", headers=bearer(grant))
        other = await http.get("/portals/99999/things", headers=bearer(grant))
    assert own.status_code == 200
    assert own.json() == {"access": "portal", "portals": ["62515"]}
    assert other.status_code == 403


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nonsense",
        mint_grant("k9:unknown-secret-0123456789", ["62515"], user_id="u1"),
        mint_grant(KEYS, ["62515"], user_id="u1", ttl_seconds=-1),
        "svc-new",  # a service credential is not a person's grant
    ],
    ids=["none", "garbage", "foreign-key", "expired", "service-credential"],
)
async def test_anything_but_a_valid_grant_is_unauthenticated_on_a_portal_route(token: str) -> None:
    async with client(Guard(settings(), "test")) as http:
        answer = await http.get("/portals/62515/things", headers=bearer(token) if token else {})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_grant_whose_claims_were_altered_is_refused() -> None:
    head, kid, _payload, mac = mint_grant(KEYS, ["1"], user_id="u1").split(".")
    forged_payload = Signer(KEYS, GRANT_PREFIX).sign({"portals": ["62515"]}, 60).split(".")[2]
    forged = ".".join([head, kid, forged_payload, mac])
    async with client(Guard(settings(), "test")) as http:
        assert (await http.get("/portals/62515/things", headers=bearer(forged))).status_code == 401


async def test_every_listed_key_verifies_so_keys_rotate_without_downtime() -> None:
    old = mint_grant("k1:first-secret-0123456789", ["62515"], user_id="u1")
    async with client(Guard(settings(), "test")) as http:
        assert (await http.get("/portals/62515/things", headers=bearer(old))).status_code == 200


async def test_service_and_operator_credentials_open_only_their_own_routes() -> None:
    async with client(Guard(settings(), "test")) as http:
        assert (await http.post("/internal/things", headers=bearer("svc-old"))).status_code == 200
        assert (await http.post("/internal/things", headers=bearer("ops-1"))).status_code == 401
        assert (await http.post("/sweeps/things", headers=bearer("ops-1"))).status_code == 200
        assert (await http.post("/sweeps/things", headers=bearer("svc-new"))).status_code == 401
        assert (await http.post("/sweeps/things")).status_code == 401


async def test_a_persons_request_goes_first_in_the_budgets_a_services_or_operators_does_not() -> (
    None
):
    async def who_waits(request: Request) -> Response:
        return JSONResponse({"person_waits": a_person_waits()})

    guard = Guard(settings(), "test")
    app = guard.api(
        [
            guard.route("/portals/{portal_id}/w", who_waits, ["GET"], Access.PORTAL),
            guard.route("/internal/w", who_waits, ["GET"], Access.SERVICE),
            guard.route("/sweeps/w", who_waits, ["GET"], Access.OPERATOR),
            guard.route("/portals/{portal_id}/card", who_waits, ["GET"], Access.CRM_SIGNED),
        ]
    )
    grant = mint_grant(KEYS, ["62515"], user_id="u1")
    card = "http://svc/portals/62515/card?portalId=62515&userId=7"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as http:
        person = await http.get("/portals/62515/w", headers=bearer(grant))
        in_card = await http.get(card, headers=signed(card))
        service = await http.get("/internal/w", headers=bearer("svc-new"))
        operator = await http.get("/sweeps/w", headers=bearer("ops-1"))
    assert [a.status_code for a in (person, in_card, service, operator)] == [200] * 4
    assert [a.json()["person_waits"] for a in (person, in_card, service, operator)] == [
        True,
        True,
        False,
        False,
    ]
    assert a_person_waits() is False


def signed(url: str, method: str = "GET", body: bytes = b"", age_ms: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000) - age_ms)
    return {
        "X-HubSpot-Signature-v3": signature_v3(SECRET, method, url, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


async def test_a_crm_signed_request_names_its_portal_and_cannot_be_replayed() -> None:
    url = "http://svc/crm/card?portalId=62515&userId=7&associatedObjectId=1"
    headers = signed(url)
    async with client(Guard(settings(), "test")) as http:
        first = await http.get(url, headers=headers)
        again = await http.get(url, headers=headers)
    assert first.status_code == 200
    assert first.json()["portals"] == ["62515"]
    assert again.status_code == 401


async def test_a_workflow_action_names_its_portal_in_its_signed_body() -> None:
    body = b'{"callbackId": "c1", "origin": {"portalId": 62515}}'
    url = "http://svc/crm/card"
    async with client(Guard(settings(), "test")) as http:
        answer = await http.post(url, content=body, headers=signed(url, "POST", body))
    assert answer.json()["portals"] == ["62515"]


@pytest.mark.parametrize("tamper", ["query", "secret", "stale"])
async def test_forged_or_stale_crm_signatures_are_unauthenticated(tamper: str) -> None:
    url = "http://svc/crm/card?portalId=62515"
    headers = signed(url, age_ms=301_000 if tamper == "stale" else 0)
    if tamper == "secret":
        headers["X-HubSpot-Signature-v3"] = signature_v3(
            "other", "GET", url, b"", headers["X-HubSpot-Request-Timestamp"]
        )
    sent = url.replace("62515", "99999") if tamper == "query" else url
    async with client(Guard(settings(), "test")) as http:
        assert (await http.get(sent, headers=headers)).status_code == 401


def test_a_route_without_a_decision_or_an_unlisted_public_route_cannot_be_built() -> None:
    guard = Guard(settings(), "test")
    with pytest.raises(ValueError, match="PUBLIC_BY_DESIGN"):
        guard.route("/anything", echo, ["GET"], Access.PUBLIC)
    with pytest.raises(ValueError, match="portal_id"):
        guard.route("/things", echo, ["GET"], Access.PORTAL)
    from starlette.routing import Route

    with pytest.raises(ValueError, match="no access decision"):
        guard.api([Route("/raw", echo)])


def test_production_mode_refuses_to_start_without_a_needed_credential() -> None:
    guard = Guard(settings(dealbooks_mode="production", operator_credentials=""), "svc")
    guard.require(Access.SERVICE, Access.PORTAL)
    with pytest.raises(MissingCredential, match="DEALBOOKS_OPERATOR_CREDENTIALS is empty"):
        guard.require(Access.OPERATOR)
    Guard(settings(operator_credentials=""), "svc").require(Access.OPERATOR)  # development


async def test_a_crm_signed_request_for_one_portal_is_forbidden_on_another_portals_path() -> None:
    url = "http://svc/portals/99999/card?portalId=62515"
    own = "http://svc/portals/62515/card?portalId=62515"
    async with client(Guard(settings(), "test")) as http:
        other = await http.get(url, headers=signed(url))
        mine = await http.get(own, headers=signed(own))
    assert other.status_code == 403
    assert mine.status_code == 200
