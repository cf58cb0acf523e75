"""webhook-gateway settings: `WEBHOOK_GATEWAY_*` plus the shared infrastructure addresses, the
CRM app id and the CRM app's client secret."""

from __future__ import annotations

from dealbooks_kit import CrmAppSettings, KitSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict


class WebhookGatewaySettings(KitSettings, CrmAppSettings):
    """Everything webhook-gateway needs to start; see the service README for each variable.

    The CRM app id is shared and unprefixed (`CRM_APP_ID`): changes whose sourceId is ours are
    echoes of dealbooks' own writes. So is the app's client secret (`CRM_CLIENT_SECRET`, from
    `dealbooks_kit.AuthSettings`), which keys the v3 webhook signature.
    """

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_GATEWAY_", extra="ignore")

    service_name: str = "webhook-gateway"
    http_port: int = 8020

    # The QBO app's webhook verifier token (not the OAuth client secret).
    qbo_verifier_token: SecretStr = SecretStr("")
    crm_max_timestamp_age_seconds: int = 300
    # More writer ids that are dealbooks itself (e.g. "privateApp:123"), comma-separated.
    crm_own_source_ids: str = ""
    # The public URL prefix the CRM signs (scheme + host [+ path prefix]) when a proxy sits in
    # front; empty means the URL of the request as received.
    public_base_url: str = ""

    max_body_bytes: int = Field(default=2_000_000, gt=0)
    # Duplicate notifications within this window are published once.
    dedupe_window_seconds: int = Field(default=86_400, gt=0)
    # How long a duplicate waits for the first copy's publish to be acknowledged.
    dedupe_pending_wait_seconds: float = 2.0
    housekeeping_seconds: float = Field(default=60.0, gt=0)

    def own_source_ids(self) -> frozenset[str]:
        """Every CRM writer id that means "dealbooks wrote this"."""
        ids = {s.strip() for s in self.crm_own_source_ids.split(",") if s.strip()}
        if self.crm_app_id:
            ids.add(self.crm_app_id)
        return frozenset(ids)
