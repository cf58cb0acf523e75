"""One trace from a QuickBooks payment webhook to the deal it moves: webhook-gateway's intake
(server span, producer span with the W3C context in the Kafka record) -> status-tracker's
consumer span -> its QuickBooks, CRM and MongoDB calls. Both services in this process, on the
real Kafka and MongoDB-wire server and both sandboxes, spans kept by an in-memory exporter."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from dealbooks_contracts import (
    Envelope,
    InvoiceDrafted,
    Money,
    QboCustomerRef,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.testing import eventually
from dealbooks_kit import Guard
from dealbooks_qbo import Invoice, QboClient, sign
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from status_tracker.app import Service as Tracker
from status_tracker.app import build_service as build_tracker
from status_tracker.settings import StatusTrackerSettings
from webhook_gateway.api import build_api as gateway_api
from webhook_gateway.app import build_service as build_gateway
from webhook_gateway.handlers import Intake
from webhook_gateway.settings import WebhookGatewaySettings

pytestmark = [pytest.mark.integration]

VERIFIER_TOKEN = "verifier-" + uuid.uuid4().hex


@dataclass
class Stack:
    gateway: httpx.AsyncClient
    intake: Intake
    tracker: Tracker
    qbo_tokens: StaticTokenProvider
    crm_tokens: StaticTokenProvider


@pytest.fixture
async def stack(
    spans: InMemorySpanExporter,
    kafka_bootstrap: str,
    mongo_uri: str,
    namespace: str,
    kafka_supports_idempotence: bool,
    qbo_sandbox: Any,
    crm_sandbox: Any,
) -> AsyncIterator[Stack]:
    app = crm_sandbox.app()
    shared: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongo_uri,
        "topic_prefix": f"{namespace}.",
        "kafka_idempotence": kafka_supports_idempotence,
        "crm_client_secret": app["clientSecret"],
        "crm_app_id": str(app["appId"]),
        "handler_wait_initial": 0.05,
        "handler_wait_max": 0.2,
    }
    gateway_settings = WebhookGatewaySettings(
        **shared, mongodb_database=f"{namespace}_gw", qbo_verifier_token=VERIFIER_TOKEN
    )
    gateway, intake = build_gateway(gateway_settings)
    guard = Guard(gateway_settings, gateway_settings.service_name)
    gateway_app = gateway.asgi(api=gateway_api(intake, guard), title="webhook-gateway")
    qbo_tokens, crm_tokens = StaticTokenProvider({}), StaticTokenProvider({})
    tracker = build_tracker(
        StatusTrackerSettings(
            **shared,
            mongodb_database=f"{namespace}_st",
            qbo_base_url=qbo_sandbox.base_url,
            crm_base_url=crm_sandbox.base_url,
        ),
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
    )
    async with (
        gateway.running(),
        tracker.runtime.running(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway_app), base_url="http://gateway"
        ) as client,
    ):
        yield Stack(client, intake, tracker, qbo_tokens, crm_tokens)
    await tracker.aclose()


def payment_notification(realm: str, payment_id: str, last_updated: str) -> bytes:
    """QuickBooks' (legacy) webhook body for one new payment."""
    entity = {"name": "Payment", "id": payment_id, "operation": "Create"}
    change = {"entities": [{**entity, "lastUpdated": last_updated}]}
    return json.dumps(
        {"eventNotifications": [{"realmId": realm, "dataChangeEvent": change}]}
    ).encode()


def in_trace(spans: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]


def descends_from(span: ReadableSpan, ancestor: ReadableSpan, family: list[ReadableSpan]) -> bool:
    parents = {s.context.span_id: s for s in family}
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        if span.parent.span_id not in parents:
            return False
        span = parents[span.parent.span_id]
    return False


async def test_one_trace_spans_the_webhook_intake_and_the_payments_handling(
    stack: Stack, spans: InMemorySpanExporter, qbo_sandbox: Any, crm_sandbox: Any
) -> None:
    company = qbo_sandbox.create_company("US")
    realm = company.realm_id
    portal = crm_sandbox.create_portal()
    stack.qbo_tokens.set(realm, company.access_token)
    stack.crm_tokens.set(portal.key, portal.access_token)
    tenant = Tenant(portal_id=portal.key, account_id=realm)
    deal = crm_sandbox.create_as_user(
        portal.portal_id, "deals", {"dealname": "Kiln", "dealstage": "contractsent"}
    )
    await stack.intake.realms.connect(realm, portal.key)
    async with QboClient(qbo_sandbox.base_url, stack.qbo_tokens) as qbo:
        invoice = await qbo.company(realm).create(
            Invoice,
            {
                "CustomerRef": {"value": "1"},
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": Decimal("459.00"),
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
        total=Money(amount=Decimal("459.00"), currency="USD"),
        invoice_date=invoice.TxnDate or date.today(),
        due_date=invoice.DueDate,
    )
    await stack.tracker.runtime.publisher.publish(
        Envelope.build(drafted, source="invoice-builder", tenant=tenant)
    )

    async def stage(expected: str) -> bool:
        shown = await stack.tracker.store.projection(portal.key, deal["id"])
        return bool(shown and shown["stage"] == expected and shown["written"])

    await eventually(lambda: stage("awaiting_send"))
    payment = qbo_sandbox.record_payment(realm, str(invoice.Id), "140.00")["Payment"]
    body = payment_notification(realm, payment["Id"], qbo_sandbox.now().isoformat())

    answer = await stack.gateway.post(
        "/webhooks/quickbooks",
        content=body,
        headers={"intuit-signature": sign(body, VERIFIER_TOKEN)},
    )
    assert answer.status_code == 200
    await eventually(lambda: stage("partially_paid"))

    [intake] = [s for s in spans.get_finished_spans() if s.name == "POST /webhooks/quickbooks"]
    assert intake.kind is SpanKind.SERVER
    assert intake.parent is None  # QuickBooks sends no trace context: the trace starts here

    async def handled() -> list[ReadableSpan] | None:
        # The consumer span ends once the handler settled, a moment after the deal moved.
        family = in_trace(spans, intake.context.trace_id)
        consumed = [
            s
            for s in family
            if s.kind is SpanKind.CONSUMER
            and (s.attributes or {})
            .get("messaging.consumer.group.name", "")
            .startswith("status-tracker.")
        ]
        return family if consumed else None

    family = await eventually(handled)
    topic = f"{stack.tracker.settings.topic_prefix}qbo.entity-changed.v1"
    [published] = [s for s in family if s.name == f"publish {topic}"]
    assert published.kind is SpanKind.PRODUCER
    assert descends_from(published, intake, family)
    [consumed] = [
        s
        for s in family
        if s.name == f"process {topic}"
        and str((s.attributes or {}).get("messaging.consumer.group.name")).startswith(
            "status-tracker."
        )
    ]
    assert consumed.parent is not None and consumed.parent.span_id == published.context.span_id
    attributes = consumed.attributes or {}
    assert attributes["dealbooks.event.type"] == "qbo.entity-changed"
    assert attributes["dealbooks.tenant.account_id"] == realm
    assert attributes["dealbooks.tenant.portal_id"] == portal.key

    handling = [s for s in family if descends_from(s, consumed, family)]
    calls = [s for s in handling if s.kind is SpanKind.CLIENT]
    ports = {(s.attributes or {}).get("server.port") for s in calls}
    assert httpx.URL(qbo_sandbox.base_url).port in ports  # QuickBooks read the payment
    assert httpx.URL(crm_sandbox.base_url).port in ports  # the CRM's deal was updated
    commands = [s for s in calls if (s.attributes or {}).get("db.system.name") == "mongodb"]
    assert any(s.attributes and s.attributes.get("db.collection.name") for s in commands)
    # What the handler published continues the trace too.
    assert any(s.kind is SpanKind.PRODUCER for s in handling)

    shown = "".join(s.to_json() for s in spans.get_finished_spans())
    for secret in (company.access_token, portal.access_token, VERIFIER_TOKEN):
        assert secret not in shown
