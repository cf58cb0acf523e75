"""An existing invoice linked to a contact or a company shows on that record in the CRM
itself: one note naming the invoice's number, amount, stage and QuickBooks link, once per
link, on real Kafka, a real MongoDB-wire server and both sandboxes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dealbooks_infra.testing import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py


async def notes_once_tracked(
    tracker: Harness, world: Any, record_type: str, record_id: str, invoice_id: str
) -> list[dict[str, Any]]:
    """The record's notes once the linked invoice is tracked with a stage and noted."""
    store = tracker.service.store

    async def noted() -> list[dict[str, Any]] | None:
        doc = await store.tracked(world.realm, invoice_id)
        notes = tracker.crm_sandbox.notes_on(world.portal.portal_id, record_type, record_id)
        return notes if doc and doc.get("stage") and notes else None

    return await eventually(noted)


@pytest.mark.parametrize(
    ("object_type", "record_type"), [("contact", "contacts"), ("company", "companies")]
)
async def test_a_linked_invoice_is_one_note_on_the_contact_or_company(
    tracker: Harness, object_type: str, record_type: str
) -> None:
    world = tracker.world()
    props = {
        "contacts": {"email": f"{uuid.uuid4().hex[:8]}@bakery.example"},
        "companies": {"name": "Bakery"},
    }[record_type]
    record = tracker.crm_sandbox.create_as_user(world.portal.portal_id, record_type, props)
    invoice = await world.invoice("120.00")
    invoice_id = str(invoice.Id)

    await world.linked(invoice, object_type, record["id"])

    [note] = await notes_once_tracked(tracker, world, record_type, record["id"], invoice_id)
    body = note["body"]
    assert f"QuickBooks invoice {invoice.DocNumber} linked" in body
    assert "Amount 120.00 USD" in body and "balance 120.00 USD" in body
    assert "Awaiting send" in body
    assert f'href="https://app.qbo.intuit.com/app/invoice?txnId={invoice_id}"' in body
    assert f"dealbooks-linked-{world.realm}-{invoice_id}-{record_type}-{record['id']}" in body
    # The contact or company shows a note, the deal nothing.
    assert world.shows() == []


async def test_the_same_link_made_again_leaves_one_note(tracker: Harness) -> None:
    world = tracker.world()
    company = tracker.crm_sandbox.create_as_user(
        world.portal.portal_id, "companies", {"name": "Twice"}
    )
    invoice = await world.invoice("60.00")
    first = await world.linked(invoice, "company", company["id"])
    await notes_once_tracked(tracker, world, "companies", company["id"], str(invoice.Id))

    # The same link again, as a new request and as the same event redelivered.
    again = await world.linked(invoice, "company", company["id"])
    for event in (again, first):
        await tracker.service.handlers.on_linked(event)

    notes = tracker.crm_sandbox.notes_on(world.portal.portal_id, "companies", company["id"])
    assert len(notes) == 1


async def test_an_invoice_linked_to_a_deal_is_shown_by_its_properties_not_a_note(
    tracker: Harness,
) -> None:
    world = tracker.world()
    invoice = await world.invoice("40.00")

    await world.linked(invoice, "deal", world.deal_id)

    await world.stage(str(invoice.Id), "awaiting_send")
    assert world.deal()["properties"]["acct_invoice_number"] == invoice.DocNumber
    assert world.shows("note") == []
