"""invoice-builder as a real process, killed between QuickBooks' create and its own write:
after a restart there is still exactly one invoice and one `invoice.drafted`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from dealbooks_contracts import (
    REGISTRY,
    Envelope,
    EventPayload,
    Tenant,
)
from dealbooks_infra import testing
from pymongo import AsyncMongoClient

pytestmark = [pytest.mark.integration]


async def eventually(predicate: Callable[[], Any]) -> None:
    """Waits as long as a process restart may take."""
    await testing.eventually(predicate, timeout=60.0, interval=0.1)


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
    return await testing.read_events(
        bootstrap, prefix + "invoice.drafted.v1", drain=True, poll_ms=1000
    )


def qbo_invoices(qbo_sandbox: Any, realm_id: str, token: str) -> list[dict[str, Any]]:
    return list(qbo_sandbox.all_of(realm_id, token, "Invoice"))


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
        # No CRM call is made here: no portal has a CRM token, and connector-auth is not asked.
        "CRM_TOKEN_SOURCE": "static",
        "INVOICE_BUILDER_CRASH_AFTER_QBO_CREATE": "true",
    }
    db = AsyncMongoClient[dict[str, Any]](mongo_uri)[namespace]
    first = service_processes.start("invoice-builder", env)

    await publish(
        kafka_bootstrap,
        prefix,
        testing.account_connected(company_name="Crash Test Co"),
        tenant,
    )

    async def account_known() -> bool:
        return await db.accounts.find_one({"_id": realm}) is not None

    await eventually(account_known)
    request = testing.wizard_request("deal-crash")
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

    second = service_processes.start(
        "invoice-builder", {**env, "INVOICE_BUILDER_CRASH_AFTER_QBO_CREATE": "false"}
    )

    async def handled_by_second() -> bool:
        async with httpx.AsyncClient(timeout=2.0) as http:
            metrics = (await http.get(f"{second}/metrics")).text
        return any(
            line.startswith("dealbooks_events_consumed_total{")
            and "crm.invoice-requested" in line
            and 'outcome="ok"' in line
            and float(line.rsplit(" ", 1)[1]) >= 1
            for line in metrics.splitlines()
        )

    async def settled() -> bool:
        doc = await db.invoice_requests.find_one({"_id": str(request.request_id)})
        drafted = bool(doc and doc.get("status") == "drafted" and not doc.get("outbox"))
        return drafted and await handled_by_second()

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
