"""connector-auth settings: `CONNECTOR_AUTH_*` plus the shared infrastructure and API settings."""

from __future__ import annotations

from dealbooks_contracts import QboEnvironment
from dealbooks_kit import ApiSettings, KitSettings
from dealbooks_qbo import PRODUCTION_BASE_URL, SANDBOX_BASE_URL
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict


class ConnectorAuthSettings(KitSettings, ApiSettings):
    """Everything connector-auth needs to start; see the service README for each variable.

    Shared and unprefixed (`dealbooks_kit.access.ApiSettings`): `QBO_BASE_URL` (unset: the
    API host of `qbo_environment`), `CRM_BASE_URL`, `CRM_PORTAL_TOKENS` (the install-time CRM
    setup of a portal without one is skipped and logged), `CRM_APP_ID`, `CRM_DEVELOPER_KEY`.
    """

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_AUTH_", extra="ignore")

    service_name: str = "connector-auth"
    http_port: int = 8010

    # Which QuickBooks environment the app keys belong to. QBO has no sandbox flag on a
    # company: the environment is a property of the key pair and the API host in use.
    qbo_environment: QboEnvironment = QboEnvironment.SANDBOX
    qbo_client_id: str = "sandbox-client"
    qbo_client_secret: SecretStr = SecretStr("sandbox-secret")
    # Empty means Intuit's OAuth endpoints; set to the local sandbox's base URL in development.
    qbo_oauth_base_url: str = ""
    qbo_scope: str = "com.intuit.quickbooks.accounting"
    # The public URL of GET /oauth/callback, registered with Intuit.
    redirect_uri: str = "http://127.0.0.1:8010/oauth/callback"
    # Where the browser goes after a successful connect (empty: a small JSON answer).
    connected_redirect_url: str = ""

    # HMAC key for the OAuth `state` parameter.
    state_secret: SecretStr = SecretStr("")
    state_max_age_seconds: int = 600

    # Token encryption keys, "kid:base64url(32 bytes)" separated by commas; the first encrypts,
    # all of them decrypt, so a new key can be put first and the old one removed later.
    token_keys: SecretStr = SecretStr("")

    # Credentials other services present on the internal token endpoint (comma-separated,
    # so a credential can be rotated without downtime).
    service_credentials: SecretStr = SecretStr("")
    # Refresh access tokens this long before they expire.
    refresh_margin_seconds: int = 300
    # A refresh lease older than this is considered abandoned (its holder crashed).
    refresh_lease_seconds: float = 30.0
    # How long a token request waits for another replica's refresh before answering 503.
    refresh_wait_seconds: float = 10.0

    @property
    def qbo_api_url(self) -> str:
        """The QBO Accounting API host the keys belong to: `QBO_BASE_URL` when it is set."""
        if "qbo_base_url" in self.model_fields_set:
            return self.qbo_base_url.rstrip("/")
        if self.qbo_environment is QboEnvironment.PRODUCTION:
            return PRODUCTION_BASE_URL
        return SANDBOX_BASE_URL

    def credentials(self) -> list[str]:
        """The accepted service credentials."""
        raw = self.service_credentials.get_secret_value()
        return [c.strip() for c in raw.split(",") if c.strip()]
