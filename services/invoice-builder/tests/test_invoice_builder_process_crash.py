"""invoice-builder as a real process, killed between QuickBooks' create and its own write:
after a restart there is still exactly one invoice and one `invoice.drafted`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from dealbooks_contracts import (
    REGISTRY,
    AccountConnected,
    AccountConnectedReason,
    Envelope,
    EventPayload,
    ExistingCustomer,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    QboEnvironment,
    Tenant,
    decode,
)
from pymongo import AsyncMongoClient

pytestmark = [pytest.mark.integration]


async def eventually(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    """Poll an async predicate until it holds (fails the test after `timeout`)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)


async def publish(bootstrap: str, prefix: str, payload: EventPayload, tenant: Tenant) -> Any:
    event = Envelope.build(payload, source="test", tenant=tenant)
    topic = prefix + REGISTRY.by_type(event.type, event.version).topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.kafka_key)
    finally:
        await producer.stop()
    return event


async def drafted_events(bootstrap: str, prefix: str) -> list[Envelope[Any]]:
    """Every invoice.drafted on the topic so far (read until a poll comes back empty)."""
    consumer = AIOKafkaConsumer(
        prefix + "invoice.drafted.v1",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[Envelope[Any]] = []
    try:
        async with asyncio.timeout(30):
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                if not batch and found:
                    return found
                found += [decode(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()


def qbo_invoices(qbo_sandbox: Any, realm_id: str, token: str) -> list[dict[str, Any]]:
    response = qbo_sandbox.http.get(
        f"/v3/company/{realm_id}/query",
        params={"query": "SELECT * FROM Invoice"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    response.raise_for_status()
    return list(response.json()["QueryResponse"].get("Invoice", []))


async def test_killed_after_qbo_create_then_restarted_yields_one_invoice_and_one_drafted(
    service_processes: Any,
    qbo_sandbox: Any,
    kafka_bootstrap: str,
    mongo_uri: str,
    namespace: str,
    kafka_supports_idempotence: bool,
) -> None:
    company = qbo_sandbox.create_company("US")
    realm = company.realm_id
    tenant = Tenant(portal_id=f"portal-{realm}", account_id=realm)
    prefix = f"{namespace}."
    env = {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_IDEMPOTENCE": str(kafka_supports_idempotence).lower(),
        "MONGODB_URI": mongo_uri,
        "TOPIC_PREFIX": prefix,
        "INVOICE_BUILDER_MONGODB_DATABASE": namespace,
        "QBO_BASE_URL": qbo_sandbox.base_url,
        # Tokens of a sandbox company: connector-auth plays no part in what is tested here.
        "INVOICE_BUILDER_QBO_TOKEN_SOURCE": "static",
        "INVOICE_BUILDER_QBO_STATIC_TOKENS": json.dumps({realm: company.access_token}),
        "INVOICE_BUILDER_CRASH_AFTER_QBO_CREATE": "true",
    }
    db = AsyncMongoClient[dict[str, Any]](mongo_uri)[namespace]
    first = service_processes.start("invoice-builder", env)

    await publish(
        kafka_bootstrap,
        prefix,
        AccountConnected(
            company_name="Crash Test Co",
            country="US",
            home_currency="USD",
            multicurrency_enabled=False,
            custom_transaction_numbers=False,
            environment=QboEnvironment.SANDBOX,
            reason=AccountConnectedReason.CONNECTED,
            connected_at=datetime.now(UTC),
        ),
        tenant,
    )

    async def account_known() -> bool:
        return await db.accounts.find_one({"_id": realm}) is not None

    await eventually(account_known)
    request = InvoiceRequested(
        request_id=uuid.uuid4(),
        deal_id="deal-crash",
        origin=InvoiceRequestOrigin.WIZARD,
        customer=ExistingCustomer(qbo_customer_id="1"),
        lines=[
            InvoiceLineRequest(
                qbo_item_id="2",
                quantity=Decimal("1"),
                unit_price=Money(amount=Decimal("250.00"), currency="USD"),
            )
        ],
    )
    await publish(kafka_bootstrap, prefix, request, tenant)

    async def died() -> bool:
        async with httpx.AsyncClient(timeout=0.5) as http:
            try:
                await http.get(f"{first}/healthz")
            except httpx.TransportError:
                return True
        return False

    await eventually(died)
    assert len(qbo_invoices(qbo_sandbox, realm, company.access_token)) == 1
    unfinished = await db.invoice_requests.find_one({"_id": str(request.request_id)})
    assert unfinished is None or unfinished.get("status") == "pending"

    service_processes.start(
        "invoice-builder", {**env, "INVOICE_BUILDER_CRASH_AFTER_QBO_CREATE": "false"}
    )

    async def settled() -> bool:
        doc = await db.invoice_requests.find_one({"_id": str(request.request_id)})
        handled = await db.processed_events.count_documents({"consumer": "invoice-requests"})
        return bool(doc and doc.get("status") == "drafted" and not doc.get("outbox") and handled)

    await eventually(settled)
    drafted = [
        e
        for e in await drafted_events(kafka_bootstrap, prefix)
        if e.data.request_id == request.request_id
    ]
    [invoice] = qbo_invoices(qbo_sandbox, realm, company.access_token)
    # One event: the outbox may publish an envelope twice, never two envelopes (consumers
    # drop a repeated id).
    assert {(e.id, e.data.qbo_invoice_id) for e in drafted} == {(drafted[0].id, invoice["Id"])}
