"""Two status-tracker handlers on the same invoice at the same moment, each on its own
connection to the real MongoDB-wire server: one status change is published, and the state
converges."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from dealbooks_contracts import Envelope, InvoiceStage, QboEntityChanged, QboOperation, decode
from dealbooks_kit import Outbox
from pymongo import AsyncMongoClient
from status_tracker.domain import InvoiceSnapshot
from status_tracker.handlers import StatusTracker
from status_tracker.store import TRACKED, Store

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py


class RacingStore(Store):
    """A store whose first save waits until the other racer has read and decided too, so both
    write from the same version, as two replicas handling one invoice at once would."""

    def __init__(self, db: Any, outbox: Outbox, start: asyncio.Barrier) -> None:
        super().__init__(db, outbox)
        self._start: asyncio.Barrier | None = start

    async def save_state(
        self, doc: dict[str, Any], snap: InvoiceSnapshot, stage: InvoiceStage,
        events: Sequence[Envelope[Any]],
    ) -> dict[str, Any]:  # fmt: skip
        if self._start is not None:
            start, self._start = self._start, None
            async with asyncio.timeout(30):  # a racer that never saves fails the test, not hangs
                await start.wait()
        return await super().save_state(doc, snap, stage, events)


def racer(
    tracker: Harness, start: asyncio.Barrier
) -> tuple[StatusTracker, AsyncMongoClient[dict[str, Any]]]:
    """A second handler instance of the service under test, on a connection of its own."""
    settings = tracker.settings
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    db = client[settings.database_name]
    store = RacingStore(db, Outbox(db, tracker.service.runtime.publisher), start)
    handlers = tracker.service.handlers
    return StatusTracker(
        store=store,
        qbo=handlers.qbo,
        crm=handlers.crm,
        payment_event_type=handlers.payment_event_type,
    ), client


def invoice_updated(tracker: Harness, world: Any, invoice_id: str) -> Envelope[Any]:
    """What webhook-gateway publishes when QuickBooks says the invoice changed just now."""
    return Envelope.build(
        QboEntityChanged(
            realm_id=world.realm,
            entity="Invoice",
            entity_id=invoice_id,
            operation=QboOperation.UPDATE,
            last_updated=tracker.qbo_sandbox.now(),
        ),
        source="test",
        tenant=world.tenant,
    )


async def status_changes_until_deleted(
    tracker: Harness, realm: str, invoice_id: str
) -> list[Envelope[Any]]:
    """The invoice's distinct `invoice.status-changed` events, in topic order, up to its
    deletion. A relay may publish an envelope again (same id, which consumers drop)."""
    consumer = AIOKafkaConsumer(
        tracker.settings.topic("invoice.status-changed.v1"),
        bootstrap_servers=tracker.bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: dict[str, Envelope[Any]] = {}
    try:
        async with asyncio.timeout(30):
            while not any(e.data.stage is InvoiceStage.DELETED for e in seen.values()):
                record = await consumer.getone()
                event = decode(record.value)
                if event.data.qbo_invoice_id == invoice_id and event.tenant.account_id == realm:
                    seen.setdefault(str(event.id), event)
    finally:
        await consumer.stop()
    return list(seen.values())


async def test_two_handlers_racing_on_one_paid_invoice_publish_one_change_and_converge(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("459.00")
    world.pay(invoice_id, "459.00")
    change = invoice_updated(tracker, world, invoice_id)
    start = asyncio.Barrier(2)
    (first, first_client), (second, second_client) = racer(tracker, start), racer(tracker, start)
    try:
        await asyncio.gather(first.on_entity_changed(change), second.on_entity_changed(change))
        # A later change, published after whatever the race published (same realm, same
        # partition): every status change of the race is before it on the topic.
        await first.invoices.refresh(world.tenant, invoice_id, deleted=True)
        for racing in (first, second):
            await racing.store.outbox.settle()  # published entries are removed together
    finally:
        await first_client.close()
        await second_client.close()

    changes = await status_changes_until_deleted(tracker, world.realm, invoice_id)
    assert [e.data.stage for e in changes] == [
        InvoiceStage.AWAITING_SEND,
        InvoiceStage.PAID,
        InvoiceStage.DELETED,
    ]
    assert changes[1].data.previous_stage is InvoiceStage.AWAITING_SEND
    db = tracker.service.store.db
    key = f"{world.realm}:{invoice_id}"
    tracked = await db[TRACKED].find_one({"_id": key})
    assert tracked is not None
    # Drafted (1), paid by exactly one racer (2), deleted (3): the loser wrote nothing.
    assert (tracked["version"], tracked["stage"]) == (3, "deleted")
    assert not tracked.get("outbox")  # every event was relayed


class StaleStore(Store):
    """A store that answers one read of the tracked invoice with a state captured earlier:
    a replica that read the invoice just before another replica moved it on."""

    def __init__(self, db: Any, outbox: Outbox, stale: dict[str, Any]) -> None:
        super().__init__(db, outbox)
        self._stale: dict[str, Any] | None = stale

    async def tracked(self, realm_id: str, qbo_invoice_id: str) -> dict[str, Any] | None:
        if self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return await super().tracked(realm_id, qbo_invoice_id)


async def test_a_replica_with_nothing_new_does_not_put_an_older_stage_back_on_the_deal(
    tracker: Harness,
) -> None:
    world = tracker.world()
    invoice, invoice_id = await world.tracked_invoice("120.00")
    stale = await tracker.service.store.tracked(world.realm, invoice_id)
    assert stale is not None
    # This replica moves the invoice on: paid, and the deal shows it.
    world.pay(invoice_id, "120.00")
    await tracker.service.handlers.invoices.refresh(world.tenant, invoice_id)
    assert world.deal()["properties"]["acct_invoice_status"] == InvoiceStage.PAID
    # The other read the invoice (and QuickBooks) before that: it finds nothing new...
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(tracker.settings.mongodb_uri)
    try:
        db = client[tracker.settings.database_name]
        store = StaleStore(db, Outbox(db, tracker.service.runtime.publisher), stale)
        handlers = tracker.service.handlers
        late = StatusTracker(store=store, qbo=handlers.qbo, crm=handlers.crm)
        await late.invoices.refresh(world.tenant, invoice_id, invoice=invoice)
    finally:
        await client.close()
    # ...and must not put the stage it read back on the deal.
    assert world.deal()["properties"]["acct_invoice_status"] == InvoiceStage.PAID


class StopsBeforeRelaying(Outbox):
    """An outbox whose process stops right after the state write, before any relay."""

    async def relay(self, *args: Any, **kwargs: Any) -> int:
        raise asyncio.CancelledError("process stopped")


async def test_a_run_stopped_between_its_write_and_its_relay_publishes_on_the_rerun(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("75.00")
    await tracker.service.store.outbox.settle()  # the draft's event is out and removed
    world.pay(invoice_id, "75.00")
    change = invoice_updated(tracker, world, invoice_id)
    handlers = tracker.service.handlers
    db = tracker.service.store.db
    stopped = StatusTracker(
        store=Store(db, StopsBeforeRelaying(db, tracker.service.runtime.publisher)),
        qbo=handlers.qbo,
        crm=handlers.crm,
    )
    with pytest.raises(asyncio.CancelledError):
        await stopped.on_entity_changed(change)
    key = f"{world.realm}:{invoice_id}"
    left = await db[TRACKED].find_one({"_id": key})
    assert left is not None and left["stage"] == "paid" and len(left["outbox"]) == 1

    # Its offset was not committed: the event comes again, to a fresh process.
    rerun = StatusTracker(
        store=Store(db, Outbox(db, tracker.service.runtime.publisher)),
        qbo=handlers.qbo,
        crm=handlers.crm,
    )
    await rerun.on_entity_changed(change)
    await rerun.invoices.refresh(world.tenant, invoice_id, deleted=True)  # closes the topic
    await rerun.store.outbox.settle()  # published entries are removed together

    changes = await status_changes_until_deleted(tracker, world.realm, invoice_id)
    assert [e.data.stage for e in changes] == [
        InvoiceStage.AWAITING_SEND,
        InvoiceStage.PAID,
        InvoiceStage.DELETED,
    ]
    assert str(changes[1].id) == left["outbox"][0]["id"]  # the one written before the stop
    done = await db[TRACKED].find_one({"_id": key})
    assert done is not None and not done.get("outbox")
