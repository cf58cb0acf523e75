"""invoice-builder settings: the kit's, where QuickBooks and the CRM are, and how to reach them."""

from __future__ import annotations

from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic_settings import SettingsConfigDict


class InvoiceBuilderSettings(KitSettings, ApiAccessSettings):
    """Read from `INVOICE_BUILDER_*` (infrastructure addresses are unprefixed, see the kit).

    Tokens: `CONNECTOR_AUTH_URL` and `CONNECTOR_AUTH_CREDENTIAL` (unprefixed), and the prefixed
    `QBO_TOKEN_SOURCE`, `QBO_STATIC_TOKENS`, `CRM_PORTAL_TOKENS`; see `dealbooks_kit.access`.
    """

    model_config = SettingsConfigDict(env_prefix="INVOICE_BUILDER_", extra="ignore")

    service_name: str = "invoice-builder"
    http_port: int = 8010
    qbo_base_url: str = "http://127.0.0.1:8765"
    crm_base_url: str = "http://127.0.0.1:8766"
    # Bearer token the CRM card must present to the wizard API; empty disables the check.
    api_token: str = ""
    # Failpoint for the crash test: exit the process right after QuickBooks created the invoice.
    crash_after_qbo_create: bool = False
