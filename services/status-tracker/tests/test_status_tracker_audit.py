"""The audit trail of a tracked invoice: each change with the event that caused it, once."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_infra.testing import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py


async def test_drafted_then_paid_invoice_has_its_audit_entries_in_order_once_each(
    tracker: Harness,
) -> None:
    world = tracker.world()
    invoice = await world.invoice("300.00")
    invoice_id = str(invoice.Id)
    drafted = await world.drafted(invoice)
    await world.stage(invoice_id, "awaiting_send")
    payment = world.pay(invoice_id, "300.00")
    paid = await world.webhook("Payment", payment["Id"], "Create")
    await world.stage(invoice_id, "paid")
    audit = tracker.service.handlers.audit
    subject = f"{world.realm}:{invoice_id}"

    async def complete() -> bool:
        entries = await audit.entries("invoice", subject)
        return sum(e["action"] == "payment.recorded" for e in entries) == 1

    await eventually(complete)
    entries = await audit.entries("invoice", subject)
    trail = [(e["action"], e["event"]["id"]) for e in entries]
    assert trail == [
        ("stage.changed", str(drafted.id)),
        ("deal.properties-written", str(drafted.id)),
        ("stage.changed", str(paid.id)),
        ("deal.properties-written", str(paid.id)),
        ("payment.timeline-written", str(paid.id)),
        ("payment.recorded", str(paid.id)),
    ]
    assert entries[0]["event"]["type"] == "invoice.drafted"
    assert entries[0]["event"]["correlation_id"] == drafted.correlation_id
    assert entries[2]["detail"]["stage"] == "paid"
    assert entries[3]["detail"]["call"] == {
        "system": "crm",
        "method": "PATCH",
        "path": f"/crm/v3/objects/deals/{world.deal_id}",
    }
    assert entries[5]["detail"]["qbo_payment_id"] == payment["Id"]

    # Redelivered: the handler runs again for the same event, and an entry it would
    # write again (same event, action, subject) is written once.
    await tracker.service.handlers.on_entity_changed(paid)
    await audit.record("invoice", subject, world.tenant, paid, "payment.recorded", {})
    assert [(e["action"], e["event"]["id"]) for e in await audit.entries("invoice", subject)] == (
        trail
    )
