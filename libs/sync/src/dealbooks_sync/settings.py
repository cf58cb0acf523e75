"""Settings every sync service shares (each service extends them with its own prefix)."""

from __future__ import annotations

from dealbooks_crm import CrmClient, CrmLimits
from dealbooks_http import TokenProvider
from dealbooks_kit import ApiAccessSettings, KitSettings
from dealbooks_qbo import QboClient


class SyncServiceSettings(KitSettings, ApiAccessSettings):
    """The kit's settings, the shared API settings and tokens (`dealbooks_kit.access`), and
    what only sync services tune."""

    # A sandbox started with a time scale runs the CRM's 10-second window faster.
    crm_window_seconds: float = 10.0


def qbo_client(settings: SyncServiceSettings, tokens: TokenProvider) -> QboClient:
    """The QBO client of a sync service."""
    return QboClient(settings.qbo_base_url, tokens)


def crm_client(settings: SyncServiceSettings, tokens: TokenProvider) -> CrmClient:
    """The CRM client of a sync service, inside the portal's ten-second budget."""
    return CrmClient(
        tokens,
        base_url=settings.crm_base_url,
        limits=CrmLimits(window_seconds=settings.crm_window_seconds),
    )
