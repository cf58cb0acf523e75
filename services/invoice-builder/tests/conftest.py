"""A running invoice-builder on real Kafka + MongoDB-wire server + both sandboxes over HTTP.

One service per test module (consumer-group joins are the slow part); each test makes its own
QuickBooks company and CRM portal, so tests do not see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest_asyncio
from dealbooks_contracts import (
    Envelope,
    EventPayload,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.testing import ServiceHarness, account_connected, eventually
from dealbooks_kit import CrmPortalNotInstalled, Guard, StaticCrmTokens
from dealbooks_kit.auth import mint_grant
from invoice_builder.api import build_api
from invoice_builder.app import build_service
from invoice_builder.service import Service
from invoice_builder.settings import InvoiceBuilderSettings

# The keys portal grants are signed with in these tests (connector-auth mints them in life).
GRANT_KEYS = "test:invoice-builder-grant-key-0123456789"


class CrmTokens(StaticCrmTokens):
    """Fixed CRM tokens per portal, and the portals that have uninstalled the app (for which
    connector-auth has no token: `CrmPortalNotInstalled`)."""

    def __init__(self) -> None:
        super().__init__({})
        self.uninstalled: set[str] = set()

    async def token(self, key: str) -> str:
        if key in self.uninstalled:
            raise CrmPortalNotInstalled(key)
        return await super().token(key)


class Harness:
    """The service under test plus helpers to feed it events and read what it published."""

    def __init__(self, service: Service, bootstrap: str) -> None:
        self.service = service
        self.settings = service.settings
        self.bootstrap = bootstrap
        self.qbo_tokens = StaticTokenProvider({})
        self.crm_tokens = CrmTokens()

    def wizard(
        self, *portals: str, user_id: str = "u-test", email: str | None = None
    ) -> httpx.AsyncClient:
        """The wizard API in-process, called by a person signed in for `portals` (none: no
        credential at all)."""
        api = build_api(self.service, Guard(self.settings, self.settings.service_name))
        grant = mint_grant(GRANT_KEYS, portals, user_id=user_id, email=email) if portals else None
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api),
            base_url="http://wizard",
            headers={"Authorization": f"Bearer {grant}"} if grant else {},
        )

    @contextmanager
    def without_owners_scope(self, crm_sandbox: Any, crm_portal: Any) -> Iterator[None]:
        """Inside the block the portal's CRM token lacks `crm.objects.owners.read` (it reads
        deals only); after it, the portal's own token again."""
        portal = crm_portal.key
        limited = crm_sandbox.issue_token(
            crm_portal.portal_id, scopes=["oauth", "crm.objects.deals.read"]
        )
        self.crm_tokens.set(portal, limited)
        try:
            yield
        finally:
            self.crm_tokens.set(portal, crm_portal.access_token)

    async def publish(self, payload: EventPayload, tenant: Tenant) -> Envelope[Any]:
        event = Envelope.build(payload, source="test", tenant=tenant)
        await self.service.runtime.publisher.publish(event)
        return event

    async def connect_account(
        self,
        tenant: Tenant,
        *,
        country: str = "US",
        currency: str = "USD",
        custom_numbers: bool = False,
        name: str = "Test Company",
        edition: str | None = None,
    ) -> None:
        """Publish the account facts and wait until the service holds them."""
        facts = account_connected(
            company_name=name,
            country=country,
            home_currency=currency,
            custom_transaction_numbers=custom_numbers,
            edition=edition,
        )
        await self.publish(facts, tenant)
        realm = tenant.require_account_id()

        async def stored() -> bool:
            account = await self.service.store.account(realm)
            return (
                account is not None
                and account.custom_transaction_numbers == custom_numbers
                and account.edition == edition
            )

        await eventually(stored)

    async def us_tenant(
        self, qbo_sandbox: Any, portal_id: str | None = None, **facts: Any
    ) -> Tenant:
        """A new US company in the QBO sandbox, connected with `facts` to `portal_id` (by
        default a portal of its own, `portal-<realm id>`); its tenant."""
        company = qbo_sandbox.create_company("US")
        self.qbo_tokens.set(company.realm_id, company.access_token)
        portal_id = portal_id or f"portal-{company.realm_id}"
        tenant = Tenant(portal_id=portal_id, account_id=company.realm_id)
        await self.connect_account(tenant, **facts)
        return tenant

    async def us_company(self, qbo_sandbox: Any, portal_id: str) -> str:
        """A new US company in the QBO sandbox, connected to `portal_id`; its realm id."""
        return (await self.us_tenant(qbo_sandbox, portal_id)).require_account_id()

    async def eventually(self, predicate: Callable[[], Any]) -> None:
        await eventually(predicate)

    async def outcome(self, request_id: uuid.UUID | str) -> dict[str, Any]:
        """Wait for a request to be drafted, rejected or linked; its stored record."""
        found: dict[str, Any] = {}

        async def done() -> bool:
            doc = await self.service.store.request(str(request_id))
            if doc and doc.get("status") != "pending":
                found.update(doc)
                return True
            return False

        await eventually(done)
        return found

    # Reading a topic needs only the settings and the broker's address: the shared harness's.
    events = ServiceHarness.events


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def builder(
    service_settings: Callable[..., InvoiceBuilderSettings], kafka_bootstrap: str
) -> AsyncIterator[Harness]:
    settings = service_settings(InvoiceBuilderSettings, "ib", grant_keys=GRANT_KEYS)
    qbo_tokens = StaticTokenProvider({})
    # A portal without a token is refused, as production configures it.
    crm_tokens = CrmTokens()
    service = build_service(settings, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens)
    harness = Harness(service, kafka_bootstrap)
    harness.qbo_tokens, harness.crm_tokens = qbo_tokens, crm_tokens
    async with service.runtime.running():
        yield harness
    await service.aclose()
