"""The HubSpot app's configuration asks for what the services use, and no more or less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from connector_auth.settings import REQUIRED_CRM_SCOPES
from dealbooks_infra.topology import StackSecrets, Topology

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
