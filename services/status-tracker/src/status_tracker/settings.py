"""status-tracker settings: the kit's, QuickBooks, the CRM, how to reach them, the sweeps."""

from __future__ import annotations

from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict


class StatusTrackerSettings(KitSettings, ApiAccessSettings):
    """Read from `STATUS_TRACKER_*` (infrastructure addresses are unprefixed, see the kit).

    Tokens: `CONNECTOR_AUTH_URL` and `CONNECTOR_AUTH_CREDENTIAL` (unprefixed), and the prefixed
    `QBO_TOKEN_SOURCE`, `QBO_STATIC_TOKENS`, `CRM_PORTAL_TOKENS`; see `dealbooks_kit.access`.
    """

    model_config = SettingsConfigDict(env_prefix="STATUS_TRACKER_", extra="ignore")

    service_name: str = "status-tracker"
    http_port: int = 8011
    qbo_base_url: str = "http://127.0.0.1:8765"
    crm_base_url: str = "http://127.0.0.1:8766"
    # The app's payment timeline template (dealbooks_contracts.crm_app.PAYMENT_TEMPLATE): an
    # explicit id, or found/created by name with the CRM app id and developer key.
    payment_template_id: str = ""
    crm_app_id: str = ""
    crm_developer_key: SecretStr = SecretStr("")
    # No webhook fires when a due date passes; a clock does. Webhooks can be lost; CDC heals.
    overdue_interval_seconds: float = 3600.0
    reconcile_interval_seconds: float = 600.0
