"""invoice-builder end to end: crm.invoice-requested -> draft in the QBO sandbox -> invoice.drafted,
or invoice.request-rejected, on real Kafka and a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stamina
from dealbooks_contracts import (
    CustomerChoice,
    Envelope,
    ExistingCustomer,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    NewCustomer,
    RejectionCode,
    Tenant,
)
from dealbooks_infra.testing import qbo_faults, read_topic
from dealbooks_kit import Outbox
from invoice_builder.handlers import InvoiceBuilder
from invoice_builder.store import REQUESTS, Store

Harness = Any  # the harness fixture of conftest.py

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


def line(
    price: str = "500.00", currency: str = "USD", tax: str | None = None
) -> InvoiceLineRequest:
    return InvoiceLineRequest(
        qbo_item_id="2",  # the sandbox's demo "Onboarding package"
        quantity=Decimal("2"),
        unit_price=Money(amount=Decimal(price), currency=currency),
        description="Onboarding",
        tax_code_id=tax,
    )


def draft_request(
    customer: CustomerChoice | None = None, lines: list[InvoiceLineRequest] | None = None, **kw: Any
) -> InvoiceRequested:
    return InvoiceRequested(
        request_id=kw.pop("request_id", uuid.uuid4()),
        deal_id=kw.pop("deal_id", "deal-1"),
        origin=InvoiceRequestOrigin.WIZARD,
        customer=customer or ExistingCustomer(qbo_customer_id="1"),
        lines=lines or [line()],
        **kw,
    )


async def dead_letter(bootstrap: str, builder: Harness, request: InvoiceRequested) -> Any:
    """The dead-lettered record of `request` (its raw value names the request id)."""
    [record, *_] = await read_topic(
        bootstrap,
        builder.settings.topic("crm.invoice-requested.v1.dlq"),
        lambda record: record,
        lambda record: str(request.request_id).encode() in record.value,
    )
    return record


async def qbo_invoices(builder: Harness, qbo_sandbox: Any, tenant: Tenant) -> list[dict[str, Any]]:
    """The invoices in the tenant's QuickBooks company."""
    realm_id = tenant.require_account_id()
    token = await builder.qbo_tokens.token(realm_id)
    return list(qbo_sandbox.all_of(realm_id, token, "Invoice"))


async def only_event(builder: Harness, event_type: str, request_id: uuid.UUID) -> Any:
    """The one `event_type` event published for the request."""
    [event] = await builder.events(event_type, lambda e: e.data.request_id == request_id)
    return event


async def test_request_creates_a_draft_invoice_and_publishes_drafted(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = draft_request(
        terms_id="3", invoice_date=date.today(), customer_message="Thank you for your business."
    )
    await builder.publish(request, tenant)

    outcome = await builder.outcome(request.request_id)
    assert outcome["status"] == "drafted"
    drafted = await only_event(builder, "invoice.drafted", request.request_id)
    assert drafted.data.total == Money(amount=Decimal("1000.00"), currency="USD")
    assert drafted.data.deal_id == "deal-1"
    assert drafted.data.due_date == date.today() + timedelta(days=30)
    assert drafted.data.doc_number
    [invoice] = await qbo_invoices(builder, qbo_sandbox, tenant)
    assert invoice["Id"] == drafted.data.qbo_invoice_id
    assert invoice["EmailStatus"] == "NotSet"  # a draft: never sent
    assert invoice["CustomerMemo"] == {"value": "Thank you for your business."}


async def test_redelivered_request_creates_one_invoice(builder: Harness, qbo_sandbox: Any) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = draft_request()
    await builder.publish(request, tenant)
    await builder.outcome(request.request_id)
    # The same request again in a new envelope, as a retrying producer would send it.
    await builder.publish(request, tenant)
    await builder.publish(draft_request(deal_id="deal-marker"), tenant)
    await builder.events("invoice.drafted", lambda e: e.data.deal_id == "deal-marker")

    invoices = await qbo_invoices(builder, qbo_sandbox, tenant)
    assert len(invoices) == 2  # the request's one, and the marker's
    drafted = await builder.events(
        "invoice.drafted", lambda e: e.data.request_id == request.request_id
    )
    assert len({e.data.qbo_invoice_id for e in drafted}) == 1


class StopsBeforeRelaying(Outbox):
    """An outbox whose process stops right after the outcome's write, before any relay."""

    async def relay(self, *args: Any, **kwargs: Any) -> int:
        raise asyncio.CancelledError("process stopped")


def builder_with(builder: Harness, outbox_type: type[Outbox]) -> InvoiceBuilder:
    """The harness's handlers over a store whose outbox is an `outbox_type` (another process)."""
    db, runtime, handlers = (
        builder.service.store.db,
        builder.service.runtime,
        builder.service.handlers,
    )
    return InvoiceBuilder(
        store=Store(db, outbox_type(db, runtime.publisher)),
        qbo=handlers.deps.qbo,
        crm=handlers.deps.crm,
    )


async def test_a_draft_written_but_not_relayed_is_published_once_by_the_requests_rerun(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = Envelope.build(draft_request(deal_id="deal-rerun"), source="test", tenant=tenant)
    with pytest.raises(asyncio.CancelledError):
        await builder_with(builder, StopsBeforeRelaying).requests.on_invoice_requested(request)
    db = builder.service.store.db
    left = await db[REQUESTS].find_one({"_id": str(request.data.request_id)})
    assert left is not None and left["status"] == "drafted" and len(left["outbox"]) == 1

    # Its offset was not committed: the request comes again, to a fresh process.
    rerun = builder_with(builder, Outbox)
    await rerun.requests.on_invoice_requested(request)
    await rerun.deps.store.outbox.settle()  # published entries are removed together

    drafted = await only_event(builder, "invoice.drafted", request.data.request_id)
    assert str(drafted.id) == left["outbox"][0]["id"]  # the one written before the stop
    [invoice] = await qbo_invoices(builder, qbo_sandbox, tenant)
    assert invoice["Id"] == drafted.data.qbo_invoice_id
    done = await db[REQUESTS].find_one({"_id": str(request.data.request_id)})
    assert done is not None and not done.get("outbox")


async def test_crash_between_qbo_create_and_own_write_still_yields_one_invoice(
    builder: Harness, qbo_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    store = builder.service.store
    real_save = store.save_invoice
    crashes = {"left": 1}

    async def crash_once(*args: Any, **kwargs: Any) -> None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise ConnectionError("process died after QuickBooks created the invoice")
        await real_save(*args, **kwargs)

    monkeypatch.setattr(store, "save_invoice", crash_once)
    request = draft_request()
    await builder.publish(request, tenant)

    assert (await builder.outcome(request.request_id))["status"] == "drafted"
    assert len(await qbo_invoices(builder, qbo_sandbox, tenant)) == 1


async def test_custom_transaction_numbers_switched_on_rejects_with_how_to_fix_it(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    # connector-auth re-publishes the facts when the preference changes.
    await builder.connect_account(tenant, custom_numbers=True)
    request = draft_request()
    await builder.publish(request, tenant)

    outcome = await builder.outcome(request.request_id)
    assert outcome["status"] == "rejected"
    rejected = await only_event(builder, "invoice.request-rejected", request.request_id)
    assert rejected.data.code is RejectionCode.CUSTOM_TXN_NUMBERS_ENABLED
    assert "Custom transaction numbers" in rejected.data.message
    assert await qbo_invoices(builder, qbo_sandbox, tenant) == []


async def test_uk_request_needs_a_tax_code_on_every_line(
    builder: Harness, qbo_sandbox: Any
) -> None:
    company = qbo_sandbox.create_company("GB")
    builder.qbo_tokens.set(company.realm_id, company.access_token)
    tenant = Tenant(portal_id="portal-uk", account_id=company.realm_id)
    await builder.connect_account(tenant, country="GB", currency="GBP")

    missing = draft_request(lines=[line("100", "GBP", "2"), line("50", "GBP")])
    await builder.publish(missing, tenant)
    rejected = await builder.outcome(missing.request_id)
    assert (rejected["code"], rejected["line_index"]) == ("TAX_CODE_REQUIRED", 1)

    taxed = draft_request(lines=[line("100", "GBP", "2"), line("50", "GBP", "3")])
    await builder.publish(taxed, tenant)
    assert (await builder.outcome(taxed.request_id))["status"] == "drafted"
    drafted = await only_event(builder, "invoice.drafted", taxed.request_id)
    # 200.00 at 20% standard rate plus 100.00 zero-rated.
    assert drafted.data.total == Money(amount=Decimal("340.00"), currency="GBP")


async def test_due_date_before_invoice_date_is_rejected(builder: Harness, qbo_sandbox: Any) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = draft_request(invoice_date=date(2026, 3, 10), due_date=date(2026, 3, 1))
    await builder.publish(request, tenant)
    assert (await builder.outcome(request.request_id))["code"] == "DUE_BEFORE_INVOICE_DATE"


async def test_second_contact_of_the_same_company_gets_its_own_customer(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    ana = NewCustomer(
        display_name="Globex Ltd",
        company_name="Globex Ltd",
        given_name="Ana",
        family_name="Lopez",
        email="ana@globex.example",
        crm_contact_id="c-ana",
    )
    bob = ana.model_copy(
        update={"given_name": "Bob", "family_name": "Smith", "email": "bob@globex.example",
                "crm_contact_id": "c-bob"}
    )  # fmt: skip
    first, second = draft_request(ana), draft_request(bob)
    await builder.publish(first, tenant)
    await builder.outcome(first.request_id)
    await builder.publish(second, tenant)

    assert (await builder.outcome(second.request_id))["status"] == "drafted"
    events = await builder.events(
        "invoice.drafted", lambda e: e.data.request_id in {first.request_id, second.request_id}, 2
    )
    names = {e.data.customer.display_name for e in events}
    assert names == {"Globex Ltd", "Globex Ltd (Bob Smith)"}
    assert all(e.data.customer_created for e in events)

    # A later invoice for Ana reuses her customer instead of creating another.
    again = draft_request(ana)
    await builder.publish(again, tenant)
    await builder.outcome(again.request_id)
    third = await only_event(builder, "invoice.drafted", again.request_id)
    assert third.data.customer.display_name == "Globex Ltd"
    assert not third.data.customer_created


async def test_expired_quote_is_rejected_and_published_quote_qualifies(
    builder: Harness, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    tenant = Tenant(portal_id=crm_portal.key, account_id=tenant.account_id)
    await builder.connect_account(tenant)
    builder.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    past = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    future = (datetime.now(UTC) + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    published = {"hs_status": "APPROVAL_NOT_NEEDED", "hs_title": "Q"}
    expired = crm_sandbox.create_as_user(
        crm_portal.portal_id, "quotes", {**published, "hs_expiration_date": past}
    )
    valid = crm_sandbox.create_as_user(
        crm_portal.portal_id, "quotes", {**published, "hs_expiration_date": future}
    )
    draft = crm_sandbox.create_as_user(
        crm_portal.portal_id, "quotes", {"hs_status": "DRAFT", "hs_expiration_date": future}
    )

    requests = {
        "expired": draft_request(quote_id=expired["id"]),
        "valid": draft_request(quote_id=valid["id"]),
        "draft": draft_request(quote_id=draft["id"]),
    }
    for request in requests.values():
        await builder.publish(request, tenant)

    assert (await builder.outcome(requests["expired"].request_id))["code"] == "QUOTE_EXPIRED"
    assert (await builder.outcome(requests["draft"].request_id))["code"] == "QUOTE_NOT_PUBLISHED"
    assert (await builder.outcome(requests["valid"].request_id))["status"] == "drafted"


async def test_request_whose_qbo_calls_keep_failing_is_dead_lettered_and_rejected(
    builder: Harness, qbo_sandbox: Any, kafka_bootstrap: str
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = draft_request()
    # One HTTP attempt per call and no waits: the consumer's own retries are what run out.
    with (
        qbo_faults(qbo_sandbox, realm_id=tenant.account_id, error_rate=1.0, error_status=503),
        stamina.set_testing(True, attempts=1),
    ):
        await builder.publish(request, tenant)
        outcome = await builder.outcome(request.request_id)

    assert outcome["code"] == "QBO_UNAVAILABLE"
    rejected = await only_event(builder, "invoice.request-rejected", request.request_id)
    assert rejected.data.code is RejectionCode.QBO_UNAVAILABLE
    assert rejected.data.message.startswith("QuickBooks did not respond")
    record = await dead_letter(kafka_bootstrap, builder, request)
    assert dict(record.headers)["dlq-reason"].startswith(b"gave up after 4 attempts")
    assert await qbo_invoices(builder, qbo_sandbox, tenant) == []


async def test_request_for_a_portal_that_uninstalled_the_app_is_rejected_for_the_person_waiting(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    builder.crm_tokens.uninstalled.add(tenant.portal_id)
    request = draft_request(quote_id="quote-1")  # reading the quote needs the CRM

    await builder.publish(request, tenant)
    outcome = await builder.outcome(request.request_id)

    assert outcome["code"] == "CRM_NOT_CONNECTED"
    assert "install dealbooks" in outcome["message"]
    rejected = await only_event(builder, "invoice.request-rejected", request.request_id)
    assert rejected.data.code is RejectionCode.CRM_NOT_CONNECTED


async def test_request_for_a_portal_without_crm_access_is_rejected_at_once_as_crm_not_connected(
    builder: Harness, qbo_sandbox: Any, kafka_bootstrap: str
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)  # its portal has no CRM token configured
    request = draft_request(quote_id="quote-1")  # reading the quote needs the CRM

    await builder.publish(request, tenant)
    outcome = await builder.outcome(request.request_id)

    assert outcome["code"] == "CRM_NOT_CONNECTED"
    rejected = await only_event(builder, "invoice.request-rejected", request.request_id)
    assert rejected.data.code is RejectionCode.CRM_NOT_CONNECTED
    assert f"no access to the CRM of portal {tenant.portal_id}" in rejected.data.message
    record = await dead_letter(kafka_bootstrap, builder, request)
    headers = dict(record.headers)
    assert headers["dlq-reason"].startswith(
        f"no CRM access token is configured for portal {tenant.portal_id}".encode()
    )
    assert headers["dlq-attempts"] == b"1"  # permanent: not retried
