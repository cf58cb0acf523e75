"""Settings every sync service shares (each service extends them with its own prefix)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dealbooks_crm import CrmLimits
from dealbooks_http import TokenProvider
from dealbooks_kit import ApiAccessSettings, ApiClients, KitSettings, ServiceRuntime
from pydantic import Field


class SyncServiceSettings(KitSettings, ApiAccessSettings):
    """The kit's settings, the shared API settings and tokens (`dealbooks_kit.access`), and
    what only sync services tune."""

    # A sandbox started with a time scale runs the CRM's 10-second window faster.
    crm_window_seconds: float = 10.0
    # A backfill's caps when the operator gives none: QuickBooks and CRM calls per run.
    backfill_max_qbo_calls: int = Field(default=10_000, ge=0)
    backfill_max_crm_calls: int = Field(default=100_000, ge=0)
    backfill_page_size: int = Field(default=1000, ge=1, le=1000)
    # A run's holder renews its lease a few times per lease; a dead holder's run is taken
    # over by the periodic check (every `backfill_check_seconds`) once the lease expired.
    backfill_lease_seconds: float = Field(default=60.0, gt=0)
    backfill_check_seconds: float = Field(default=30.0, gt=0)
    # Webhooks can be lost; a CDC pass per account with sync on heals what they missed.
    reconcile_interval_seconds: float = 600.0


def sync_clients(
    runtime: ServiceRuntime,
    portal_of: Callable[[str], Awaitable[str | None]],
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> ApiClients:
    """The QBO and CRM clients of a sync service (`ServiceRuntime.api_clients`), the CRM
    client inside the portal's ten-second budget, as its settings scale it."""
    settings = runtime.settings
    if not isinstance(settings, SyncServiceSettings):
        raise TypeError(f"a sync service's settings, not {type(settings).__name__}")
    return runtime.api_clients(
        portal_of,
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
        crm_limits=CrmLimits(window_seconds=settings.crm_window_seconds),
    )
