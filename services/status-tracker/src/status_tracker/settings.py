"""status-tracker settings: the kit's, QuickBooks, the CRM, how to reach them, the sweeps."""

from __future__ import annotations

from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic_settings import SettingsConfigDict


class StatusTrackerSettings(KitSettings, ApiAccessSettings):
    """Read from `STATUS_TRACKER_*`; infrastructure and API settings (QuickBooks, the CRM and
    its app, connector-auth) are shared and unprefixed, see `dealbooks_kit.settings` and
    `.access`."""

    model_config = SettingsConfigDict(env_prefix="STATUS_TRACKER_", extra="ignore")

    service_name: str = "status-tracker"
    http_port: int = 8011
    # The app's payment timeline template (dealbooks_contracts.crm_app.PAYMENT_TEMPLATE): an
    # explicit id, or found/created by name with the shared CRM_APP_ID and CRM_DEVELOPER_KEY.
    payment_template_id: str = ""
    # No webhook fires when a due date passes; a clock does. Webhooks can be lost; CDC heals.
    overdue_interval_seconds: float = 3600.0
    reconcile_interval_seconds: float = 600.0
