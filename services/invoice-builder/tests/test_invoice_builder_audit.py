"""invoice-builder's audit trail on real Kafka, the MongoDB-wire server and the QBO sandbox:
what a request did, in order, each entry with the event that caused it, and the invoice's
entry linked to its request."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_contracts import (
    InvoiceRequested,
    RejectionCode,
)
from dealbooks_infra import testing
from dealbooks_infra.testing import eventually
from dealbooks_kit.audit import Audit, invoice_subject

Harness = Any  # the harness fixture of conftest.py

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


def request(deal_id: str = "deal-audit") -> InvoiceRequested:
    return testing.wizard_request(deal_id)


def trail(builder: Harness) -> Audit:
    audit: Audit | None = builder.service.handlers.deps.audit
    assert audit is not None, "invoice-builder records no audit trail"
    return audit


async def test_a_drafted_request_leaves_its_trail_and_links_its_invoice(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    asked = request()
    sent = await builder.publish(asked, tenant)
    outcome = await builder.outcome(asked.request_id)
    assert outcome["status"] == "drafted"
    audit = trail(builder)

    requested = await audit.entries("request", str(asked.request_id))
    assert [e["action"] for e in requested] == ["request.received", "customer.found"]
    assert {e["event"]["id"] for e in requested} == {str(sent.id)}
    assert all(e["realm_id"] == tenant.account_id for e in requested)

    subject = invoice_subject(tenant.require_account_id(), outcome["qbo_invoice_id"])
    [created] = await audit.entries("invoice", subject)
    assert created["action"] == "invoice.created"
    assert created["event"]["id"] == str(sent.id)
    assert created["detail"]["request_id"] == str(asked.request_id)
    assert created["detail"]["qbo_invoice_id"] == outcome["qbo_invoice_id"]
    assert "access_token" not in str(created) and "Bearer" not in str(created)


async def test_a_refused_request_records_why(builder: Harness, qbo_sandbox: Any) -> None:
    tenant = await builder.us_tenant(qbo_sandbox, custom_numbers=True)
    asked = request("deal-audit-refused")
    await builder.publish(asked, tenant)
    assert (await builder.outcome(asked.request_id))["status"] == "rejected"

    audit = trail(builder)

    async def rejected() -> list[dict[str, Any]] | None:
        # Recorded once the refusal is durable, just after the outcome a person polls.
        found = await audit.entries("request", str(asked.request_id))
        return found if found and found[-1]["action"] == "request.rejected" else None

    entries = await eventually(rejected, timeout=10)
    assert [e["action"] for e in entries] == ["request.received", "request.rejected"]
    assert entries[-1]["detail"]["code"] == RejectionCode.CUSTOM_TXN_NUMBERS_ENABLED.value


async def test_the_same_event_recorded_twice_is_one_entry(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    asked = request("deal-audit-twice")
    sent = await builder.publish(asked, tenant)
    await builder.outcome(asked.request_id)
    audit = trail(builder)
    before = await audit.entries("request", str(asked.request_id))
    await audit.record("request", str(asked.request_id), tenant, sent, "request.received", {})
    assert await audit.entries("request", str(asked.request_id)) == before
