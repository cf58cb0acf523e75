"""How a service gets its QuickBooks and CRM access tokens: settings and token providers.

QBO access tokens come from connector-auth (the only keeper of refresh tokens) through
`dealbooks_http.ConnectorTokenProvider`; fixed tokens per realm are a development and test
option that must be chosen explicitly. CRM tokens are per-portal static tokens (private-app
tokens, or the sandbox's), configured exactly as connector-auth's `CRM_PORTAL_TOKENS`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from dealbooks_http import ConnectorTokenProvider, StaticTokenProvider, TokenProvider
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiAccessSettings(BaseSettings):
    """Mixed into a service's settings (and read with its prefix)."""

    model_config = SettingsConfigDict(extra="ignore")

    # "connector-auth" in production; "static" (tokens below) only for development and tests.
    qbo_token_source: Literal["connector-auth", "static"] = "connector-auth"  # noqa: S105
    # connector-auth's base URL and the service credential its internal endpoint accepts; the
    # same for every service, so read unprefixed like the infrastructure addresses.
    connector_auth_url: str = Field(default="", validation_alias=AliasChoices("CONNECTOR_AUTH_URL"))
    connector_auth_credential: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("CONNECTOR_AUTH_CREDENTIAL")
    )
    # JSON {"realm_id": "access token"}, read only when qbo_token_source is "static".
    qbo_static_tokens: SecretStr = SecretStr("{}")
    # JSON {"portal_id": "access token"}, as connector-auth's CRM_PORTAL_TOKENS.
    crm_portal_tokens: SecretStr = SecretStr("{}")


@dataclass
class ApiTokens:
    """The token providers a service's QBO and CRM clients use."""

    qbo: TokenProvider
    crm: TokenProvider
    connector: ConnectorTokenProvider | None = None

    async def aclose(self) -> None:
        if self.connector is not None:
            await self.connector.aclose()


def _tokens(raw: SecretStr) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(raw.get_secret_value() or "{}").items()}


def api_tokens(
    settings: ApiAccessSettings, portal_of: Callable[[str], Awaitable[str | None]]
) -> ApiTokens:
    """The providers `settings` describe; `portal_of(realm_id)` names the portal a realm is
    connected to (connector-auth hands out tokens per portal and realm).

    Raises ValueError when connector-auth is the source but its URL or credential is missing.
    """
    crm = StaticTokenProvider(_tokens(settings.crm_portal_tokens))
    if settings.qbo_token_source == "static":  # noqa: S105 (a source's name, not a secret)
        return ApiTokens(qbo=StaticTokenProvider(_tokens(settings.qbo_static_tokens)), crm=crm)
    credential = settings.connector_auth_credential.get_secret_value()
    if not settings.connector_auth_url or not credential:
        prefix = settings.model_config.get("env_prefix", "")
        raise ValueError(
            "CONNECTOR_AUTH_URL and CONNECTOR_AUTH_CREDENTIAL must be set "
            f"(or {prefix}QBO_TOKEN_SOURCE=static with {prefix}QBO_STATIC_TOKENS, for "
            "development only)"
        )
    connector = ConnectorTokenProvider(settings.connector_auth_url, credential)
    return ApiTokens(qbo=connector.by_realm(portal_of), crm=crm, connector=connector)
