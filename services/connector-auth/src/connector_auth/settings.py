"""connector-auth settings: `CONNECTOR_AUTH_*` plus the shared infrastructure and API settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from dealbooks_contracts import QboEnvironment
from dealbooks_kit import ApiSettings, KitSettings
from dealbooks_qbo import PRODUCTION_BASE_URL, SANDBOX_BASE_URL
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

# What dealbooks does in a portal (../shared/reference/crm-hubspot.md §10): deals and the
# invoice deal properties, contacts and the dealbooks contact properties (the properties API
# needs the object type's schema scope to create them), companies, line items, quotes, products
# and their dealbooks properties (`e-commerce` covers both: products have no schema scope),
# notes (contacts' scopes), and payment app events (`timeline`).
REQUIRED_CRM_SCOPES = (
    "oauth",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.line_items.read",
    "crm.objects.line_items.write",
    "crm.objects.quotes.read",
    "e-commerce",
    "timeline",
)
OPTIONAL_CRM_SCOPES = ("crm.objects.owners.read",)


class ConnectorAuthSettings(KitSettings, ApiSettings):
    """Everything connector-auth needs to start; see the service README for each variable.

    Shared and unprefixed (`dealbooks_kit.access.ApiSettings`): `QBO_BASE_URL` (unset: the
    API host of `qbo_environment`), `CRM_BASE_URL`, `CRM_CLIENT_ID`, and from
    `dealbooks_kit.AuthSettings` `CRM_CLIENT_SECRET`, `DEALBOOKS_SERVICE_CREDENTIALS` (what
    other services present on the internal token routes) and `DEALBOOKS_GRANT_KEYS` (what
    signs the portal grants minted from sessions).
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
    # How often tokens sealed with a key that is no longer first are sealed again with the
    # first (connector_auth.reseal): after a rotation, the old key can go once a pass ran.
    token_reseal_seconds: float = 3600.0

    # The CRM app (HubSpot public app): its client id, where people authorize it, the
    # redirect registered with it, and the scopes it asks for.
    crm_client_id: str = Field(default="", validation_alias=AliasChoices("CRM_CLIENT_ID"))
    crm_oauth_url: str = "https://app.hubspot.com"
    crm_redirect_uri: str = "http://127.0.0.1:8010/oauth/crm/callback"
    crm_scopes: str = " ".join(REQUIRED_CRM_SCOPES)
    # Asked for, not required: reading owners lets approval be limited to the approver
    # (QuickBooks Online Advanced); without it everything else works.
    crm_optional_scopes: str = " ".join(OPTIONAL_CRM_SCOPES)
    # Where the browser goes after install or sign-in (empty: a small page of our own).
    console_url: str = ""

    # Session cookies: "kid:secret" signing keys separated by commas (the first signs, all
    # verify, so keys rotate), how long a session lasts, and how long a grant minted from it.
    session_keys: SecretStr = SecretStr("")
    session_max_age_seconds: int = 8 * 3600
    grant_ttl_seconds: int = 300
    # Refresh access tokens this long before they expire.
    refresh_margin_seconds: int = 300
    # Preferences and CompanyInfo webhooks can be lost, and CDC does not cover them: every
    # connected account's facts are re-read this often (two QuickBooks reads each).
    facts_interval_seconds: float = 600.0
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

    def required_crm_scopes(self) -> list[str]:
        """The scopes an install must grant."""
        return self.crm_scopes.split()

    @property
    def secure_cookies(self) -> bool:
        """Cookies are `Secure` unless dealbooks is served from this machine (plain http)."""
        host = (urlsplit(self.crm_redirect_uri).hostname or "").lower()
        return host not in {"127.0.0.1", "localhost", "::1"}
