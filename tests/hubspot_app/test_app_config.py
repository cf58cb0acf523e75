"""The HubSpot app's configuration asks for what the services use, and no more or less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from connector_auth.settings import OPTIONAL_CRM_SCOPES, REQUIRED_CRM_SCOPES
from contact_sync.handlers import CONTACTS
from crm_sandbox.testing import CrmSandbox, SandboxPortal
from dealbooks_contracts import SyncObjectType
from dealbooks_crm import CrmClient
from dealbooks_crm.invoicing import ensure_invoice_properties
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.topology import StackSecrets, Topology
from dealbooks_sync.crm_writes import CrmProperties
from mapping_registry.clients import PortalProperties
from product_sync.handlers import PRODUCTS

APP = Path(__file__).resolve().parents[2] / "hubspot-app" / "src" / "app"
LOCAL = Topology(
    ports={"connector-auth": 1, "webhook-gateway": 2}, secrets=StackSecrets(*["-"] * 8)
)


def _seeded_app() -> dict[str, Any]:
    """The app the local stack seeds the CRM sandbox with."""
    return cast(dict[str, Any], LOCAL.crm_seed()["app"])


def _config(relative: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((APP / relative).read_text())["config"]
    return config


def test_required_scopes_are_the_ones_connector_auth_asks_for() -> None:
    # HubSpot refuses an install whose scope parameter differs from the app's required scopes.
    auth = _config("app-hsmeta.json")["auth"]
    assert auth["type"] == "oauth"
    assert sorted(auth["requiredScopes"]) == sorted(REQUIRED_CRM_SCOPES)
    assert sorted(auth["optionalScopes"]) == sorted(OPTIONAL_CRM_SCOPES)


def test_redirect_and_webhook_paths_are_the_services_own() -> None:
    seed = _seeded_app()
    redirect_path = seed["redirectUrls"][0].removeprefix(LOCAL.url("connector-auth"))
    target_path = seed["targetUrl"].removeprefix(LOCAL.url("webhook-gateway"))

    redirects = _config("app-hsmeta.json")["auth"]["redirectUrls"]
    assert [url.endswith(redirect_path) for url in redirects] == [True]
    target = _config("webhooks/webhooks-hsmeta.json")["settings"]["targetUrl"]
    assert target.endswith(target_path)


def test_webhook_subscriptions_are_the_ones_the_gateway_is_seeded_with() -> None:
    wanted = {(s["eventType"], s.get("propertyName")) for s in _seeded_app()["subscriptions"]}

    subscriptions = _config("webhooks/webhooks-hsmeta.json")["subscriptions"]
    assert set(subscriptions) == {"legacyCrmObjects"}
    configured = {
        (s["subscriptionType"], s.get("propertyName"))
        for s in subscriptions["legacyCrmObjects"]
        if s["active"]
    }
    assert configured == wanted


async def test_an_install_with_the_required_scopes_can_create_the_properties_services_own(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    # The CRM sandbox refuses property and group writes without the object type's schema
    # scope, as HubSpot does: these are the calls connector-auth, status-tracker,
    # contact-sync, product-sync and mapping-registry make with an install's token.
    token = crm_sandbox.issue_token(crm_portal.portal_id, scopes=list(REQUIRED_CRM_SCOPES))
    portal = crm_portal.key
    async with CrmClient(
        StaticTokenProvider({portal: token}), base_url=crm_sandbox.base_url
    ) as crm:
        deal_properties = await ensure_invoice_properties(crm.portal(portal))
        owned = CrmProperties(crm, sets=cast(Any, None))  # `create` does not touch the sets
        for kind in (CONTACTS, PRODUCTS):
            await owned.create(kind, portal)
        readable = PortalProperties(crm)
        contact_properties = await readable.get(portal, SyncObjectType.CONTACTS)
        product_properties = await readable.get(portal, SyncObjectType.PRODUCTS)

    assert "acct_invoice_status" in {p.name for p in deal_properties}
    assert {d.name for d in CONTACTS.property_definitions()} <= set(contact_properties)
    assert {d.name for d in PRODUCTS.property_definitions()} <= set(product_properties)
