"""The console's settings: where the services answer, and how its own tickets are signed."""

from __future__ import annotations

from typing import Any

from dealbooks_kit import KitSettings
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict


def _service_url(port: int, variable: str) -> Any:
    """A service's address from `variable` (unprefixed), else the service's local port."""
    return Field(default=f"http://127.0.0.1:{port}", validation_alias=AliasChoices(variable))


class ConsoleSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", populate_by_name=True)

    service_name: str = "console"
    http_port: int = 8108
    # Where the services answer (the same addresses every service is given).
    connector_auth_url: str = _service_url(8101, "CONNECTOR_AUTH_URL")
    invoice_builder_url: str = _service_url(8103, "INVOICE_BUILDER_URL")
    status_tracker_url: str = _service_url(8104, "STATUS_TRACKER_URL")
    mapping_registry_url: str = _service_url(8107, "MAPPING_REGISTRY_URL")
    contact_sync_url: str = _service_url(8105, "CONTACT_SYNC_URL")
    product_sync_url: str = _service_url(8106, "PRODUCT_SYNC_URL")
    reminders_url: str = _service_url(8109, "REMINDERS_URL")
    # Where people's browsers reach connector-auth (sign-in, connecting QuickBooks); behind one
    # ingress this is the console's own origin. Empty: `connector_auth_url`.
    connector_auth_public_url: str = ""
    # How long a ticket from the CRM app card (an iframe opened from a record) stays good.
    launch_ttl_seconds: int = 1800
    # How long the console trusts connector-auth's answer about a session before asking again
    # (so a sign-out elsewhere ends the console session within this many seconds).
    session_recheck_seconds: float = 30.0
    # Who may show the console in a frame: HubSpot, whose app card opens it in an iframe modal.
    frame_ancestors: str = "'self' https://*.hubspot.com"
    # Timeout of one call to a service.
    backend_timeout_seconds: float = 10.0
    # A wizard submission that meets invoice-builder not answering is sent again (with the same
    # request id) for this long before the person sees the resend page.
    resend_patience_seconds: float = 6.0
    # The resend page sends the form again by itself after this many seconds, this many times;
    # after that it waits for the person's click.
    resend_wait_seconds: int = 5
    resend_automatic_attempts: int = 12

    @property
    def signin_base(self) -> str:
        return (self.connector_auth_public_url or self.connector_auth_url).rstrip("/")
