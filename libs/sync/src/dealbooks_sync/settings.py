"""Settings every sync service shares (each service extends them with its own prefix)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dealbooks_crm import CrmLimits
from dealbooks_http import TokenProvider
from dealbooks_kit import ApiAccessSettings, ApiClients, KitSettings, api_clients


class SyncServiceSettings(KitSettings, ApiAccessSettings):
    """The kit's settings, the shared API settings and tokens (`dealbooks_kit.access`), and
    what only sync services tune."""

    # A sandbox started with a time scale runs the CRM's 10-second window faster.
    crm_window_seconds: float = 10.0
    # Webhooks can be lost; a CDC pass per account with sync on heals what they missed.
    reconcile_interval_seconds: float = 600.0


def sync_clients(
    settings: SyncServiceSettings,
    portal_of: Callable[[str], Awaitable[str | None]],
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> ApiClients:
    """The QBO and CRM clients of a sync service (see `dealbooks_kit.api_clients`), the CRM
    client inside the portal's ten-second budget."""
    return api_clients(
        settings,
        portal_of,
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
        crm_limits=CrmLimits(window_seconds=settings.crm_window_seconds),
    )
