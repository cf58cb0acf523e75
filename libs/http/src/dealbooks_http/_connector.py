from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from dealbooks_http._bodies import json_object
from dealbooks_http._retry import RetryableHTTPError, RetryPolicy, retry_after_seconds
from dealbooks_http._transport import async_client

# The "realm" under which a portal's own CRM token is cached (no QBO realm id looks like it).
CRM = "crm"


class AccountUnavailable(Exception):
    """connector-auth has no usable authorization for this account.

    `reauth_required` is True when a person must reconnect the company (invalid_grant), False
    when the account is not connected to this portal at all.
    """

    def __init__(self, portal_id: str, realm_id: str, *, reauth_required: bool) -> None:
        what = "needs to be reconnected" if reauth_required else "is not connected"
        super().__init__(f"QuickBooks account {realm_id} of portal {portal_id} {what}")
        self.portal_id = portal_id
        self.realm_id = realm_id
        self.reauth_required = reauth_required


class PortalNotInstalled(Exception):
    """The CRM portal has not installed the app, or has uninstalled it: connector-auth holds
    no CRM authorization for it."""

    def __init__(self, portal_id: str) -> None:
        super().__init__(f"the app is not installed in CRM portal {portal_id}")
        self.portal_id = portal_id


@dataclass
class _Cached:
    token: str
    good_until: float


class ConnectorTokenProvider:
    """Access tokens from connector-auth's internal endpoint, cached until shortly before expiry.

    One instance serves a whole process; `for_portal(portal_id)` gives the `TokenProvider`
    (keyed by QBO realm id) a `QboClient` expects. Concurrent callers for the same account
    share one request; a token QBO rejected is reported back (as a digest, never the token)
    so connector-auth refreshes it.
    """

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        http: httpx.AsyncClient | None = None,
        margin_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._credential = credential
        self._owns_http = http is None
        self._http = http or async_client(timeout=30.0)
        self._margin = margin_seconds
        self._retry = retry or RetryPolicy(attempts=4, timeout=20.0, wait_max=2.0)
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._rejected: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    def for_portal(self, portal_id: str) -> PortalTokens:
        """The token provider for one portal's QuickBooks accounts."""
        return PortalTokens(self, portal_id)

    def by_realm(self, portal_of: Callable[[str], Awaitable[str | None]]) -> RealmTokens:
        """The `TokenProvider` (keyed by QBO realm id) for a process serving many portals with
        one `QboClient`; `portal_of(realm_id)` names the portal the realm is connected to."""
        return RealmTokens(self, portal_of)

    async def token_for(self, portal_id: str, realm_id: str) -> str:
        """A valid access token for the portal's account `realm_id`."""
        key = (portal_id, realm_id)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() < cached.good_until:
            return cached.token
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() < cached.good_until:
                return cached.token
            fresh = await self._fetch(portal_id, realm_id, self._rejected.pop(key, None))
            self._cache[key] = fresh
            return fresh.token

    def crm(self, not_installed_seconds: float = 3.0) -> CrmPortalTokens:
        """The `TokenProvider` (keyed by CRM portal id) of the portals' CRM access tokens."""
        return CrmPortalTokens(self, not_installed_seconds)

    async def crm_token_for(self, portal_id: str) -> str:
        """A valid CRM access token of an installed portal; `PortalNotInstalled` otherwise."""
        return await self.token_for(portal_id, CRM)

    async def invalidate_for(self, portal_id: str, realm_id: str, token: str) -> None:
        """QBO rejected `token`: drop it, and ask for a refreshed one next time."""
        key = (portal_id, realm_id)
        cached = self._cache.get(key)
        if cached is not None and cached.token == token:
            del self._cache[key]
            self._rejected[key] = hashlib.sha256(token.encode()).hexdigest()

    async def _fetch(self, portal_id: str, realm_id: str, rejected: str | None) -> _Cached:
        portal = f"{self._base_url}/internal/v1/portals/{portal_id}"
        url = (
            f"{portal}/crm/access-token"
            if realm_id == CRM
            else f"{portal}/accounts/{realm_id}/access-token"
        )
        body = {"rejected_sha256": rejected} if rejected else None

        async def attempt() -> httpx.Response:
            response = await self._http.post(
                url, json=body, headers={"Authorization": f"Bearer {self._credential}"}
            )
            if response.status_code in {429, 502, 503, 504}:
                raise RetryableHTTPError(response, retry_after_seconds(response))
            return response

        response = await self._retry.run(attempt)
        if (
            realm_id == CRM
            and response.status_code == 404
            and json_object(response).get("error") == "not_installed"
        ):
            # Only connector-auth's own word: a 404 from anything else (a wrong address, a
            # proxy, an older connector-auth) must not settle events as if uninstalled.
            raise PortalNotInstalled(portal_id)
        if realm_id == CRM:
            response.raise_for_status()
        elif response.status_code == 404:
            raise AccountUnavailable(portal_id, realm_id, reauth_required=False)
        if response.status_code == 409:
            raise AccountUnavailable(portal_id, realm_id, reauth_required=True)
        response.raise_for_status()
        data = response.json()
        lifetime = float(data.get("expires_in", 0))
        good_until = time.monotonic() + max(0.0, lifetime - self._margin)
        return _Cached(str(data["access_token"]), good_until)


class CrmPortalTokens:
    """`TokenProvider` keyed by CRM portal id. A portal found not installed is remembered as
    such for a few seconds, so a burst of its events costs connector-auth one question."""

    def __init__(self, provider: ConnectorTokenProvider, not_installed_seconds: float) -> None:
        self._provider = provider
        self._seconds = not_installed_seconds
        self._not_installed: dict[str, float] = {}

    async def token(self, key: str) -> str:
        """A valid CRM access token for portal `key`."""
        until = self._not_installed.get(key)
        if until is not None and time.monotonic() < until:
            raise PortalNotInstalled(key)
        try:
            return await self._provider.crm_token_for(key)
        except PortalNotInstalled:
            self._not_installed[key] = time.monotonic() + self._seconds
            raise

    def installed(self, key: str) -> None:
        """The portal (re)installed the app: ask again at once."""
        self._not_installed.pop(key, None)

    async def invalidate(self, key: str, token: str) -> None:
        """The CRM rejected `token` for portal `key`."""
        await self._provider.invalidate_for(key, CRM, token)


class PortalTokens:
    """`TokenProvider` for one portal: keys are QBO realm ids."""

    def __init__(self, provider: ConnectorTokenProvider, portal_id: str) -> None:
        self._provider = provider
        self.portal_id = portal_id

    async def token(self, key: str) -> str:
        """A valid access token for realm `key` of this portal."""
        return await self._provider.token_for(self.portal_id, key)

    async def invalidate(self, key: str, token: str) -> None:
        """QBO rejected `token` for realm `key`."""
        await self._provider.invalidate_for(self.portal_id, key, token)


class RealmTokens:
    """`TokenProvider` keyed by QBO realm id, for a process that serves every portal.

    Each realm's portal comes from `portal_of` (the service's own record of connected
    accounts) and is remembered, since it is asked for on every QBO call; a realm no portal
    is known for raises `AccountUnavailable`, and one connector-auth no longer knows under
    the remembered portal is looked up again next time.
    """

    def __init__(
        self,
        provider: ConnectorTokenProvider,
        portal_of: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self._provider = provider
        self._portal_of = portal_of
        self._portals: dict[str, str] = {}

    async def _portal(self, realm_id: str) -> str:
        if (known := self._portals.get(realm_id)) is not None:
            return known
        portal_id = await self._portal_of(realm_id)
        if portal_id is None:
            raise AccountUnavailable("(none)", realm_id, reauth_required=False)
        self._portals[realm_id] = portal_id
        return portal_id

    async def token(self, key: str) -> str:
        """A valid access token for realm `key`."""
        try:
            return await self._provider.token_for(await self._portal(key), key)
        except AccountUnavailable as exc:
            if not exc.reauth_required:
                # Disconnected, or moved to another portal: ask `portal_of` afresh next time.
                self._portals.pop(key, None)
            raise

    async def invalidate(self, key: str, token: str) -> None:
        """QBO rejected `token` for realm `key`."""
        await self._provider.invalidate_for(await self._portal(key), key, token)
