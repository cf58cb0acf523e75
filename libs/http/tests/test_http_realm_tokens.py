"""RealmTokens: one QboClient for every portal still asks connector-auth per portal and realm."""

from __future__ import annotations

import json

import httpx
import pytest
from dealbooks_http import AccountUnavailable, ConnectorTokenProvider


def connector_auth(seen: list[tuple[str, dict[str, str] | None]]) -> httpx.MockTransport:
    """connector-auth's token endpoint: a token naming the portal and realm it was asked for."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer svc-credential"
        body = json.loads(request.content) if request.content else None
        seen.append((request.url.path, body))
        parts = request.url.path.split("/")
        token = f"token-{parts[4]}-{parts[6]}-{len(seen)}"
        return httpx.Response(200, json={"access_token": token, "expires_in": 3600})

    return httpx.MockTransport(answer)


async def test_realm_token_comes_from_connector_auth_for_the_realms_portal() -> None:
    seen: list[tuple[str, dict[str, str] | None]] = []
    portals = {"realm-1": "portal-a", "realm-2": "portal-b"}

    async def portal_of(realm_id: str) -> str | None:
        return portals.get(realm_id)

    async with httpx.AsyncClient(transport=connector_auth(seen)) as http:
        tokens = ConnectorTokenProvider("http://auth", "svc-credential", http=http).by_realm(
            portal_of
        )
        first = await tokens.token("realm-1")
        assert await tokens.token("realm-1") == first  # cached until near expiry
        assert await tokens.token("realm-2") == "token-portal-b-realm-2-2"

        await tokens.invalidate("realm-1", first)
        refreshed = await tokens.token("realm-1")

    assert first == "token-portal-a-realm-1-1"
    assert refreshed != first
    assert seen[-1][0] == "/internal/v1/portals/portal-a/accounts/realm-1/access-token"
    assert seen[-1][1] is not None and "rejected_sha256" in seen[-1][1]


async def test_realm_without_a_known_portal_is_unavailable_without_asking() -> None:
    seen: list[tuple[str, dict[str, str] | None]] = []

    async def portal_of(realm_id: str) -> str | None:
        return None

    async with httpx.AsyncClient(transport=connector_auth(seen)) as http:
        tokens = ConnectorTokenProvider("http://auth", "svc-credential", http=http).by_realm(
            portal_of
        )
        with pytest.raises(AccountUnavailable) as raised:
            await tokens.token("realm-9")

    assert not raised.value.reauth_required
    assert seen == []


async def test_realm_portal_is_looked_up_once_and_again_after_connector_auth_forgets_it() -> None:
    lookups: list[str] = []
    portals = {"realm-1": "portal-a"}

    async def portal_of(realm_id: str) -> str | None:
        lookups.append(realm_id)
        return portals.get(realm_id)

    def answer(request: httpx.Request) -> httpx.Response:
        if "/portals/portal-a/" in request.url.path:
            return httpx.Response(404, json={"error": "account not connected to this portal"})
        return httpx.Response(200, json={"access_token": "token-b", "expires_in": 3600})

    connected = [True]

    def switching(request: httpx.Request) -> httpx.Response:
        if connected[0]:
            return httpx.Response(200, json={"access_token": "token-a", "expires_in": 1})
        return answer(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(switching)) as http:
        tokens = ConnectorTokenProvider("http://auth", "svc-credential", http=http).by_realm(
            portal_of
        )
        await tokens.token("realm-1")
        await tokens.token("realm-1")
        assert lookups == ["realm-1"]  # remembered: no second database read

        connected[0] = False  # the company moved to portal-b
        portals["realm-1"] = "portal-b"
        with pytest.raises(AccountUnavailable):
            await tokens.token("realm-1")
        assert await tokens.token("realm-1") == "token-b"

    assert lookups == ["realm-1", "realm-1"]
