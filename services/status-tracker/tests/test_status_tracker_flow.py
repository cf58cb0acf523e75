"""status-tracker end to end: drafted invoices, QBO changes, payments, overdue and CDC, on real
Kafka, a real MongoDB-wire server and both sandboxes over HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dealbooks_contracts import (
    OPERATOR_SOURCE,
    Envelope,
    InvoiceStage,
    PaymentChange,
    QboEntityChanged,
    QboOperation,
)
from dealbooks_infra.testing import eventually
from prometheus_client import REGISTRY

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py


def finds(tracker: Harness, collection: str) -> float:
    """How many finds on `collection` the service has sent so far (its own counter)."""
    labels = {"service": tracker.settings.service_name, "command": "find", "collection": collection}
    return REGISTRY.get_sample_value("dealbooks_db_commands_total", labels) or 0


async def test_drafted_invoice_is_tracked_and_written_to_the_deal(tracker: Harness) -> None:
    world = tracker.world()
    invoice = await world.invoice("459.00")
    await world.drafted(invoice)

    await world.stage(str(invoice.Id), "awaiting_send")
    [changed] = await tracker.events(
        "invoice.status-changed", lambda e: e.data.qbo_invoice_id == invoice.Id
        and e.tenant.account_id == world.realm
    )  # fmt: skip
    assert (changed.data.previous_stage, changed.data.stage) == (None, InvoiceStage.AWAITING_SEND)
    props = world.deal()["properties"]
    assert props["acct_amount_billed"] == "459.00"
    assert props["acct_invoice_status"] == "awaiting_send"
    assert props["acct_invoice_number"] == invoice.DocNumber
    assert props["acct_invoice_recipient"] == "Birds@Intuit.com"


async def test_partial_then_full_payment_moves_the_deal_to_paid_with_two_timeline_events(
    tracker: Harness,
) -> None:
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("459.00")

    await world.paid(invoice_id, "220.00")
    await world.stage(invoice_id, "partially_paid")
    assert world.deal()["properties"]["acct_invoice_status"] == "partially_paid"

    await world.paid(invoice_id, "239.00")
    await world.stage(invoice_id, "paid")

    assert world.deal()["properties"]["acct_invoice_status"] == "paid"
    recorded = await tracker.events(
        "invoice.payment-recorded", lambda e: e.data.qbo_invoice_id == invoice_id
        and e.tenant.account_id == world.realm, 2
    )  # fmt: skip
    assert [(e.data.amount.amount, e.data.invoice_balance.amount) for e in recorded] == [
        (Decimal("220.00"), Decimal("239.00")),
        (Decimal("239.00"), Decimal("0.00")),
    ]
    events = world.timeline()
    assert sorted(e["tokens"]["amount"] for e in events) == ["220.00", "239.00"]
    assert {e["tokens"]["invoiceNumber"] for e in events} == {invoice.DocNumber}


async def test_redelivered_payment_creates_one_timeline_event(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("100.00")

    # QBO retries whole webhook batches: the same change, three times
    payment = await world.paid(invoice_id, "40.00", times=3)
    marker = await world.paid(invoice_id, "60.00")
    await world.stage(invoice_id, "paid")
    # The marker's event comes after the three deliveries; by then all of them were handled.
    recorded = await tracker.events(
        "invoice.payment-recorded", lambda e: e.data.qbo_invoice_id == invoice_id
        and e.tenant.account_id == world.realm, 2
    )  # fmt: skip
    assert sorted(e.data.qbo_payment_id for e in recorded) == sorted([payment["Id"], marker["Id"]])

    amounts = sorted(e["tokens"]["amount"] for e in world.timeline())
    assert amounts == ["40.00", "60.00"]


async def test_out_of_order_invoice_and_payment_updates_converge_to_the_right_stage(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("80.00")
    payment = world.pay(invoice_id, "80.00")
    tracker.qbo_sandbox.mark_emailed(world.realm, invoice_id)

    # The payment's notification arrives first, the older invoice notifications after it.
    await world.webhook("Payment", payment["Id"], "Create")
    await world.webhook("Invoice", invoice_id, "Emailed")
    await world.webhook("Invoice", invoice_id, "Create")

    doc = await world.stage(invoice_id, "paid")
    assert doc["balance"] == "0.00" or Decimal(doc["balance"]) == 0


async def test_missed_webhook_is_healed_by_reconciliation(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("300.00")

    world.pay(invoice_id, "100.00")  # the webhook for this payment is lost
    await tracker.service.passes.reconcile(world.realm)

    await world.stage(invoice_id, "partially_paid")
    assert world.deal()["properties"]["acct_invoice_status"] == "partially_paid"
    [event] = world.timeline()
    assert event["tokens"]["amount"] == "100.00"


async def test_a_pass_beyond_the_cdc_window_rescans_the_realm_instead(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("300.00")

    world.pay(invoice_id, "120.00")  # its webhook is lost, and then no pass runs for 40 days
    store = tracker.service.store
    weeks_ago = datetime.now(UTC) - timedelta(days=40)
    await store.move_watermark(world.realm, weeks_ago)
    # QuickBooks' CDC refuses a changedSince that old; the pass reads the invoices instead.
    assert await tracker.service.passes.reconcile(world.realm) == 1

    await world.stage(invoice_id, "partially_paid")
    [event] = world.timeline()
    assert event["tokens"]["amount"] == "120.00"
    watermark = await store.watermark(world.realm)
    assert watermark is not None
    assert watermark.replace(tzinfo=UTC) > weeks_ago + timedelta(days=39)
    # The next pass is an ordinary CDC pass again; whatever it sees, nothing is recorded twice.
    await tracker.service.passes.reconcile(world.realm)
    assert len(world.timeline()) == 1


async def test_echoes_and_stale_notifications_of_an_invoice_cost_no_quickbooks_read(
    tracker: Harness,
) -> None:
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("210.00")
    untracked = await world.invoice("90.00")  # its draft's own event is still on its way
    before = tracker.qbo_sandbox.stats(world.realm)["requests"]
    reads_before = finds(tracker, "processed_events")

    await world.webhook("Invoice", invoice_id, "Create")  # QuickBooks echoes our own draft
    await world.webhook("Invoice", str(untracked.Id), "Create")  # ...before we track it
    # ...and a notification no newer than the state read (stamped as the invoice we read)
    assert invoice.MetaData is not None
    read_at = invoice.MetaData.LastUpdatedTime
    await world.webhook("Invoice", invoice_id, "Update", last_updated=read_at)
    payment = await world.paid(invoice_id, "210.00")
    # One lane per company: once the payment is recorded, the two before it were handled.
    await world.payment_recorded(payment["Id"])

    # Reading the payment and the invoice it paid; the other three asked QuickBooks nothing,
    # and the database nothing either: only the payment's event was looked up (dedupe).
    assert tracker.qbo_sandbox.stats(world.realm)["requests"] - before == 2
    assert finds(tracker, "processed_events") - reads_before == 1


async def test_an_operator_s_replay_reads_the_invoice_again_whatever_its_stamp(
    tracker: Harness,
) -> None:
    # Paid without a webhook; the operator replays the invoice (`dealbooks replay record`),
    # stamped by a clock a minute behind QuickBooks'. Taken as a webhook, that stamp would say
    # "nothing newer than what was read"; from the operator, it is a request to read again.
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("80.00")
    tracker.qbo_sandbox.advance_clock(seconds=2)
    world.pay(invoice_id, "80.00")
    replay = QboEntityChanged(
        realm_id=world.realm,
        entity="Invoice",
        entity_id=invoice_id,
        operation=QboOperation.UPDATE,
        last_updated=tracker.qbo_sandbox.now() - timedelta(minutes=1),
    )
    await tracker.service.runtime.publisher.publish(
        Envelope.build(replay, source=OPERATOR_SOURCE, tenant=world.tenant)
    )

    await world.stage(invoice_id, "paid")


async def test_a_payment_after_the_invoice_update_it_caused_reads_neither_the_invoice_nor_the_deal(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("210.00")
    tracker.qbo_sandbox.advance_clock(seconds=2)  # the payment stamps the invoice anew
    payment = world.pay(invoice_id, "210.00")
    before = tracker.qbo_sandbox.stats(world.realm)["requests"]
    deal_reads_before = finds(tracker, "deal_projections")

    # In the order the sandbox sends them: the invoice update a payment causes, then the payment.
    await world.webhook("Invoice", invoice_id, "Update")
    await world.webhook("Payment", payment["Id"], "Create")
    [recorded] = await world.payment_recorded(payment["Id"])
    deal_reads_after = finds(tracker, "deal_projections")

    # The invoice was read once (for its update, which linked the payment) and the payment
    # once; the deal's document once, to project the update. The payment found both as
    # recorded already.
    assert tracker.qbo_sandbox.stats(world.realm)["requests"] - before == 2
    assert deal_reads_after - deal_reads_before == 1
    assert recorded.data.invoice_balance.amount == 0
    await world.stage(invoice_id, "paid")
    assert [e["tokens"]["amount"] for e in world.timeline()] == ["210.00"]


async def test_foreign_currency_invoice_is_tracked_but_not_written_to_the_deal(
    tracker: Harness,
) -> None:
    world = tracker.world(country="GB", portal_currency="USD")
    invoice = await world.invoice("250.00")
    await world.drafted(invoice)
    await world.stage(str(invoice.Id), "awaiting_send")

    projection = await tracker.service.store.projection(world.tenant.portal_id, world.deal_id)
    assert projection is not None and projection["written"] is False
    assert "GBP" in projection["skipped_reason"] and "USD" in projection["skipped_reason"]
    assert not world.deal()["properties"].get("acct_invoice_status")


async def test_overdue_clock_marks_a_past_due_invoice_overdue(tracker: Harness) -> None:
    world = tracker.world()
    due = date.today() + timedelta(days=3)
    _, invoice_id = await world.tracked_invoice("75.00", due)

    with tracker.on_day(due + timedelta(days=1)):
        await tracker.service.passes.overdue_sweep()

    await world.stage(invoice_id, "overdue")
    assert world.deal()["properties"]["acct_invoice_status"] == "overdue"
    [changed] = await tracker.events(
        "invoice.status-changed", lambda e: e.data.qbo_invoice_id == invoice_id
        and e.tenant.account_id == world.realm and e.data.stage is InvoiceStage.OVERDUE
    )  # fmt: skip
    assert changed.data.previous_stage is InvoiceStage.AWAITING_SEND


async def test_voided_invoice_is_never_paid(tracker: Harness) -> None:
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("50.00")
    current = await tracker.qbo.company(world.realm).read(type(invoice), invoice_id)
    await tracker.qbo.company(world.realm).void_invoice(invoice_id, str(current.SyncToken))

    await world.webhook("Invoice", invoice_id, "Void")
    await world.stage(invoice_id, "voided")


async def test_deleted_payment_takes_the_invoice_back_to_awaiting_send(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("90.00")
    payment = await world.paid(invoice_id, "90.00")
    await world.stage(invoice_id, "paid")

    from dealbooks_qbo import Payment

    await tracker.qbo.company(world.realm).delete(Payment, payment["Id"], payment["SyncToken"])
    await world.webhook("Payment", payment["Id"], "Delete")

    await world.stage(invoice_id, "awaiting_send")
    removed = await world.payment_recorded(payment["Id"], PaymentChange.REMOVED)
    assert removed[0].data.invoice_balance.amount == Decimal("90.00")


def first_read_stale(monkeypatch: pytest.MonkeyPatch, store: Any, stale: Any) -> list[int]:
    """The store's next read of a deal answers `stale` (what a late handler read before the
    other handler saved), later reads what is stored; the reads, counted."""
    fresh = store.deal
    reads: list[int] = []

    async def read(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return stale if len(reads) == 1 else await fresh(*args, **kwargs)

    monkeypatch.setattr(store, "deal", read)
    return reads


async def test_a_projection_that_read_before_a_newer_invoice_was_saved_ends_on_the_newest(
    tracker: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two handlers of one deal at once (a draft of its second invoice, an e-mail of its
    first): the one that read before the other saved must not leave the deal on the older
    invoice, whichever finishes last."""
    world = tracker.world()
    first, first_id = await world.tracked_invoice("100.00")
    tracker.qbo_sandbox.advance_clock(seconds=2)
    second, _ = await world.tracked_invoice("200.00")

    async def shows(number: str) -> bool:
        return bool(world.deal()["properties"].get("acct_invoice_number") == number)

    await eventually(lambda: shows(second.DocNumber))
    store = tracker.service.store
    stale = await store.deal(world.tenant.portal_id, world.deal_id)  # before the e-mail
    tracker.qbo_sandbox.advance_clock(seconds=2)
    tracker.qbo_sandbox.mark_emailed(world.realm, first_id)
    await world.webhook("Invoice", first_id, "Update")
    await world.stage(first_id, "sent")
    await eventually(lambda: shows(first.DocNumber))

    # The draft's handler, late: its read is from before the e-mail was saved.
    reads = first_read_stale(monkeypatch, store, stale)
    await tracker.service.handlers.deals.project(world.tenant.portal_id, world.deal_id)

    assert len(reads) >= 2  # it checked again after writing
    props = world.deal()["properties"]
    assert (props["acct_invoice_number"], props["acct_invoice_status"]) == (
        first.DocNumber,
        "sent",
    )


async def test_a_late_projection_of_an_older_version_of_the_only_invoice_ends_on_the_newest(
    tracker: Harness,
) -> None:
    """A draft's handler and an e-mail's at once on a deal's only invoice: the draft's
    projection, from the version it saved, finishing after the e-mail's must not leave the
    deal awaiting send."""
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("150.00")
    drafted = await tracker.service.store.tracked(world.realm, invoice_id)
    tracker.qbo_sandbox.advance_clock(seconds=2)
    tracker.qbo_sandbox.mark_emailed(world.realm, invoice_id)
    await world.webhook("Invoice", invoice_id, "Update")
    await world.stage(invoice_id, "sent")

    # The draft's handler, late, projecting the version it had saved.
    await tracker.service.handlers.deals.project(
        world.tenant.portal_id, world.deal_id, known=drafted
    )

    props = world.deal()["properties"]
    assert (props["acct_invoice_number"], props["acct_invoice_status"]) == (
        invoice.DocNumber,
        "sent",
    )


async def test_a_projection_that_saw_one_invoice_ends_on_a_second_saved_meanwhile(
    tracker: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deal's first invoice projected by a handler that read before its second invoice was
    saved: the deal must not end on the first, whichever handler finishes last."""
    world = tracker.world()
    first, _ = await world.tracked_invoice("100.00")
    store = tracker.service.store
    stale = await store.deal(world.tenant.portal_id, world.deal_id)  # the first alone
    tracker.qbo_sandbox.advance_clock(seconds=2)
    second, _ = await world.tracked_invoice("200.00")

    reads = first_read_stale(monkeypatch, store, stale)
    # The first invoice's handler, late: it read the deal when it had one invoice.
    await tracker.service.handlers.deals.project(world.tenant.portal_id, world.deal_id)

    assert len(reads) >= 2  # it looked again after writing
    assert world.deal()["properties"]["acct_invoice_number"] == second.DocNumber
    assert first.DocNumber != second.DocNumber
