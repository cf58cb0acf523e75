"""Which token providers a service's settings give it."""

from __future__ import annotations

import pytest
from dealbooks_http import RealmTokens, StaticTokenProvider
from dealbooks_kit import ApiAccessSettings, InstalledPortalTokens, api_tokens
from pydantic_settings import SettingsConfigDict


class ServiceSettings(ApiAccessSettings):
    model_config = SettingsConfigDict(env_prefix="SOME_SERVICE_", extra="ignore")


async def no_portal(realm_id: str) -> str | None:
    return None


async def test_production_settings_take_qbo_and_crm_tokens_from_connector_auth() -> None:
    settings = ServiceSettings(
        connector_auth_url="http://connector-auth:8101",
        connector_auth_credential="svc-credential",
    )
    tokens = api_tokens(settings, no_portal)

    assert isinstance(tokens.qbo, RealmTokens)
    assert isinstance(tokens.crm, InstalledPortalTokens)
    await tokens.aclose()


async def test_static_crm_tokens_are_used_only_when_chosen_explicitly() -> None:
    settings = ServiceSettings(
        connector_auth_url="http://connector-auth:8101",
        connector_auth_credential="svc-credential",
        crm_token_source="static",
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
    monkeypatch.setenv("CRM_PORTAL_TOKENS", '{"p": "t"}')

    settings = ServiceSettings()

    assert settings.connector_auth_url == "http://127.0.0.1:8101"
    assert settings.connector_auth_credential.get_secret_value() == "svc-credential"
    assert settings.crm_portal_tokens.get_secret_value() == '{"p": "t"}'


async def test_static_qbo_tokens_are_used_only_when_chosen_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_SERVICE_QBO_TOKEN_SOURCE", "static")
    monkeypatch.setenv("SOME_SERVICE_QBO_STATIC_TOKENS", '{"9130": "dev-token"}')
    monkeypatch.setenv("CRM_TOKEN_SOURCE", "static")

    tokens = api_tokens(ServiceSettings(), no_portal)

    assert isinstance(tokens.qbo, StaticTokenProvider)
    assert await tokens.qbo.token("9130") == "dev-token"
    assert tokens.connector is None


def test_every_shared_api_setting_is_read_unprefixed_and_prefixed_copies_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = {
        "QBO_BASE_URL": "http://qbo.local",
        "CRM_BASE_URL": "http://crm.local",
        "CRM_PORTAL_TOKENS": '{"62515": "crm-token"}',
        "CRM_APP_ID": "1160452",
    }
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(f"SOME_SERVICE_{name}", "per-service copy")

    settings = ServiceSettings()

    assert settings.qbo_base_url == "http://qbo.local"
    assert settings.crm_base_url == "http://crm.local"
    assert settings.crm_portal_tokens.get_secret_value() == '{"62515": "crm-token"}'
    assert settings.crm_app_id == "1160452"


async def test_injected_providers_replace_the_configured_ones() -> None:
    qbo, crm = StaticTokenProvider({"9130": "q"}), StaticTokenProvider({"p": "c"})

    tokens = api_tokens(ServiceSettings(), no_portal, qbo=qbo, crm=crm)

    assert (tokens.qbo, tokens.crm, tokens.connector) == (qbo, crm, None)
