"""Payments on the deal's timeline the way a new HubSpot app can put them there: app events
(timeline v4) where the portal's app events are approved, otherwise one note per payment
change, each exactly once, on real Kafka, a real MongoDB-wire server and both sandboxes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dealbooks_crm import CrmClient
from dealbooks_http import RetryPolicy
from status_tracker.crm_entries import AppEventsAccess, CrmEntries
from status_tracker.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py
V4 = "POST /integrators/timeline/v4/events"


def v4_calls(tracker: Harness, world: Any) -> int:
    counters = tracker.crm_sandbox.counters(world.portal.portal_id)
    return int(counters["byRoute"].get(V4, 0))


async def paid(world: Any, invoice_id: str, amount: str, times: int = 1) -> None:
    """A payment in QuickBooks whose webhook is delivered `times` times, once it is recorded."""
    payment = await world.paid(invoice_id, amount, times)
    await world.payment_recorded(payment["Id"])


async def test_a_payment_is_an_app_event_on_the_deal(tracker: Harness) -> None:
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("459.00")

    await paid(world, invoice_id, "220.00")

    [event] = world.shows("app-event")
    assert event["eventTypeName"] == "dealbooks_invoice_payment"
    assert event["properties"] == {
        "invoiceNumber": invoice.DocNumber,
        "amount": "220.00",
        "currency": "USD",
        "change": "applied",
        "paidOn": event["properties"]["paidOn"],
        "method": "unknown",
        "invoiceBalance": "239.00",
    }
    assert world.shows("note") == []


async def test_without_approved_app_events_a_redelivered_payment_makes_one_note(
    tracker: Harness,
) -> None:
    world = tracker.world()
    tracker.crm_sandbox.set_app_events_approved(world.portal.portal_id, False)
    invoice, invoice_id = await world.tracked_invoice("100.00")

    await paid(world, invoice_id, "40.00", times=3)
    # The second payment: the portal is remembered as refusing, so v4 is not asked again.
    await paid(world, invoice_id, "60.00")
    await world.stage(invoice_id, "paid")

    notes = world.shows("note")
    assert len(notes) == 2
    assert "40.00 USD" in notes[0]["body"] + notes[1]["body"]
    assert all(f"invoice {invoice.DocNumber}" in n["body"] for n in notes)
    assert world.shows("app-event") == []
    assert v4_calls(tracker, world) == 1


async def test_a_rate_limited_app_event_is_sent_again_and_lands_once(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("80.00")
    tracker.crm_sandbox.inject_fault(
        "rate_limit", count=2, portal_id=world.portal.portal_id, path_prefix="/integrators"
    )

    await paid(world, invoice_id, "80.00")

    assert len(world.shows("app-event")) == 1
    assert v4_calls(tracker, world) == 3
    assert tracker.crm_sandbox.counters(world.portal.portal_id)["injectedFaults"] == 2


# ---- the note ledger, around a stop and a race -----------------------------------------------


class StopsAfterSending(Store):
    """A store whose process stops right after an app event was sent, before it is recorded."""

    async def finish_entry(self, *args: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError("process stopped")


class StopsAfterCreating(Store):
    """A store whose process stops right after the note was created, before it is recorded."""

    async def finish_entry(self, *args: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError("process stopped")


def entries(tracker: Harness, store: Store, lease: float = 90.0) -> CrmEntries:
    return CrmEntries(store, tracker.service.handlers.crm, AppEventsAccess(), lease)


async def test_a_run_stopped_between_its_note_and_its_record_makes_no_second_note(
    tracker: Harness,
) -> None:
    world = tracker.world()
    db, outbox = tracker.service.store.db, tracker.service.store.outbox
    entry = world.payment_entry("stop")
    portal = world.tenant.portal_id

    with pytest.raises(asyncio.CancelledError):
        await entries(tracker, StopsAfterCreating(db, outbox)).put(portal, entry)
    assert len(world.shows("note")) == 1

    # The rerun, once the stopped run's claim has lapsed, finds the note instead of a second.
    rerun = entries(tracker, Store(db, outbox), lease=0.0)
    assert await rerun.put(portal, entry) == "note"
    assert await rerun.put(portal, entry) == "note"
    [note] = world.shows("note")
    recorded = await tracker.service.store.entry(portal, entry.key)
    assert recorded is not None and recorded["done"] and recorded["note_id"] == note["id"]


async def test_two_runs_writing_the_same_note_at_once_make_one(tracker: Harness) -> None:
    world = tracker.world()
    store = tracker.service.store
    entry = world.payment_entry("race")

    kinds = await asyncio.gather(
        *(entries(tracker, store).put(world.tenant.portal_id, entry) for _ in range(3))
    )

    assert kinds == ["note"] * 3
    assert len(world.shows("note")) == 1


async def test_a_note_whose_create_answer_is_lost_is_found_not_made_again(
    tracker: Harness,
) -> None:
    world = tracker.world()
    store = tracker.service.store
    entry = world.payment_entry("lost")
    tracker.crm_sandbox.inject_fault(
        "status",
        status=502,
        portal_id=world.portal.portal_id,
        path_prefix="/crm/v3/objects/notes",
    )
    crm = CrmClient(
        tracker.crm_tokens,
        base_url=tracker.crm_sandbox.base_url,
        retry=RetryPolicy(attempts=5, wait_initial=0.01, wait_max=0.05),
    )
    try:
        writer = CrmEntries(store, crm, AppEventsAccess(), 0.0)
        with pytest.raises(Exception, match="CRM"):  # not sent again: it may have been made
            await writer.put(world.tenant.portal_id, entry)
        assert await writer.put(world.tenant.portal_id, entry) == "note"
    finally:
        await crm.aclose()
    assert len(world.shows("note")) == 1


async def test_an_app_event_sent_again_after_a_stop_stands_as_sent_once(tracker: Harness) -> None:
    world = tracker.world()
    db, outbox = tracker.service.store.db, tracker.service.store.outbox
    entry = world.payment_entry("sent", "dealbooks_invoice_payment")
    portal = world.tenant.portal_id

    with pytest.raises(asyncio.CancelledError):
        await entries(tracker, StopsAfterSending(db, outbox)).put(portal, entry)
    # HubSpot refuses the same occurrence id (409): the rerun takes it as sent.
    assert await entries(tracker, Store(db, outbox)).put(portal, entry) == "app_event"

    assert [e["id"] for e in world.shows("app-event")] == [entry.key]
    assert v4_calls(tracker, world) == 2
    assert world.shows("note") == []


async def test_an_event_type_hubspot_does_not_know_makes_that_entry_a_note_only(
    tracker: Harness,
) -> None:
    world = tracker.world()
    writer = entries(tracker, tracker.service.store)
    portal = world.tenant.portal_id

    for n in range(2):
        entry = world.payment_entry(f"undeployed-{n}", "never_deployed")
        assert await writer.put(portal, entry) == "note"

    assert len(world.shows("note")) == 2
    assert v4_calls(tracker, world) == 2  # a 404 is not remembered for the portal
    assert writer.access.allows(portal)
