"""Adapters to QuickBooks (OAuth, company facts) and to the CRM (install-time setup)."""

from __future__ import annotations

import httpx
from dealbooks_crm import CrmClient
from dealbooks_crm.invoicing import ensure_invoice_properties
from dealbooks_http import StaticTokenProvider, TokenProvider
from dealbooks_kit import get_logger
from dealbooks_qbo import Forbidden, IntuitOAuth, OAuthEndpoints, QboClient, TokenSet

from connector_auth.domain import CompanyFacts, company_facts, wrong_environment
from connector_auth.settings import ConnectorAuthSettings

log = get_logger(__name__)


class QboGateway:
    """Intuit OAuth calls and the two reads a connection needs (CompanyInfo, Preferences)."""

    def __init__(self, settings: ConnectorAuthSettings, http: httpx.AsyncClient) -> None:
        endpoints = (
            OAuthEndpoints.at(settings.qbo_oauth_base_url)
            if settings.qbo_oauth_base_url
            else OAuthEndpoints()
        )
        self._settings = settings
        self._http = http
        self.oauth = IntuitOAuth(
            settings.qbo_client_id,
            settings.qbo_client_secret.get_secret_value(),
            endpoints,
            http,
        )

    def authorization_url(self, state: str) -> str:
        return self.oauth.authorization_url(
            self._settings.redirect_uri, state, self._settings.qbo_scope
        )

    async def exchange(self, code: str) -> TokenSet:
        return await self.oauth.exchange_code(code, self._settings.redirect_uri)

    async def refresh(self, refresh_token: str) -> TokenSet:
        return await self.oauth.refresh(refresh_token)

    async def revoke(self, token: str) -> None:
        await self.oauth.revoke(token)

    async def read_facts(self, realm_id: str, access_token: str) -> CompanyFacts:
        """CompanyInfo + Preferences; a 403 means the realm is of the other environment."""
        client = QboClient(
            self._settings.qbo_api_url,
            StaticTokenProvider({realm_id: access_token}),
            http=self._http,
        )
        company = client.company(realm_id)
        try:
            info = await company.company_info()
            prefs = await company.preferences()
        except Forbidden as exc:
            raise wrong_environment(self._settings.qbo_environment) from exc
        currency = prefs.CurrencyPrefs
        return company_facts(
            company_name=info.CompanyName,
            legal_name=info.LegalName,
            country=info.Country,
            home_currency=currency.HomeCurrency.value
            if currency and currency.HomeCurrency
            else None,
            multicurrency_enabled=currency.MultiCurrencyEnabled if currency else False,
            custom_transaction_numbers=prefs.custom_txn_numbers,
            edition=info.offering_sku,
        )


class CrmInstaller:
    """Makes a portal ready for dealbooks: the invoice deal properties.

    It reads before it writes, so running it on every install is harmless.
    """

    def __init__(self, settings: ConnectorAuthSettings, tokens: TokenProvider) -> None:
        self._client = CrmClient(tokens, base_url=settings.crm_base_url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ensure_portal_ready(self, portal_id: str) -> None:
        """Create what the portal lacks (the install's token is stored by then)."""
        await ensure_invoice_properties(self._client.portal(portal_id))
