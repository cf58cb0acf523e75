"""invoice-builder settings: the kit's, plus where QuickBooks and the CRM are."""

from __future__ import annotations

from dealbooks_kit import KitSettings
from pydantic_settings import SettingsConfigDict


class InvoiceBuilderSettings(KitSettings):  # type: ignore[misc]
    """Read from `INVOICE_BUILDER_*` (infrastructure addresses are unprefixed, see the kit)."""

    model_config = SettingsConfigDict(env_prefix="INVOICE_BUILDER_", extra="ignore")

    service_name: str = "invoice-builder"
    http_port: int = 8010
    qbo_base_url: str = "http://127.0.0.1:8765"
    crm_base_url: str = "http://127.0.0.1:8766"
    # Access tokens by QBO realm id and by CRM portal id, for development and the demo; in
    # production the token providers come from connector-auth instead.
    qbo_tokens: dict[str, str] = {}
    crm_tokens: dict[str, str] = {}
    # Bearer token the CRM card must present to the wizard API; empty disables the check.
    api_token: str = ""
    # Failpoint for the crash test: exit the process right after QuickBooks created the invoice.
    crash_after_qbo_create: bool = False
