"""A refused invoice request reaches the CRM: on the record it was made from, with the reason
and how to fix it, once per request (a note, or an app event where the app defines a
rejection event type and the portal's app events are approved)."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import pytest
from dealbooks_contracts import (
    CrmObjectType,
    CrmRecordRef,
    InvoiceRequestKind,
    InvoiceRequestRejected,
    RejectionCode,
)
from dealbooks_infra.testing import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py
FIX = (
    "QuickBooks company Bakery has custom transaction numbers turned on, so invoices would get "
    "no number. In QuickBooks open Settings > Account and settings > Sales > Sales form "
    "content, turn off 'Custom transaction numbers', save, then request the invoice again."
)
REJECTION_TYPE = {
    "uid": "test_invoice_request_refused",
    "type": "app-event",
    "config": {
        "name": "Invoice request refused",
        "objectType": "DEAL",
        "properties": [
            {"name": n, "label": n, "type": "string"}
            for n in ("requestKind", "code", "message", "field")
        ],
    },
}


def refused(world: Any, request_id: UUID, **fields: Any) -> InvoiceRequestRejected:
    return InvoiceRequestRejected(
        request_id=request_id,
        request_kind=fields.pop("request_kind", InvoiceRequestKind.DRAFT),
        deal_id=fields.pop("deal_id", world.deal_id),
        code=fields.pop("code", RejectionCode.CUSTOM_TXN_NUMBERS_ENABLED),
        message=fields.pop("message", FIX),
        field=fields.pop("field", "account"),
        **fields,
    )


async def notes_until(
    tracker: Harness, world: Any, object_type: str, object_id: str, marker: str
) -> list[dict[str, Any]]:
    """The record's notes, once one carries `marker` (published last, so handled last)."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        notes = tracker.crm_sandbox.notes_on(world.portal.portal_id, object_type, object_id)
        found[:] = notes
        return any(marker in n["body"] for n in notes)

    await eventually(there)
    return found


async def test_a_refused_draft_request_is_one_note_on_the_deal_however_often_it_comes(
    tracker: Harness,
) -> None:
    world = tracker.world()
    request_id = uuid.uuid4()
    for _ in range(3):  # the same rejection delivered again, in new envelopes too
        await tracker.publish(refused(world, request_id), world.tenant)
    marker = uuid.uuid4()
    await tracker.publish(refused(world, marker, message="Marker."), world.tenant)

    notes = await notes_until(tracker, world, "deals", world.deal_id, str(marker))

    mine = [n for n in notes if str(request_id) in n["body"]]
    assert len(mine) == 1 and len(notes) == 2
    body = mine[0]["body"]
    assert "QuickBooks invoice not created" in body
    assert "CUSTOM_TXN_NUMBERS_ENABLED" in body and "field account" in body
    assert "turn off &#x27;Custom transaction numbers&#x27;" in body
    assert world.shows("app-event") == []


async def test_a_refused_link_to_a_contact_is_noted_on_the_contact(tracker: Harness) -> None:
    world = tracker.world()
    contact = tracker.crm_sandbox.create_as_user(
        world.portal.portal_id, "contacts", {"email": f"{uuid.uuid4().hex[:8]}@x.example"}
    )
    request_id = uuid.uuid4()
    rejection = refused(
        world,
        request_id,
        request_kind=InvoiceRequestKind.LINK,
        deal_id=None,
        code=RejectionCode.INVOICE_NOT_FOUND,
        message="QuickBooks invoice 999 does not exist in Bakery.",
        field="qbo_invoice_id",
        target=CrmRecordRef(object_type=CrmObjectType.CONTACT, object_id=contact["id"]),
    )

    await tracker.publish(rejection, world.tenant)

    [note] = await notes_until(tracker, world, "contacts", contact["id"], str(request_id))
    assert "QuickBooks invoice not linked" in note["body"]
    assert "QuickBooks invoice 999 does not exist in Bakery." in note["body"]
    assert world.shows() == []


async def test_with_a_rejection_event_type_a_refusal_is_an_app_event_or_else_a_note(
    tracker: Harness,
) -> None:
    tracker.crm_sandbox.add_app_event_type(REJECTION_TYPE)
    handlers = tracker.service.handlers
    handlers.rejection_event_type = REJECTION_TYPE["uid"]
    try:
        approved, unapproved = tracker.world(), tracker.world()
        tracker.crm_sandbox.set_app_events_approved(unapproved.portal.portal_id, False)
        sent, noted = uuid.uuid4(), uuid.uuid4()
        await tracker.publish(refused(approved, sent), approved.tenant)
        await tracker.publish(refused(unapproved, noted), unapproved.tenant)

        await notes_until(tracker, unapproved, "deals", unapproved.deal_id, str(noted))

        async def sent_as_event() -> bool:
            return bool(approved.shows("app-event"))

        await eventually(sent_as_event)
    finally:
        handlers.rejection_event_type = ""
    [event] = approved.shows("app-event")
    assert event["id"] == f"dealbooks-rejected-{sent}"
    assert event["properties"]["code"] == "CUSTOM_TXN_NUMBERS_ENABLED"
    assert event["properties"]["message"] == FIX
    assert approved.shows("note") == [] and unapproved.shows("app-event") == []


async def test_a_refusal_naming_no_record_is_left_alone(tracker: Harness) -> None:
    world = tracker.world()
    lone = uuid.uuid4()
    await tracker.publish(refused(world, lone, deal_id=None), world.tenant)
    marker = uuid.uuid4()
    await tracker.publish(refused(world, marker), world.tenant)

    notes = await notes_until(tracker, world, "deals", world.deal_id, str(marker))

    assert not any(str(lone) in n["body"] for n in notes)
