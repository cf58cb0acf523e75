"""Settings every sync service shares (each service extends them with its own prefix)."""

from __future__ import annotations

from dealbooks_crm import CrmClient, CrmLimits
from dealbooks_http import StaticTokenProvider, TokenProvider
from dealbooks_kit import KitSettings
from dealbooks_qbo import PRODUCTION_BASE_URL, QboClient
from pydantic import AliasChoices, Field

HUBSPOT_API = "https://api.hubapi.com"


class SyncServiceSettings(KitSettings):
    """API addresses are shared like the infrastructure ones (unprefixed); tokens are per
    service until the connector-auth token provider is wired in."""

    qbo_base_url: str = Field(
        default=PRODUCTION_BASE_URL, validation_alias=AliasChoices("QBO_BASE_URL")
    )
    crm_base_url: str = Field(default=HUBSPOT_API, validation_alias=AliasChoices("CRM_BASE_URL"))
    # realm id -> access token, portal id -> access token (JSON objects). For the demo and the
    # sandboxes; production injects a token provider backed by connector-auth.
    qbo_tokens: dict[str, str] = Field(default_factory=dict)
    crm_tokens: dict[str, str] = Field(default_factory=dict)
    # A sandbox started with a time scale runs the CRM's 10-second window faster.
    crm_window_seconds: float = 10.0


def qbo_client(settings: SyncServiceSettings, tokens: TokenProvider | None = None) -> QboClient:
    """The QBO client of a sync service (tokens injected, or the static ones from settings)."""
    return QboClient(settings.qbo_base_url, tokens or StaticTokenProvider(settings.qbo_tokens))


def crm_client(settings: SyncServiceSettings, tokens: TokenProvider | None = None) -> CrmClient:
    """The CRM client of a sync service, inside the portal's ten-second budget."""
    return CrmClient(
        tokens or StaticTokenProvider(settings.crm_tokens),
        base_url=settings.crm_base_url,
        limits=CrmLimits(window_seconds=settings.crm_window_seconds),
    )
