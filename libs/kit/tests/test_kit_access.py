"""Which token providers a service's settings give it."""

from __future__ import annotations

import pytest
from dealbooks_http import RealmTokens, StaticTokenProvider
from dealbooks_kit import ApiAccessSettings, api_tokens
from pydantic_settings import SettingsConfigDict


class ServiceSettings(ApiAccessSettings):
    model_config = SettingsConfigDict(env_prefix="SOME_SERVICE_", extra="ignore")


async def no_portal(realm_id: str) -> str | None:
    return None


async def test_production_settings_take_qbo_tokens_from_connector_auth() -> None:
    settings = ServiceSettings(
        connector_auth_url="http://connector-auth:8101",
        connector_auth_credential="svc-credential",
        crm_portal_tokens='{"portal-1": "crm-token"}',
    )
    tokens = api_tokens(settings, no_portal)

    assert isinstance(tokens.qbo, RealmTokens)
    assert await tokens.crm.token("portal-1") == "crm-token"
    await tokens.aclose()


def test_connector_auth_without_a_credential_refuses_to_start_naming_the_variables() -> None:
    settings = ServiceSettings(connector_auth_url="http://connector-auth:8101")

    with pytest.raises(ValueError, match="CONNECTOR_AUTH_CREDENTIAL must be set") as refused:
        api_tokens(settings, no_portal)
    assert "SOME_SERVICE_QBO_TOKEN_SOURCE=static" in str(refused.value)


def test_connector_auth_address_is_read_unprefixed_like_infrastructure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_AUTH_URL", "http://127.0.0.1:8101")
    monkeypatch.setenv("CONNECTOR_AUTH_CREDENTIAL", "svc-credential")
    monkeypatch.setenv("SOME_SERVICE_CRM_PORTAL_TOKENS", '{"p": "t"}')

    settings = ServiceSettings()

    assert settings.connector_auth_url == "http://127.0.0.1:8101"
    assert settings.connector_auth_credential.get_secret_value() == "svc-credential"
    assert settings.crm_portal_tokens.get_secret_value() == '{"p": "t"}'


async def test_static_qbo_tokens_are_used_only_when_chosen_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_SERVICE_QBO_TOKEN_SOURCE", "static")
    monkeypatch.setenv("SOME_SERVICE_QBO_STATIC_TOKENS", '{"9130": "dev-token"}')

    tokens = api_tokens(ServiceSettings(), no_portal)

    assert isinstance(tokens.qbo, StaticTokenProvider)
    assert await tokens.qbo.token("9130") == "dev-token"
    assert tokens.connector is None
