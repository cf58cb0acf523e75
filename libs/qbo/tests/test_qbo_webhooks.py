"""Webhooks: signature verification (Intuit's vector, tampered, missing) and real deliveries."""

from __future__ import annotations

import asyncio
import time

from dealbooks_infra.testing import qbo_faults
from dealbooks_qbo import Invoice, QboCompany, parse_webhook, sign, verify_signature
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle

# Intuit's published test vector: intuit/QuickBooks-V3-Java-SDK,
# ipp-v3-java-devkit/src/test/java/com/intuit/ipp/services/WebhooksServiceTest.java
INTUIT_VERIFIER = "b5771f19b12ddb4bcdb9f08bdc50bc63878a"
INTUIT_SIGNATURE = "JC2GUwciPmRBwEO7WvrRmKqu9tGOKL8FFallocTFi8Q="
INTUIT_PAYLOAD = (
    b'{"eventNotifications":[{"realmId":"1185883450","dataChangeEvent":{"entities":[{"name":'
    b'"Customer","id":"1","operation":"Create","lastUpdated":"2015-10-05T14:42:19-0700"}]}}]}'
)

# Intuit's CloudEvents sample (reference section 7.3, Intuit's webhooks data-objects page).
CLOUDEVENTS_SAMPLE = (
    b'[{"specversion":"1.0","id":"88cd52aa-33b6-4351-9aa4-47572edbd068",'
    b'"source":"intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",'
    b'"type":"qbo.invoice.created.v1","datacontenttype":"application/json",'
    b'"time":"2025-09-10T21:31:25.179851517Z","intuitentityid":"266","intuitaccountid":"310687",'
    b'"data":{}},{"specversion":"1.0","id":"e1","source":"intuit.x","type":"qbo.customer.merged.v1",'
    b'"time":"2025-09-10T21:31:26Z","intuitentityid":"123","intuitaccountid":"310687",'
    b'"data":{"deletedid":"27"}}]'
)


def test_intuit_published_signature_example_verifies():
    assert verify_signature(INTUIT_PAYLOAD, INTUIT_SIGNATURE, INTUIT_VERIFIER)
    assert sign(INTUIT_PAYLOAD, INTUIT_VERIFIER) == INTUIT_SIGNATURE


def test_tampered_body_or_wrong_token_fails_verification():
    tampered = INTUIT_PAYLOAD.replace(b'"id":"1"', b'"id":"2"')
    assert not verify_signature(tampered, INTUIT_SIGNATURE, INTUIT_VERIFIER)
    assert not verify_signature(INTUIT_PAYLOAD, INTUIT_SIGNATURE, "another-token")


def test_missing_signature_fails_verification():
    assert not verify_signature(INTUIT_PAYLOAD, None, INTUIT_VERIFIER)
    assert not verify_signature(INTUIT_PAYLOAD, "", INTUIT_VERIFIER)


def test_legacy_payload_parses_into_entity_changes():
    (change,) = parse_webhook(INTUIT_PAYLOAD)
    assert (change.realm_id, change.entity, change.entity_id, change.operation) == (
        "1185883450",
        "Customer",
        "1",
        "Create",
    )
    assert (
        change.occurred_at is not None
        and change.occurred_at.utcoffset().total_seconds() == -7 * 3600
    )


def test_cloudevents_payload_parses_into_entity_changes():
    created, merged = parse_webhook(CLOUDEVENTS_SAMPLE)
    assert (created.entity, created.entity_id, created.operation) == ("Invoice", "266", "Create")
    assert (
        created.realm_id == "310687" and created.event_id == "88cd52aa-33b6-4351-9aa4-47572edbd068"
    )
    assert created.occurred_at is not None
    assert (merged.entity, merged.operation, merged.deleted_id) == ("Customer", "Merge", "27")


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_changes_are_delivered_signed_in_legacy_format(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, company: QboCompany, webhook_receiver
):
    ep = qbo_sandbox.add_webhook(
        webhook_receiver.url, "verifier-1", "legacy", realms=[qbo_company.realm_id]
    )
    try:
        invoice = await company.create(
            Invoice,
            {
                "CustomerRef": {"value": "1"},
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": 5,
                        "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
                    }
                ],
            },
        )
        await company.void_invoice(invoice.Id, invoice.SyncToken)
        qbo_sandbox.user_creates(
            qbo_company.realm_id, "customers", {"DisplayName": "Walk-in Customer"}
        )

        def seen() -> list:
            return [c for r in webhook_receiver.received for c in parse_webhook(r.body)]

        await _wait_for(lambda: len(seen()) >= 3)
    finally:
        qbo_sandbox.remove_webhook(ep["endpoint_id"])
    for request in webhook_receiver.received:
        assert verify_signature(request.body, request.headers.get("intuit-signature"), "verifier-1")
    ops = [(c.entity, c.operation) for c in seen()]
    assert ops[:3] == [("Invoice", "Create"), ("Invoice", "Void"), ("Customer", "Create")]


async def test_cloudevents_delivery_is_retried_until_acknowledged(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, webhook_receiver
):
    webhook_receiver.fail_next = 2
    ep = qbo_sandbox.add_webhook(
        webhook_receiver.url, "verifier-2", "cloudevents", realms=[qbo_company.realm_id]
    )
    try:
        qbo_sandbox.user_creates(
            qbo_company.realm_id, "items", {"Name": "Gift wrap", "Type": "Service"}
        )
        await _wait_for(lambda: len(webhook_receiver.received) >= 3)
    finally:
        qbo_sandbox.remove_webhook(ep["endpoint_id"])
    bodies = {r.body for r in webhook_receiver.received}
    assert len(bodies) == 1  # the same batch, resent
    (change,) = parse_webhook(webhook_receiver.received[-1].body)
    assert (change.entity, change.operation, change.realm_id) == (
        "Item",
        "Create",
        qbo_company.realm_id,
    )
    assert webhook_receiver.received[-1].headers["content-type"] == "application/cloudevents+json"
    attempts = [
        d["attempt"] for d in qbo_sandbox.deliveries() if d.get("endpoint_id") == ep["endpoint_id"]
    ]
    assert attempts == [0, 1, 2]


async def test_dropped_webhooks_are_never_delivered_but_cdc_still_sees_the_change(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany, company: QboCompany, webhook_receiver
):
    ep = qbo_sandbox.add_webhook(
        webhook_receiver.url, "verifier-3", "legacy", realms=[qbo_company.realm_id]
    )
    try:
        with qbo_faults(qbo_sandbox, drop_webhooks=1):
            start = (await company.company_info()).MetaData.LastUpdatedTime
            qbo_sandbox.user_creates(
                qbo_company.realm_id, "customers", {"DisplayName": "Lost Event Ltd"}
            )
            await _wait_for(lambda: any(d.get("dropped") for d in qbo_sandbox.deliveries()))
    finally:
        qbo_sandbox.remove_webhook(ep["endpoint_id"])
    assert webhook_receiver.received == []
    cdc = await company.cdc(["Customer"], start)
    assert "Lost Event Ltd" in [c.DisplayName for c in cdc.changes["Customer"]]
