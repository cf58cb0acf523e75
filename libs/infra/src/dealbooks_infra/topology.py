"""How the local stack's parts are wired to each other: ports, shared secrets, the CRM seed,
and each service's environment. `make up`, `make demo` and end-to-end tests all use this, so
the local topology is described once.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

from dealbooks_kit.services import SERVICES, env_prefix

PORTAL_ID = "62515"
CRM_APP_ID = "1160452"
CRM_CLIENT_ID = "sandbox-client-id"  # the CRM sandbox's own default
CRM_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - the CRM sandbox's own default
QBO_CLIENT_ID = "sandbox-client"
QBO_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the QBO sandbox's development keys


@dataclass
class StackSecrets:
    """Secrets the local stack's parts share; generated once per data folder and kept there."""

    crm_portal_token: str
    qbo_verifier_token: str
    service_credential: str
    operator_credential: str
    state_secret: str
    token_key: str
    session_key: str
    grant_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> StackSecrets:
        if path.exists():
            known = json.loads(path.read_text())
            if set(known) == {f.name for f in fields(cls)}:
                return cls(**known)
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        made = cls(
            crm_portal_token=f"demo-{secrets.token_hex(12)}",
            qbo_verifier_token=secrets.token_hex(16),
            service_credential=secrets.token_urlsafe(24),
            operator_credential=secrets.token_urlsafe(24),
            state_secret=secrets.token_urlsafe(32),
            token_key=f"k1:{key}",
            session_key=f"s1:{secrets.token_urlsafe(32)}",
            grant_key=f"g1:{secrets.token_urlsafe(32)}",
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(made.__dict__))
        path.chmod(0o600)
        return made


@dataclass
class Topology:
    """Addresses of every part (chosen before anything starts) and the shared secrets."""

    ports: dict[str, int]
    secrets: StackSecrets
    infra: dict[str, str] = field(default_factory=dict)  # KAFKA_BOOTSTRAP, MONGODB_URI, ...

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def qbo(self) -> str:
        return self.url("qbo-sandbox")

    @property
    def crm(self) -> str:
        return self.url("crm-sandbox")

    def wizard(self, portal_id: str = PORTAL_ID) -> str:
        """invoice-builder's wizard API for one portal (what the CRM card calls)."""
        return f"{self.url('invoice-builder')}/portals/{portal_id}"

    @property
    def operator_auth(self) -> dict[str, str]:
        """The header an operator's calls carry (sweeps, backfills)."""
        return {"Authorization": f"Bearer {self.secrets.operator_credential}"}

    def consent(self, portal_id: str = PORTAL_ID) -> dict[str, object]:
        """What the CRM sandbox's OAuth screen should answer next: its admin of `portal_id`
        approves (POST it to `{crm}/_sandbox/oauth/consent`)."""
        return {"portalId": int(portal_id), "decision": "approve", "mode": "auto"}

    def crm_control(self, portal_id: str = PORTAL_ID) -> str:
        """The CRM sandbox's control API for one portal (seeding, reading what it shows)."""
        return f"{self.crm}/_sandbox/portals/{portal_id}"

    def crm_seed(self) -> dict[str, object]:
        """The CRM sandbox's app (webhooks to the gateway) and the demo portal."""
        return {
            "app": {
                "clientSecret": CRM_CLIENT_SECRET,
                "redirectUrls": [f"{self.url('connector-auth')}/oauth/crm/callback"],
                "targetUrl": f"{self.url('webhook-gateway')}/webhooks/crm",
                "subscriptions": [
                    {"eventType": "deal.propertyChange", "propertyName": "dealstage"},
                    {"eventType": "deal.creation"},
                ],
            },
            "portals": [
                {
                    "portalId": int(PORTAL_ID),
                    "companyCurrency": "USD",
                    "accessToken": self.secrets.crm_portal_token,
                    "privateAppToken": f"pat-{self.secrets.crm_portal_token}",
                    "refreshToken": f"refresh-{self.secrets.crm_portal_token}",
                }
            ],
        }

    def endpoints(self) -> dict[str, str]:
        """What `.local/endpoints.env` records: infra, sandboxes and every service URL."""
        return {
            **self.infra,
            "QBO_BASE_URL": self.qbo,
            "CRM_BASE_URL": self.crm,
            **{f"{env_prefix(name)}URL": self.url(name) for name in SERVICES},
        }

    def service_env(self, name: str) -> dict[str, str]:
        """The environment of one service process: infra and the shared API settings (the
        same for every service, unprefixed), then its own settings."""
        s = self.secrets
        shared = {
            **self.infra,
            "QBO_BASE_URL": self.qbo,
            "CRM_BASE_URL": self.crm,
            "CONNECTOR_AUTH_URL": self.url("connector-auth"),
            "CONNECTOR_AUTH_CREDENTIAL": s.service_credential,
            "DEALBOOKS_SERVICE_CREDENTIALS": s.service_credential,
            "DEALBOOKS_OPERATOR_CREDENTIALS": s.operator_credential,
            "DEALBOOKS_GRANT_KEYS": s.grant_key,
            "CRM_TOKEN_SOURCE": "connector-auth",
            "CRM_APP_ID": CRM_APP_ID,
            "CRM_CLIENT_ID": CRM_CLIENT_ID,
            "CRM_CLIENT_SECRET": CRM_CLIENT_SECRET,
        }
        own: dict[str, str] = {
            "connector-auth": {
                "CONNECTOR_AUTH_QBO_ENVIRONMENT": "sandbox",
                "CONNECTOR_AUTH_QBO_CLIENT_ID": QBO_CLIENT_ID,
                "CONNECTOR_AUTH_QBO_CLIENT_SECRET": QBO_CLIENT_SECRET,
                "CONNECTOR_AUTH_QBO_OAUTH_BASE_URL": self.qbo,
                "CONNECTOR_AUTH_REDIRECT_URI": f"{self.url('connector-auth')}/oauth/callback",
                "CONNECTOR_AUTH_STATE_SECRET": s.state_secret,
                "CONNECTOR_AUTH_TOKEN_KEYS": s.token_key,
                "CONNECTOR_AUTH_SESSION_KEYS": s.session_key,
                "CONNECTOR_AUTH_CRM_OAUTH_URL": self.crm,
                "CONNECTOR_AUTH_CRM_REDIRECT_URI": (
                    f"{self.url('connector-auth')}/oauth/crm/callback"
                ),
                # After sign-in and after connecting QuickBooks, people land in the console.
                "CONNECTOR_AUTH_CONSOLE_URL": f"{self.url('console')}/",
                "CONNECTOR_AUTH_CONNECTED_REDIRECT_URL": f"{self.url('console')}/connected",
            },
            "webhook-gateway": {
                "WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN": s.qbo_verifier_token,
            },
            "console": {
                "CONSOLE_PUBLIC_BASE_URL": self.url("console"),
                "INVOICE_BUILDER_URL": self.url("invoice-builder"),
                "STATUS_TRACKER_URL": self.url("status-tracker"),
                "MAPPING_REGISTRY_URL": self.url("mapping-registry"),
                "CONTACT_SYNC_URL": self.url("contact-sync"),
                "PRODUCT_SYNC_URL": self.url("product-sync"),
                "REMINDERS_URL": self.url("reminders"),
            },
            "invoice-builder": {
                # Approval tasks in the CRM link to the approval's page in the console.
                "INVOICE_BUILDER_CONSOLE_URL": self.url("console"),
            },
            "reminders": {
                "REMINDERS_PASS_INTERVAL_SECONDS": "3600",
            },
            "status-tracker": {
                "STATUS_TRACKER_OVERDUE_INTERVAL_SECONDS": "3600",
                "STATUS_TRACKER_RECONCILE_INTERVAL_SECONDS": "600",
            },
        }.get(name, {})
        # Stacks sharing one MongoDB-wire server (tests) keep their databases apart.
        databases = self.infra.get("MONGODB_DATABASE_PREFIX")
        if databases:
            own[f"{env_prefix(name)}MONGODB_DATABASE"] = databases + name.replace("-", "_")
        return {**shared, **own}
