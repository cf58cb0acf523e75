"""reminders settings: the kit's, QuickBooks, the CRM, how to reach them, the pass."""

from __future__ import annotations

from dealbooks_kit import ApiAccessSettings, KitSettings
from pydantic_settings import SettingsConfigDict


class RemindersSettings(KitSettings, ApiAccessSettings):
    """Read from `REMINDERS_*`; infrastructure and API settings (QuickBooks, the CRM,
    connector-auth) are shared and unprefixed, see `dealbooks_kit.settings` and `.access`."""

    model_config = SettingsConfigDict(env_prefix="REMINDERS_", extra="ignore")

    service_name: str = "reminders"
    http_port: int = 8109
    # How often each company's workflows open and close tasks (no webhook fires when a day
    # passes); once per cluster, company by company.
    pass_interval_seconds: float = 3600.0
    # A reminder whose period began this many days ago is still opened (a pass that did not
    # run for a while catches up); older ones are left out.
    catch_up_days: int = 14
