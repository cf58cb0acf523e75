"""`dealbooks replay record` against the real consumers on a real Kafka broker, a MongoDB-wire
server and both sandboxes over HTTP: contact-sync (with the mapping registry) for a customer,
status-tracker for an invoice. The record is changed in QuickBooks with no webhook, so only
the replay can bring it over; a second replay changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from dealbooks_contracts import (
    Envelope,
    InvoiceDrafted,
    Money,
    QboCustomerRef,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.sync_world import SyncStack
from dealbooks_infra.testing import eventually
from dealbooks_qbo import Invoice, QboClient
from dealbooks_sync.parts import SyncParts
from pymongo import AsyncMongoClient
from status_tracker.app import Service as Tracker
from status_tracker.app import build_service as build_tracker
from status_tracker.settings import StatusTrackerSettings

pytestmark = pytest.mark.integration


Cli = Any  # the `Cli` of conftest.py: the installed command with an environment


async def connected(mongo_uri: str, namespace: str, portal: str, realm: str) -> None:
    """The company as connector-auth records it once connected to the portal."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        await client[f"{namespace}_connector_auth"]["accounts"].insert_one(
            {
                "_id": f"{portal}:{realm}",
                "portal_id": portal,
                "realm_id": realm,
                "status": "connected",
                "connected_at": datetime.now(UTC),
            }
        )
    finally:
        await client.close()


@pytest.fixture
def cli(dealbooks: Callable[..., Cli], namespace: str) -> Cli:
    return dealbooks(
        CONNECTOR_AUTH_MONGODB_DATABASE=f"{namespace}_connector_auth",
        CONTACT_SYNC_MONGODB_DATABASE=f"{namespace}_contacts",
        STATUS_TRACKER_MONGODB_DATABASE=f"{namespace}_tracker",
    )


async def test_a_customer_replayed_becomes_its_contact_once(
    contacts: tuple[SyncStack, SyncParts],
    cli: Cli,
    qbo_sandbox: Any,
    qbo_company: Any,
    crm_sandbox: Any,
    crm_portal: Any,
    mongo_uri: str,
    namespace: str,
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    await connected(mongo_uri, namespace, crm_portal.key, realm)
    tag = uuid.uuid4().hex[:8]
    email = f"replayed.{tag}@example.com"
    body = {"DisplayName": f"Replayed {tag}", "PrimaryEmailAddr": {"Address": email}}
    customer = qbo_sandbox.user_creates(realm, "customers", body)["Customer"]

    def contacts_of_customer() -> list[dict[str, Any]]:
        return [
            c
            for c in crm_sandbox.objects(crm_portal.portal_id, "contacts")
            if c["properties"].get("email") == email
        ]

    assert contacts_of_customer() == []  # no webhook reached contact-sync

    code, first, err = await cli("replay", "record", "customer", realm, customer["Id"])

    assert code == 0, (first, err)
    assert (first["outcome"], first["consumer"]) == ("ok", "contact-sync.customers")
    assert (first["portal_id"], first["record_id"]) == (crm_portal.key, customer["Id"])
    assert first["synced"]["type"] == "contact.synced"
    assert first["synced"]["action"] == "created"
    [contact] = contacts_of_customer()
    assert first["synced"]["crm_contact_id"] == contact["id"]

    code, second, _ = await cli("replay", "record", "customer", realm, customer["Id"])
    assert (code, second["outcome"], second["synced"]["action"]) == (0, "ok", "unchanged")
    assert second["event_id"] != first["event_id"]
    [same] = contacts_of_customer()
    assert same["properties"] == contact["properties"]

    # As a person reads it: the sync event's fields by name and value.
    code, shown, err = await cli.text("replay", "record", "customer", realm, customer["Id"])
    assert code == 0, err
    [said, synced] = shown.splitlines()
    assert said.endswith(": ok: handled by contact-sync.customers (ok)")
    assert synced.startswith("synced: type=contact.synced, ")
    assert "action=unchanged" in synced and f"crm_contact_id={contact['id']}" in synced


async def test_a_record_of_a_company_not_connected_is_refused(
    cli: Cli, mongo_uri: str, namespace: str
) -> None:
    await connected(mongo_uri, namespace, "p-1", "r-1")
    code, _, err = await cli("replay", "record", "item", "r-2", "7")
    assert code == 1
    assert "company r-2 is not connected" in err
    code, _, err = await cli("replay", "record", "payment", "r-1", "7")
    assert code == 2
    # No product-sync reads the change: pending, and where to look.
    code, pending, err = await cli("replay", "record", "item", "r-1", "7", "--wait", "1")
    assert (code, pending["outcome"]) == (1, "pending"), err
    assert pending["detail"].endswith(
        "`dealbooks status` and `dealbooks lag --consumer product-sync.items` say)"
    )


@pytest.fixture
async def tracker(
    service_settings: Callable[..., StatusTrackerSettings], namespace: str
) -> AsyncIterator[tuple[Tracker, StaticTokenProvider, StaticTokenProvider]]:
    settings = service_settings(
        StatusTrackerSettings,
        namespace,
        mongodb_database=f"{namespace}_tracker",
        topic_prefix=f"{namespace}.",
        handler_attempts=3,
    )
    qbo_tokens, crm_tokens = StaticTokenProvider({}), StaticTokenProvider({})
    service = build_tracker(settings, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens)
    async with service.runtime.running():
        yield service, qbo_tokens, crm_tokens
    await service.aclose()


async def test_an_invoice_paid_without_a_webhook_is_read_again_by_status_tracker(
    tracker: tuple[Tracker, StaticTokenProvider, StaticTokenProvider],
    cli: Cli,
    qbo_sandbox: Any,
    crm_sandbox: Any,
    mongo_uri: str,
    namespace: str,
) -> None:
    service, qbo_tokens, crm_tokens = tracker
    company = qbo_sandbox.create_company("US")
    qbo_tokens.set(company.realm_id, company.access_token)
    portal = crm_sandbox.create_portal(companyCurrency="USD")
    crm_tokens.set(portal.key, portal.access_token)
    deal = crm_sandbox.create_as_user(portal.portal_id, "deals", {"dealname": "Replayed order"})
    realm = company.realm_id
    await connected(mongo_uri, namespace, portal.key, realm)
    async with QboClient(qbo_sandbox.base_url, qbo_tokens) as qbo:
        invoice = await qbo.company(realm).create(
            Invoice,
            {
                "CustomerRef": {"value": "1"},
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": Decimal("120.00"),
                        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                    }
                ],
            },
        )
    drafted = InvoiceDrafted(
        request_id=uuid.uuid4(),
        deal_id=deal["id"],
        qbo_invoice_id=str(invoice.Id),
        doc_number=invoice.DocNumber,
        customer=QboCustomerRef(qbo_customer_id="1"),
        customer_created=False,
        total=Money(amount=invoice.TotalAmt or Decimal("0"), currency="USD"),
        invoice_date=invoice.TxnDate or date.today(),
        due_date=invoice.DueDate,
    )
    tenant = Tenant(portal_id=portal.key, account_id=realm)
    await service.runtime.publisher.publish(Envelope.build(drafted, source="test", tenant=tenant))

    async def stage() -> str | None:
        doc = await service.store.tracked(realm, str(invoice.Id))
        return str(doc["stage"]) if doc and doc.get("stage") else None

    await eventually(lambda: _is(stage, "awaiting_send"))
    qbo_sandbox.record_payment(realm, str(invoice.Id), "120.00")  # no webhook
    assert await stage() == "awaiting_send"

    code, first, err = await cli("replay", "record", "invoice", realm, str(invoice.Id))

    assert code == 0, (first, err)
    assert first["consumer"] == "status-tracker.qbo-changes"
    assert first["tracked_invoice"]["stage"] == "paid"
    assert await stage() == "paid"
    code, second, _ = await cli("replay", "record", "invoice", realm, str(invoice.Id))
    assert (code, second["tracked_invoice"]) == (0, first["tracked_invoice"])

    code, shown, err = await cli.text("replay", "record", "invoice", realm, str(invoice.Id))
    assert code == 0, err
    assert "tracked_invoice: stage=paid, " in shown
    # An invoice status-tracker does not follow is said to be so, not left unsaid.
    code, shown, err = await cli.text("replay", "record", "invoice", realm, "999999")
    assert code == 0, err
    assert (
        shown.splitlines()[-1] == "tracked_invoice: none (status-tracker follows no such invoice)"
    )


async def _is(read: Any, expected: str) -> bool:
    return bool(await read() == expected)
