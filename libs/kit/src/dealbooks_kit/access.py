"""Where QuickBooks and the CRM are and how a service gets their tokens: settings and providers.

The API settings are the same for every service, so they are read unprefixed like the
infrastructure addresses (`QBO_BASE_URL`, `CRM_BASE_URL`, `CONNECTOR_AUTH_URL`,
`CONNECTOR_AUTH_CREDENTIAL`, `CRM_TOKEN_SOURCE`, `CRM_PORTAL_TOKENS`, `CRM_APP_ID`).

Access tokens come from connector-auth, the only keeper of refresh tokens, through
`dealbooks_http.ConnectorTokenProvider`: QBO tokens per portal and realm, CRM tokens per portal
(the portal's install of the app). A portal that has not installed the app, or uninstalled it,
raises `CrmPortalNotInstalled` (a `not_connected` failure: background work for it is settled,
a person waiting is told; see `dealbooks_kit.failures`). Fixed tokens are explicit options: per
realm for development and tests (`<PREFIX>QBO_TOKEN_SOURCE=static`), per portal for a
self-hosted single-portal install with a private-app token, or tests (`CRM_TOKEN_SOURCE=static`
with `CRM_PORTAL_TOKENS`); a portal without one is a configuration error
(`CrmPortalNotConfigured`), never retried.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from dealbooks_crm import CrmClient, CrmLimits
from dealbooks_http import (
    BudgetSource,
    ConnectorTokenProvider,
    CrmPortalTokens,
    PortalNotInstalled,
    StaticTokenProvider,
    TokenProvider,
)
from dealbooks_qbo import PRODUCTION_BASE_URL, QBO_BATCH_LIMITS, QBO_LIMITS, QboClient
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dealbooks_kit.failures import Failed, Failure, NotConnected

CRM_API = "https://api.hubapi.com"


class CrmAppSettings(BaseSettings):
    """The CRM app dealbooks is: its id, the `sourceId` of its own writes. Mixed into a
    service's settings; like every field here it has an explicit alias, which the service's
    `env_prefix` does not apply to."""

    model_config = SettingsConfigDict(extra="ignore")

    crm_app_id: str = Field(default="", validation_alias=AliasChoices("CRM_APP_ID"))


class ApiSettings(CrmAppSettings):
    """Where the QuickBooks and CRM APIs are, and the CRM's per-portal tokens."""

    qbo_base_url: str = Field(
        default=PRODUCTION_BASE_URL, validation_alias=AliasChoices("QBO_BASE_URL")
    )
    crm_base_url: str = Field(default=CRM_API, validation_alias=AliasChoices("CRM_BASE_URL"))
    # "connector-auth": each portal's install of the app; "static": CRM_PORTAL_TOKENS below.
    crm_token_source: Literal["connector-auth", "static"] = Field(
        default="connector-auth", validation_alias=AliasChoices("CRM_TOKEN_SOURCE")
    )
    # JSON {"portal_id": "access token"} (private-app tokens, or the sandbox's); read only when
    # crm_token_source is "static".
    crm_portal_tokens: SecretStr = Field(
        default=SecretStr("{}"), validation_alias=AliasChoices("CRM_PORTAL_TOKENS")
    )

    def crm_tokens(self) -> StaticCrmTokens:
        """The CRM token provider `CRM_PORTAL_TOKENS` describes."""
        return StaticCrmTokens(_tokens(self.crm_portal_tokens))


class ApiAccessSettings(ApiSettings):
    """`ApiSettings` and how to reach connector-auth for QBO tokens; mixed into the settings of
    every service that calls QuickBooks (`QBO_TOKEN_SOURCE`, `QBO_STATIC_TOKENS` carry the
    service's prefix: they are per-service development switches)."""

    # "connector-auth" in production; "static" (tokens below) only for development and tests.
    qbo_token_source: Literal["connector-auth", "static"] = "connector-auth"  # noqa: S105
    connector_auth_url: str = Field(default="", validation_alias=AliasChoices("CONNECTOR_AUTH_URL"))
    connector_auth_credential: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("CONNECTOR_AUTH_CREDENTIAL")
    )
    # JSON {"realm_id": "access token"}, read only when qbo_token_source is "static".
    qbo_static_tokens: SecretStr = SecretStr("{}")
    # Each company's and portal's API budget is shared by every service and replica through
    # this database (`dealbooks_kit.budgets`); "local" keeps one per process (development).
    api_budgets: Literal["shared", "local"] = Field(
        default="shared", validation_alias=AliasChoices("API_BUDGETS")
    )
    api_budget_database: str = Field(
        default="dealbooks_budgets", validation_alias=AliasChoices("API_BUDGET_DATABASE")
    )


class CrmPortalNotConfigured(Failed):
    """dealbooks has no CRM access token for this portal: nothing works there until one is
    configured, so retrying cannot help."""

    failure = Failure.MISCONFIGURED

    def __init__(self, portal_id: str) -> None:
        super().__init__(
            f"no CRM access token is configured for portal {portal_id} "
            "(add it to CRM_PORTAL_TOKENS, or use CRM_TOKEN_SOURCE=connector-auth); dealbooks "
            "cannot call this portal's CRM"
        )
        self.portal_id = portal_id


class CrmPortalNotInstalled(NotConnected):
    """The portal has not installed the app, or uninstalled it: nothing is done for it (and
    nothing retried) until a person installs the app again."""

    def __init__(self, portal_id: str) -> None:
        super().__init__(
            f"the app is not installed in CRM portal {portal_id}; nothing is done for this "
            "portal until it is installed again"
        )
        self.portal_id = portal_id


class InstalledPortalTokens:
    """CRM tokens of the portals' installs, from connector-auth; `CrmPortalNotInstalled` for a
    portal without one."""

    def __init__(self, inner: CrmPortalTokens) -> None:
        self._inner = inner

    async def token(self, key: str) -> str:
        try:
            return await self._inner.token(key)
        except PortalNotInstalled:
            raise CrmPortalNotInstalled(key) from None

    async def invalidate(self, key: str, token: str) -> None:
        await self._inner.invalidate(key, token)

    def installed(self, key: str) -> None:
        """The portal installed the app (again): stop treating it as uninstalled."""
        self._inner.installed(key)


class StaticCrmTokens(StaticTokenProvider):
    """Fixed CRM tokens per portal; a portal without one raises `CrmPortalNotConfigured`."""

    def has(self, portal_id: str) -> bool:
        """True when a token is configured for `portal_id`."""
        return portal_id in self._tokens

    async def token(self, key: str) -> str:
        if not self.has(key):
            raise CrmPortalNotConfigured(key)
        return await super().token(key)


@dataclass
class ApiTokens:
    """The token providers a service's QBO and CRM clients use."""

    qbo: TokenProvider
    crm: TokenProvider
    connector: ConnectorTokenProvider | None = None

    def portal_installed(self, portal_id: str) -> None:
        """A portal installed the app (again): stop treating it as uninstalled in this
        process (`connector.portal-installed`)."""
        if isinstance(self.crm, InstalledPortalTokens):
            self.crm.installed(portal_id)

    async def aclose(self) -> None:
        if self.connector is not None:
            await self.connector.aclose()


def _tokens(raw: SecretStr) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(raw.get_secret_value() or "{}").items()}


def api_tokens(
    settings: ApiAccessSettings,
    portal_of: Callable[[str], Awaitable[str | None]],
    *,
    qbo: TokenProvider | None = None,
    crm: TokenProvider | None = None,
) -> ApiTokens:
    """The providers `settings` describe; `portal_of(realm_id)` names the portal a realm is
    connected to (connector-auth hands out tokens per portal and realm). `qbo` and `crm`, when
    given, are used instead (tests inject providers this way).

    Raises ValueError when connector-auth is a source but its URL or credential is missing.
    """
    static_qbo = settings.qbo_token_source == "static"  # noqa: S105 (a source's name)
    static_crm = settings.crm_token_source == "static"  # noqa: S105
    connector: ConnectorTokenProvider | None = None
    if (qbo is None and not static_qbo) or (crm is None and not static_crm):
        credential = settings.connector_auth_credential.get_secret_value()
        if not settings.connector_auth_url or not credential:
            prefix = settings.model_config.get("env_prefix", "")
            raise ValueError(
                "CONNECTOR_AUTH_URL and CONNECTOR_AUTH_CREDENTIAL must be set "
                f"(or {prefix}QBO_TOKEN_SOURCE=static with {prefix}QBO_STATIC_TOKENS and "
                "CRM_TOKEN_SOURCE=static with CRM_PORTAL_TOKENS, for development only)"
            )
        connector = ConnectorTokenProvider(settings.connector_auth_url, credential)
    if qbo is None:
        qbo = (
            StaticTokenProvider(_tokens(settings.qbo_static_tokens))
            if static_qbo or connector is None
            else connector.by_realm(portal_of)
        )
    if crm is None:
        crm = (
            settings.crm_tokens()
            if static_crm or connector is None
            else InstalledPortalTokens(connector.crm())
        )
    return ApiTokens(qbo=qbo, crm=crm, connector=connector)


@dataclass
class ApiClients:
    """A service's QBO and CRM clients and the token providers behind them."""

    qbo: QboClient
    crm: CrmClient
    tokens: ApiTokens

    async def aclose(self) -> None:
        await self.qbo.aclose()
        await self.crm.aclose()
        await self.tokens.aclose()


def api_clients(
    settings: ApiAccessSettings,
    portal_of: Callable[[str], Awaitable[str | None]],
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
    crm_limits: CrmLimits | None = None,
    budgets: BudgetSource | None = None,
) -> ApiClients:
    """The QBO and CRM clients `settings` describe, on the providers of `api_tokens` (which
    see for `portal_of`, `qbo_tokens` and `crm_tokens`); `crm_limits` tunes the CRM budget.
    With `budgets` (the runtime's `api_budgets()`), each company's and portal's budget is
    shared with every other service and replica; without, each process keeps its own."""
    tokens = api_tokens(settings, portal_of, qbo=qbo_tokens, crm=crm_tokens)
    shared: dict[str, Any] = {}
    if budgets is not None:
        shared = {
            "budget": budgets.budget("qbo", QBO_LIMITS),
            "batch_budget": budgets.budget("qbo-batch", QBO_BATCH_LIMITS),
        }
    return ApiClients(
        qbo=QboClient(settings.qbo_base_url, tokens.qbo, **shared),
        crm=CrmClient(
            tokens.crm, base_url=settings.crm_base_url, limits=crm_limits, budgets=budgets
        ),
        tokens=tokens,
    )
