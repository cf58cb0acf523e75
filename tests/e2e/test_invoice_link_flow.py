"""Attaching an existing QuickBooks invoice to a deal, across services: the wizard's link
request -> invoice-builder -> `invoice.linked` -> status-tracker follows it and shows it on
the deal, then moves it on a payment. Real Kafka, a MongoDB-wire server, both sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from dealbooks_contracts import (
    Envelope,
    QboEntityChanged,
    QboOperation,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.testing import account_connected, eventually, read_events
from dealbooks_kit import Guard
from dealbooks_kit.auth import mint_grant
from dealbooks_qbo import Invoice, QboClient
from invoice_builder.api import build_api
from invoice_builder.app import build_service as build_builder
from invoice_builder.service import Service as Builder
from invoice_builder.settings import InvoiceBuilderSettings
from status_tracker.app import Service as Tracker
from status_tracker.app import build_service as build_tracker
from status_tracker.settings import StatusTrackerSettings

GRANT_KEYS = "g1:e2e-link-flow-grant-key"

pytestmark = [pytest.mark.integration]


class Stack:
    """invoice-builder and status-tracker in one namespace, sharing static tokens."""

    def __init__(self, builder: Builder, tracker: Tracker, bootstrap: str) -> None:
        self.builder = builder
        self.tracker = tracker
        self.bootstrap = bootstrap
        self.qbo_tokens = StaticTokenProvider({})
        self.crm_tokens = StaticTokenProvider({})

    async def linked_events(self, request_id: str) -> list[Envelope[Any]]:
        return await read_events(
            self.bootstrap,
            self.builder.settings.topic("invoice.linked.v1"),
            lambda event: str(event.data.request_id) == request_id,
        )


@pytest.fixture
async def stack(
    kafka_bootstrap: str,
    mongo_uri: str,
    namespace: str,
    kafka_supports_idempotence: bool,
    qbo_sandbox: Any,
    crm_sandbox: Any,
) -> AsyncIterator[Stack]:
    shared: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongo_uri,
        "topic_prefix": f"{namespace}.",
        "kafka_idempotence": kafka_supports_idempotence,
        "qbo_base_url": qbo_sandbox.base_url,
        "crm_base_url": crm_sandbox.base_url,
        "handler_wait_initial": 0.05,
        "handler_wait_max": 0.2,
        "grant_keys": GRANT_KEYS,
    }
    app = crm_sandbox.app()
    qbo_tokens, crm_tokens = StaticTokenProvider({}), StaticTokenProvider({})
    builder = build_builder(
        InvoiceBuilderSettings(**shared, mongodb_database=f"{namespace}_ib"),
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
    )
    tracker = build_tracker(
        StatusTrackerSettings(
            **shared,
            mongodb_database=f"{namespace}_st",
            crm_app_id=str(app["appId"]),
        ),
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
    )
    s = Stack(builder, tracker, kafka_bootstrap)
    s.qbo_tokens, s.crm_tokens = qbo_tokens, crm_tokens
    async with builder.runtime.running(), tracker.runtime.running():
        yield s
    await builder.aclose()
    await tracker.aclose()


async def test_linked_invoice_is_tracked_and_shown_on_the_deal(
    stack: Stack, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    company = qbo_sandbox.create_company("US")
    realm = company.realm_id
    stack.qbo_tokens.set(realm, company.access_token)
    stack.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    tenant = Tenant(portal_id=crm_portal.key, account_id=realm)
    deal = crm_sandbox.create_as_user(
        crm_portal.portal_id, "deals", {"dealname": "Kiln", "dealstage": "contractsent"}
    )
    async with QboClient(qbo_sandbox.base_url, stack.qbo_tokens) as qbo:
        # An invoice made in QuickBooks by a person, before dealbooks knew of it.
        existing = await qbo.company(realm).create(
            Invoice,
            {
                "CustomerRef": {"value": "1"},
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": Decimal("640.00"),
                        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                    }
                ],
            },
        )
    await stack.builder.runtime.publisher.publish(
        Envelope.build(
            account_connected(company_name="Pottery Co"),
            source="test",
            tenant=tenant,
        )
    )

    async def connected() -> bool:
        return await stack.builder.store.account(realm) is not None

    await eventually(connected)

    guard = Guard(stack.builder.settings, "invoice-builder")
    transport = httpx.ASGITransport(app=build_api(stack.builder, guard))
    person = mint_grant(GRANT_KEYS, [crm_portal.key], user_id="sales-rep")
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://wizard",
        headers={"Authorization": f"Bearer {person}"},
    ) as wizard:
        listed = await wizard.get(f"/portals/{crm_portal.key}/accounts/{realm}/invoices")
        assert existing.Id in [i["id"] for i in listed.json()["invoices"]]
        submitted = await wizard.post(
            f"/portals/{crm_portal.key}/accounts/{realm}/invoice-links",
            json={
                "qbo_invoice_id": existing.Id,
                "target": {"object_type": "deal", "object_id": deal["id"]},
            },
        )
        assert submitted.status_code == 202
        request_id = submitted.json()["request_id"]

        async def linked() -> bool:
            polled = await wizard.get(f"/portals/{crm_portal.key}/invoice-requests/{request_id}")
            return polled.json().get("status") == "linked"

        await eventually(linked)

    [event] = await stack.linked_events(request_id)
    assert event.data.qbo_invoice_id == existing.Id
    assert event.data.total.amount == Decimal("640.00")

    async def shown(stage: str) -> bool:
        projection = await stack.tracker.store.projection(crm_portal.key, deal["id"])
        return bool(projection and projection["stage"] == stage and projection["written"])

    await eventually(lambda: shown("awaiting_send"))
    properties = crm_sandbox.read(crm_portal.portal_id, "deals", deal["id"])["properties"]
    assert properties["acct_invoice_number"] == existing.DocNumber
    assert properties["acct_amount_billed"] == "640.00"
    assert properties["acct_invoice_status"] == "awaiting_send"

    payment = qbo_sandbox.record_payment(realm, str(existing.Id), "140.00")["Payment"]
    await stack.tracker.runtime.publisher.publish(
        Envelope.build(
            QboEntityChanged(
                realm_id=realm,
                entity="Payment",
                entity_id=payment["Id"],
                operation=QboOperation.CREATE,
                last_updated=qbo_sandbox.now(),
            ),
            source="test",
            tenant=tenant,
        )
    )

    await eventually(lambda: shown("partially_paid"))

    async def on_timeline() -> bool:
        # The deal's stage and the payment's timeline event are written by separate steps.
        return bool(crm_sandbox.timeline_events(crm_portal.portal_id, object_id=deal["id"]))

    await eventually(on_timeline)
    [timeline] = crm_sandbox.timeline_events(crm_portal.portal_id, object_id=deal["id"])
    assert timeline["tokens"]["amount"] == "140.00"
