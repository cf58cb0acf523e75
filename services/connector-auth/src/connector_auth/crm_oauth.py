"""The CRM's OAuth: authorize URL, code exchange, refresh, token info, uninstall (HubSpot's shapes:
`../shared/reference/crm-hubspot.md` §10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from dealbooks_http import json_object
from dealbooks_kit import TransientError

from connector_auth.settings import ConnectorAuthSettings


class CrmOAuthRefused(Exception):
    """The CRM refused a grant; `status` is its own word for why (`BAD_REFRESH_TOKEN`, ...)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CrmTokens:
    """What a code exchange or refresh gives (never logged, never on Kafka)."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class TokenInfo:
    """Whose token it is: the portal, the person, the granted scopes."""

    hub_id: str
    user_id: str
    user: str | None
    scopes: frozenset[str]


class CrmOAuth:
    """The app's OAuth calls to the CRM."""

    def __init__(self, settings: ConnectorAuthSettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http
        self._api = settings.crm_base_url.rstrip("/")

    def authorization_url(self, state: str) -> str:
        s = self._settings
        query = {
            "client_id": s.crm_client_id,
            "redirect_uri": s.crm_redirect_uri,
            "scope": " ".join(s.required_crm_scopes()),
            "state": state,
        }
        if s.crm_optional_scopes.strip():
            query["optional_scope"] = " ".join(s.crm_optional_scopes.split())
        return f"{s.crm_oauth_url.rstrip('/')}/oauth/authorize?{urlencode(query)}"

    async def exchange(self, code: str) -> CrmTokens:
        return await self._grant(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self._settings.crm_redirect_uri,
            }
        )

    async def refresh(self, refresh_token: str) -> CrmTokens:
        return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def token_info(self, access_token: str) -> TokenInfo:
        response = await self._call("GET", f"/oauth/v1/access-tokens/{access_token}")
        if response.status_code != 200:
            raise CrmOAuthRefused(_status(response), "the CRM does not know the new token")
        data = response.json()
        return TokenInfo(
            hub_id=str(data["hub_id"]),
            user_id=str(data.get("user_id", "")),
            user=data.get("user"),
            scopes=frozenset(data.get("scopes") or ()),
        )

    async def uninstall(self, access_token: str) -> None:
        """Remove the app from the portal whose token this is."""
        response = await self._call(
            "DELETE",
            "/appinstalls/v3/external-install",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        if not response.is_success:
            raise CrmOAuthRefused(_status(response), "the CRM did not remove the app")

    async def _grant(self, form: dict[str, str]) -> CrmTokens:
        s = self._settings
        body = {
            **form,
            "client_id": s.crm_client_id,
            "client_secret": s.crm_client_secret.get_secret_value(),
        }
        response = await self._call("POST", "/oauth/v1/token", data=body)
        if response.status_code != 200:
            data = json_object(response)
            raise CrmOAuthRefused(_status(response), str(data.get("message", "")))
        data = response.json()
        return CrmTokens(
            str(data["access_token"]), str(data["refresh_token"]), int(data["expires_in"])
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, self._api + path, **kwargs)
        except httpx.HTTPError as exc:
            raise TransientError(f"CRM OAuth call failed: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"CRM OAuth call answered {response.status_code}")
        return response


def _status(response: httpx.Response) -> str:
    return str(json_object(response).get("status") or f"HTTP_{response.status_code}")
