"""status-tracker settings: the kit's, plus QuickBooks, the CRM and the sweep intervals."""

from __future__ import annotations

from dealbooks_kit import KitSettings
from pydantic_settings import SettingsConfigDict


class StatusTrackerSettings(KitSettings):  # type: ignore[misc]
    """Read from `STATUS_TRACKER_*` (infrastructure addresses are unprefixed, see the kit)."""

    model_config = SettingsConfigDict(env_prefix="STATUS_TRACKER_", extra="ignore")

    service_name: str = "status-tracker"
    http_port: int = 8011
    qbo_base_url: str = "http://127.0.0.1:8765"
    crm_base_url: str = "http://127.0.0.1:8766"
    # Access tokens by QBO realm id and by CRM portal id, for development and the demo; in
    # production the token providers come from connector-auth instead.
    qbo_tokens: dict[str, str] = {}
    crm_tokens: dict[str, str] = {}
    # The app's CRM timeline event template for payments (see domain.PAYMENT_TEMPLATE).
    payment_template_id: str = ""
    # No webhook fires when a due date passes; a clock does. Webhooks can be lost; CDC heals.
    overdue_interval_seconds: float = 3600.0
    reconcile_interval_seconds: float = 600.0
