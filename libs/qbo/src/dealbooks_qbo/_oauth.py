from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from dealbooks_http import async_client, json_object
from pydantic import BaseModel, ConfigDict

from dealbooks_qbo._errors import AuthRevoked, FaultDetail

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"


@dataclass(frozen=True)
class OAuthEndpoints:
    """Intuit's OAuth URLs; the same for sandbox and production keys."""

    authorize_url: str = "https://appcenter.intuit.com/connect/oauth2"
    token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"  # noqa: S105
    revoke_url: str = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"

    @classmethod
    def at(cls, base_url: str) -> OAuthEndpoints:
        """The same paths on another host (the local sandbox)."""
        base = base_url.rstrip("/")
        return cls(
            f"{base}/connect/oauth2",
            f"{base}/oauth2/v1/tokens/bearer",
            f"{base}/v2/oauth2/tokens/revoke",
        )


class TokenSet(BaseModel):
    """A token response. `obtained_at` is local monotonic-free wall time, for expiry."""

    model_config = ConfigDict(extra="allow")

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int = 3600
    x_refresh_token_expires_in: int | None = None
    id_token: str | None = None
    obtained_at: float = 0.0

    def expires_soon(self, margin: float = 60.0, now: float | None = None) -> bool:
        return (now or time.time()) >= self.obtained_at + self.expires_in - margin


class OAuthError(AuthRevoked):
    """The token endpoint refused: `error` is `invalid_grant`, `invalid_client`, ..."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, [FaultDetail(error, error, description)], "OAUTH")
        self.error = error


@dataclass
class IntuitOAuth:
    """Authorization-code flow, refresh (rotating refresh tokens) and revoke against Intuit."""

    client_id: str
    client_secret: str
    endpoints: OAuthEndpoints = field(default_factory=OAuthEndpoints)
    http: httpx.AsyncClient = field(default_factory=lambda: async_client(timeout=30.0))

    def authorization_url(
        self, redirect_uri: str, state: str, scope: str = ACCOUNTING_SCOPE
    ) -> str:
        """Where to send the user; the redirect brings `code`, `state` and `realmId`."""
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "scope": scope,
            "redirect_uri": redirect_uri,
            "state": state,
        }
        return f"{self.endpoints.authorize_url}?{urlencode(query)}"

    async def _token_call(self, form: dict[str, str]) -> TokenSet:
        response = await self.http.post(
            self.endpoints.token_url,
            data=form,
            auth=(self.client_id, self.client_secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            body = json_object(response)
            raise OAuthError(
                response.status_code,
                str(body.get("error", "http_error")),
                str(body.get("error_description", response.text[:200])),
            )
        return TokenSet.model_validate({**response.json(), "obtained_at": time.time()})

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade the authorization code for tokens."""
        return await self._token_call(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens; always keep the refresh token from the latest response."""
        return await self._token_call(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def revoke(self, token: str) -> None:
        """Revoke a refresh or access token: disconnects the company."""
        response = await self.http.post(
            self.endpoints.revoke_url,
            json={"token": token},
            auth=(self.client_id, self.client_secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise OAuthError(response.status_code, "revoke_failed", response.text[:200])


class RefreshingTokenProvider:
    """A `TokenProvider` that refreshes per realm, one refresh at a time (parallel refreshes
    are the classic cause of invalid_grant). invalid_grant surfaces as `AuthRevoked`."""

    def __init__(self, oauth: IntuitOAuth, tokens: dict[str, TokenSet] | None = None) -> None:
        self._oauth = oauth
        self._tokens = dict(tokens or {})
        self._locks: dict[str, asyncio.Lock] = {}
        self._stale: set[str] = set()

    def set(self, realm_id: str, tokens: TokenSet) -> None:
        self._tokens[realm_id] = tokens
        self._stale.discard(realm_id)

    def current(self, realm_id: str) -> TokenSet:
        return self._tokens[realm_id]

    async def token(self, key: str) -> str:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._tokens[key]
            if key in self._stale or current.expires_soon():
                current = await self._oauth.refresh(current.refresh_token)
                self.set(key, current)
            return current.access_token

    async def invalidate(self, key: str, token: str) -> None:
        current = self._tokens.get(key)
        if current is not None and current.access_token == token:
            self._stale.add(key)
