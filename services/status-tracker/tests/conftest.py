"""A running status-tracker on real Kafka + MongoDB-wire server + both sandboxes over HTTP.

One service per test module (consumer-group joins are the slow part); each test makes its own
QuickBooks company and CRM portal, so tests do not see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from dealbooks_contracts import (
    CrmObjectType,
    CrmRecordRef,
    Envelope,
    InvoiceLinked,
    Money,
    PaymentChange,
    QboCustomerRef,
    QboEntityChanged,
    QboOperation,
    Tenant,
)
from dealbooks_infra.testing import (
    ServiceHarness,
    eventually,
    invoice_drafted,
    one_line_invoice,
)
from dealbooks_kit import Guard
from dealbooks_kit.auth import mint_grant
from dealbooks_qbo import Invoice
from status_tracker.api import build_api
from status_tracker.app import build_service
from status_tracker.domain import TimelineEntry, payment_entry
from status_tracker.settings import StatusTrackerSettings

# What callers of the read API and the sweeps present in these tests.
GRANT_KEYS = "test:status-tracker-grant-key-0123456789"
OPERATOR = "test-operator-credential"


class Harness(ServiceHarness):
    """The service under test plus the sandboxes, and helpers to play QBO, CRM and webhooks."""

    def __init__(
        self, settings: StatusTrackerSettings, bootstrap: str, qbo_sandbox: Any, crm_sandbox: Any
    ) -> None:
        super().__init__(settings, bootstrap, qbo_sandbox, crm_sandbox, build_service)

    def world(self, country: str = "US", portal_currency: str = "USD") -> World:
        """A fresh QBO company and CRM portal with a deal, tokens known to the service."""
        company = self.qbo_sandbox.create_company(country)
        self.qbo_tokens.set(company.realm_id, company.access_token)
        portal = self.crm_sandbox.create_portal(companyCurrency=portal_currency)
        self.crm_tokens.set(portal.key, portal.access_token)
        deal = self.crm_sandbox.create_as_user(
            portal.portal_id, "deals", {"dealname": "Bakery order", "dealstage": "contractsent"}
        )
        return World(
            self, Tenant(portal_id=portal.key, account_id=company.realm_id), portal, deal["id"]
        )

    operator = OPERATOR

    def grant(self, *portals: str) -> str:
        """A portal grant for a person signed in for `portals`."""
        return mint_grant(GRANT_KEYS, portals, user_id="u-test")

    def api(self, bearer: str | None = None) -> httpx.AsyncClient:
        """The service's API in-process, called with `bearer` (None: no credential)."""
        api = build_api(self.service, Guard(self.settings, self.settings.service_name))
        return self.calling(api, "http://tracker", bearer)

    async def read(self, bearer: str | None, *paths: str) -> list[httpx.Response]:
        """The API's answers to a GET of each of `paths`, called with `bearer`."""
        async with self.api(bearer) as caller:
            return [await caller.get(path) for path in paths]

    @contextmanager
    def on_day(self, day: date) -> Iterator[None]:
        """Inside the block the service's day (which the overdue clock reads) is `day`."""
        handlers = self.service.handlers
        handlers.today = lambda: day
        try:
            yield
        finally:
            handlers.today = date.today


class World:
    """One test's QuickBooks company, CRM portal and deal."""

    def __init__(self, harness: Harness, tenant: Tenant, portal: Any, deal_id: str) -> None:
        self.h = harness
        self.tenant = tenant
        self.realm = tenant.require_account_id()
        self.portal = portal
        self.deal_id = deal_id

    async def invoice(self, amount: str = "459.00", **fields: Any) -> Invoice:
        """A QBO invoice as invoice-builder would have drafted it."""
        body = one_line_invoice(amount, **fields)
        if self.h.qbo_sandbox.control("GET", f"companies/{self.realm}")["country"] != "US":
            body["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] = {"value": "3"}
        return await self.h.qbo.company(self.realm).create(Invoice, body)

    async def tracked_invoice(self, amount: str, due: date | None = None) -> tuple[Invoice, str]:
        """An invoice drafted (as invoice-builder would) and tracked, awaiting send; dated
        today and due on `due`, if given."""
        dates = {"TxnDate": date.today().isoformat(), "DueDate": due.isoformat()} if due else {}
        invoice = await self.invoice(amount, **dates)
        await self.drafted(invoice)
        await self.stage(str(invoice.Id), "awaiting_send")
        return invoice, str(invoice.Id)

    async def drafted(self, invoice: Invoice) -> Envelope[Any]:
        """Publish invoice.drafted for an invoice, as invoice-builder does."""
        return await self.h.publish(
            invoice_drafted(invoice, self.deal_id, date.today()), self.tenant
        )

    async def linked(self, invoice: Invoice, object_type: str, object_id: str) -> Envelope[Any]:
        """Publish invoice.linked, as invoice-builder does when a person links an existing
        invoice to a CRM record (`object_type`: deal, contact or company)."""
        currency = invoice.CurrencyRef.value if invoice.CurrencyRef else "USD"
        data = InvoiceLinked(
            request_id=uuid.uuid4(),
            qbo_invoice_id=str(invoice.Id),
            doc_number=invoice.DocNumber,
            target=CrmRecordRef(object_type=CrmObjectType(object_type), object_id=object_id),
            customer=QboCustomerRef(qbo_customer_id=invoice.CustomerRef.value),
            total=Money(amount=invoice.TotalAmt or Decimal("0"), currency=currency),
            balance=Money(amount=invoice.Balance or Decimal("0"), currency=currency),
            invoice_date=invoice.TxnDate or date.today(),
            due_date=invoice.DueDate,
        )
        return await self.h.publish(data, self.tenant)

    async def webhook(
        self,
        entity: str,
        entity_id: str,
        operation: str = "Update",
        last_updated: datetime | None = None,
    ) -> Envelope[Any]:
        """What webhook-gateway publishes for one QBO notification (stamped now by default)."""
        return await self.h.publish(
            QboEntityChanged(
                realm_id=self.realm,
                entity=entity,
                entity_id=entity_id,
                operation=QboOperation(operation),
                # QuickBooks stamps a change with its own clock, which tests may move.
                last_updated=last_updated or self.h.qbo_sandbox.now(),
            ),
            self.tenant,
        )

    def pay(self, invoice_id: str, amount: str) -> dict[str, Any]:
        """A payment recorded in QuickBooks (no webhook is sent by this helper)."""
        return dict(self.h.qbo_sandbox.record_payment(self.realm, invoice_id, amount)["Payment"])

    async def paid(self, invoice_id: str, amount: str, times: int = 1) -> dict[str, Any]:
        """A payment recorded in QuickBooks whose webhook is delivered `times` times."""
        payment = self.pay(invoice_id, amount)
        for _ in range(times):
            await self.webhook("Payment", payment["Id"], "Create")
        return payment

    async def payment_recorded(
        self, payment_id: str, change: PaymentChange | None = None
    ) -> list[Envelope[Any]]:
        """Once there is one, the `invoice.payment-recorded` of a payment of this company (of
        `change`, if given)."""
        return await self.h.events(
            "invoice.payment-recorded", lambda e: e.data.qbo_payment_id == payment_id
            and e.tenant.account_id == self.realm and (change is None or e.data.change is change)
        )  # fmt: skip

    async def stage(self, invoice_id: str, expected: str) -> dict[str, Any]:
        """Wait until the tracked invoice reaches a stage and the deal caught up with it."""
        found: dict[str, Any] = {}
        store = self.h.service.store

        async def reached() -> bool:
            doc = await store.tracked(self.realm, invoice_id)
            shown = await store.projection(self.tenant.portal_id, self.deal_id)
            if doc and doc.get("stage") == expected and (shown or {}).get("stage") == expected:
                found.update(doc)
                return True
            return False

        await eventually(reached)
        return found

    def payment_entry(self, tag: str, event_type: str | None = None) -> TimelineEntry:
        """`a_payment` on the deal's timeline, keyed by `tag` and the deal."""
        return a_payment(key=f"{tag}-{self.deal_id}", deal_id=self.deal_id, event_type=event_type)

    def deal(self) -> dict[str, Any]:
        return dict(self.h.crm_sandbox.read(self.portal.portal_id, "deals", self.deal_id))

    def timeline(self) -> list[dict[str, Any]]:
        return self.h.crm_sandbox.timeline_events(self.portal.portal_id, object_id=self.deal_id)

    def shows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What the deal's timeline shows from the app (app events, notes), oldest first."""
        entries = self.h.crm_sandbox.record_timeline(self.portal.portal_id, "deals", self.deal_id)
        return [e for e in entries if kind is None or e["kind"] == kind]


def a_payment(**changes: Any) -> TimelineEntry:
    """`payment_entry` for 12.00 USD paid by check on 2026-09-30, settling invoice 1001 of deal
    77, as a note; `changes` change any of it."""
    defaults: dict[str, Any] = {
        "key": "qbo-pay-r1-p1-130",
        "deal_id": "77",
        "event_type": None,
        "amount": Decimal("12.00"),
        "currency": "USD",
        "paid_on": date(2026, 9, 30),
        "invoice_number": "1001",
        "change": PaymentChange.APPLIED,
        "method": "Check",
        "balance": Decimal("0.00"),
    }
    return payment_entry(**(defaults | changes))


@pytest.fixture
def a_payment_entry() -> Callable[..., TimelineEntry]:
    """`a_payment`, for the tests of the rules."""
    return a_payment


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tracker(
    service_settings: Callable[..., StatusTrackerSettings], kafka_bootstrap: str,
    qbo_sandbox: Any, crm_sandbox: Any,
) -> AsyncIterator[Harness]:  # fmt: skip
    settings = service_settings(
        StatusTrackerSettings, "st", grant_keys=GRANT_KEYS, operator_credentials=OPERATOR
    )
    harness = Harness(settings, kafka_bootstrap, qbo_sandbox, crm_sandbox)
    async with harness.service.runtime.running():
        yield harness
    await harness.aclose()
