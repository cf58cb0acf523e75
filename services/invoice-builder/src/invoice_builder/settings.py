"""invoice-builder settings: the kit's, where QuickBooks and the CRM are, and how to reach them."""

from __future__ import annotations

from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic_settings import SettingsConfigDict


class InvoiceBuilderSettings(KitSettings, ApiAccessSettings):
    """Read from `INVOICE_BUILDER_*`; infrastructure and API settings (QuickBooks, the CRM,
    connector-auth) are shared and unprefixed, see `dealbooks_kit.settings` and `.access`."""

    model_config = SettingsConfigDict(env_prefix="INVOICE_BUILDER_", extra="ignore")

    service_name: str = "invoice-builder"
    http_port: int = 8010
    # Failpoint for the crash test: exit the process right after QuickBooks created the invoice.
    crash_after_qbo_create: bool = False
    # How often the auto-draft rules' stage sweep looks for deals whose webhook was lost.
    auto_draft_sweep_seconds: float = 600.0
    # How often approvals pending past their company's time are looked for (to remind).
    approval_reminder_seconds: float = 300.0
    # The console's public address: an approval's CRM task links to its page there.
    console_url: str = ""
