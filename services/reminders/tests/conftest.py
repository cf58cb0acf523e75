"""A running reminders service on real Kafka + MongoDB-wire server + both sandboxes over HTTP.

One service per test module (consumer-group joins are the slow part); each test makes its own
QuickBooks company and CRM portal, so tests do not see each other's data. "Today" is the QBO
sandbox's date (its clock is shared by the session and may have been moved).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest_asyncio
from dealbooks_contracts import Tenant
from dealbooks_infra.testing import (
    ServiceHarness,
    account_connected,
    eventually,
    invoice_drafted,
    one_line_invoice,
)
from dealbooks_kit import Guard
from dealbooks_kit.auth import mint_grant
from dealbooks_qbo import Invoice
from reminders.api import build_api
from reminders.app import Service, build_service
from reminders.settings import RemindersSettings

GRANT_KEYS = "test:reminders-grant-key-0123456789"
OPERATOR = "test-operator-credential"
EDITIONS = {"advanced": "QuickBooks Online Advanced", "plus": "QuickBooks Online Plus"}


class Harness(ServiceHarness):
    """The service under test plus the sandboxes, and helpers to play QuickBooks and the CRM."""

    def __init__(
        self, settings: RemindersSettings, bootstrap: str, qbo_sandbox: Any, crm: Any
    ) -> None:
        super().__init__(settings, bootstrap, qbo_sandbox, crm, build_service)

    def today(self) -> date:
        return self.qbo_sandbox.now().date()

    async def world(self, edition: str = "advanced") -> World:
        """A fresh company of `edition` connected to a fresh portal (as connector-auth
        announces it), with a deal owned by a user of the portal."""
        company = self.qbo_sandbox.create_company("US", edition=edition)
        self.qbo_tokens.set(company.realm_id, company.access_token)
        portal = self.crm_sandbox.create_portal(companyCurrency="USD")
        self.crm_tokens.set(portal.key, portal.access_token)
        user = self.crm_sandbox.add_user(portal.portal_id, f"rep-{uuid.uuid4().hex[:6]}@x.example")
        owner_id = str(int(user["userId"]) + 900_000_000)
        deal = self.crm_sandbox.create_as_user(
            portal.portal_id,
            "deals",
            {"dealname": "Outfitting order", "dealstage": "contractsent",
             "hubspot_owner_id": owner_id},
        )  # fmt: skip
        tenant = Tenant(portal_id=portal.key, account_id=company.realm_id)
        world = World(self, tenant, portal, deal["id"], owner_id)
        await self.publish(account_connected(edition=EDITIONS[edition]), tenant)

        async def known() -> bool:
            doc = await self.service.store.account(company.realm_id)
            return doc is not None and doc.get("edition") == EDITIONS[edition]

        await eventually(known)
        return world

    operator_credential = OPERATOR

    def grant(self, *portals: str) -> str:
        return mint_grant(GRANT_KEYS, portals, user_id="u-admin")

    def api(self, bearer: str | None = None, service: Service | None = None) -> httpx.AsyncClient:
        """The service's API in-process, called with `bearer` (None: no credential)."""
        service = service or self.service
        api = build_api(service, Guard(self.settings, self.settings.service_name))
        return self.calling(api, "http://reminders", bearer)


class World:
    """One test's company, portal and deal, and what QuickBooks and the CRM hold for them."""

    def __init__(
        self, h: Harness, tenant: Tenant, portal: Any, deal_id: str, owner_id: str
    ) -> None:
        self.h = h
        self.tenant = tenant
        self.realm = tenant.require_account_id()
        self.portal = portal
        self.deal_id = deal_id
        self.owner_id = owner_id
        self.workflows = f"/portals/{portal.key}/accounts/{self.realm}/reminders/workflows"

    async def switch_on(self, workflow: str, **settings: Any) -> httpx.Response:
        async with self.h.api(self.h.grant(self.portal.key)) as admin:
            return await admin.put(
                f"{self.workflows}/{workflow}", json={"enabled": True, **settings}
            )

    async def drafted_invoice(self, amount: str, made: int, due: int) -> Invoice:
        """An invoice for the deal, dated `made` days from today and due `due` days from today,
        as invoice-builder drafts it: made in QuickBooks, then invoice.drafted; waits until
        the service knows the invoice's deal."""
        body = one_line_invoice(amount, TxnDate=self.days(made), DueDate=self.days(due))
        invoice = await self.h.qbo.company(self.realm).create(Invoice, body)
        await self.h.publish(invoice_drafted(invoice, self.deal_id, self.h.today()), self.tenant)

        async def known() -> bool:
            return bool(await self.h.service.store.records(self.realm, [str(invoice.Id)]))

        await eventually(known)
        return invoice

    async def run_pass(self, service: Service | None = None) -> int:
        service = service or self.h.service
        service.handlers.today = self.h.today
        return await service.handlers.pass_company(self.realm)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return self.h.qbo_sandbox.control(method, f"companies/{self.realm}/{path}", body)

    async def tasks_on_deal(self) -> list[Any]:
        """The deal's tasks, read over the CRM's API."""
        crm = self.h.service.clients.crm.portal(self.portal.key)
        return list(await crm.tasks_on("deals", self.deal_id))

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the portal, on a record or not."""
        return self.h.crm_sandbox.objects(self.portal.portal_id, "tasks")

    def days(self, offset: int) -> str:
        return (self.h.today() + timedelta(days=offset)).isoformat()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reminders(
    service_settings: Callable[..., RemindersSettings], kafka_bootstrap: str, qbo_sandbox: Any,
    crm_sandbox: Any,
) -> AsyncIterator[Harness]:  # fmt: skip
    settings = service_settings(
        RemindersSettings,
        "rm",
        handler_attempts=3,
        grant_keys=GRANT_KEYS,
        operator_credentials=OPERATOR,
        pass_interval_seconds=3600.0,
    )
    harness = Harness(settings, kafka_bootstrap, qbo_sandbox, crm_sandbox)
    async with harness.service.runtime.running():
        yield harness
    await harness.aclose()
