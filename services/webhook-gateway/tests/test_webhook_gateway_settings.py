"""The gateway checks CRM signatures with the app's client secret every service shares."""

from __future__ import annotations

import pytest
from webhook_gateway.app import build_service
from webhook_gateway.settings import WebhookGatewaySettings


def test_the_crm_client_secret_is_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_CLIENT_SECRET", "shared-secret")
    monkeypatch.setenv("WEBHOOK_GATEWAY_CRM_CLIENT_SECRET", "an-old-name")

    settings = WebhookGatewaySettings()

    assert settings.crm_client_secret.get_secret_value() == "shared-secret"


def test_the_gateway_refuses_to_start_without_the_crm_client_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CRM_CLIENT_SECRET", raising=False)
    settings = WebhookGatewaySettings(qbo_verifier_token="verifier")

    with pytest.raises(ValueError, match="CRM_CLIENT_SECRET must be set"):
        build_service(settings)
