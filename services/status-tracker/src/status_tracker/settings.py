"""status-tracker settings: the kit's, QuickBooks, the CRM, how to reach them, the sweeps."""

from __future__ import annotations

from dealbooks_contracts.crm_app import PAYMENT_EVENT_TYPE
from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic_settings import SettingsConfigDict


class StatusTrackerSettings(KitSettings, ApiAccessSettings):
    """Read from `STATUS_TRACKER_*`; infrastructure and API settings (QuickBooks, the CRM and
    its app, connector-auth) are shared and unprefixed, see `dealbooks_kit.settings` and
    `.access`."""

    model_config = SettingsConfigDict(env_prefix="STATUS_TRACKER_", extra="ignore")

    service_name: str = "status-tracker"
    http_port: int = 8011
    # Payments go on deals as occurrences of this app event type (its uid, or the
    # fullyQualifiedName HubSpot gave it); empty: always as notes.
    payment_event_type: str = PAYMENT_EVENT_TYPE
    # Refused invoice requests go on deals as occurrences of this app event type, if the app
    # defines one; empty (the app defines none): as notes.
    rejection_event_type: str = ""
    # A portal whose app events were refused gets notes, without asking again, this long.
    app_events_recheck_seconds: float = 3600.0
    # QuickBooks' web app, where an invoice's page is `<base>/app/invoice?txnId=<id>`; sandbox
    # companies are on https://app.sandbox.qbo.intuit.com.
    qbo_app_url: str = "https://app.qbo.intuit.com"
    # No webhook fires when a due date passes; a clock does. Webhooks can be lost; CDC heals.
    overdue_interval_seconds: float = 3600.0
    reconcile_interval_seconds: float = 600.0
