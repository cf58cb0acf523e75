"""The service kit's delivery rules, proven on a real Kafka broker and a MongoDB-wire server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dealbooks_contracts import (
    ContactSynced,
    Envelope,
    QboEntityChanged,
    SyncAction,
    SyncTrigger,
)
from dealbooks_infra import testing
from dealbooks_kit import GaveUp, KitSettings, PermanentError, ProcessedEvents, ServiceRuntime

pytestmark = pytest.mark.integration


def customer_changed(customer_id: str) -> Envelope[QboEntityChanged]:
    return testing.entity_changed("realm-1", "Customer", customer_id)


class Harness:
    """A runtime with one handler: count the effect in MongoDB, publish contact.synced."""

    def __init__(
        self,
        settings: KitSettings,
        on_dead_letter: Any = None,
        accepts: Any = None,
        selective: bool = False,
        dedupe: bool = True,
    ) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime(settings)
        self.transient_failures_left: dict[str, int] = {}
        self.runtime.consume(
            "sync-contact",
            QboEntityChanged,
            self.handle,
            on_dead_letter=on_dead_letter,
            accepts=accepts,
            selective=selective,
            dedupe=dedupe,
        )

    async def handle(self, event: Envelope[QboEntityChanged]) -> None:
        customer_id = event.data.entity_id
        if customer_id.startswith("permanent"):
            raise PermanentError(f"customer {customer_id} has no email address")
        if self.transient_failures_left.get(customer_id, 0) > 0:
            self.transient_failures_left[customer_id] -= 1
            raise TimeoutError("QBO did not answer in time")
        # Deliberately not idempotent, so a second run would show in the count.
        await self.runtime.db.effects.update_one(
            {"_id": customer_id}, {"$inc": {"runs": 1}}, upsert=True
        )
        synced = ContactSynced(
            action=SyncAction.UPDATED,
            trigger=SyncTrigger.WEBHOOK,
            mapping_version=1,
            qbo_customer_id=customer_id,
            crm_contact_id=f"contact-{customer_id}",
        )
        await self.runtime.publisher.publish(
            Envelope.build(synced, source="kit-test", caused_by=event)
        )

    async def send(self, value: bytes, key: bytes = b"realm-1") -> None:
        await self.runtime.publisher.publish_raw(
            self.settings.topic("qbo.entity-changed.v1"), value, key=key, headers={}
        )

    async def runs(self, customer_id: str) -> int:
        doc = await self.runtime.db.effects.find_one({"_id": customer_id})
        return int(doc["runs"]) if doc else 0


@pytest.fixture
async def harness(kit_settings: Any) -> AsyncIterator[Harness]:
    settings = kit_settings(
        handler_attempts=4,
        handler_wait_initial=0.05,
        handler_wait_max=0.2,
    )
    h = Harness(settings)
    async with h.runtime.running():
        yield h


async def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    """Read `count` records from the start of `topic` (fails the test if they do not come)."""
    return await testing.read_topic(
        bootstrap, topic, lambda record: record, count=count, poll_ms=500
    )


async def eventually(predicate: Any) -> None:
    await testing.eventually(predicate, interval=0.1)


async def test_handled_event_writes_to_mongodb_and_publishes_the_next_event(
    harness: Harness, kafka_bootstrap: str
) -> None:
    event = customer_changed("c1")
    await harness.send(event.to_bytes())

    await eventually(lambda: _runs_at_least(harness, "c1", 1))
    [record] = await read_topic(kafka_bootstrap, harness.settings.topic("contact.synced.v1"), 1)
    synced = Envelope[ContactSynced].from_bytes(record.value)
    assert synced.data.crm_contact_id == "contact-c1"
    assert synced.causation_id == event.id
    assert synced.correlation_id == event.correlation_id
    assert record.key == b"realm-1"


async def test_a_consumer_deduping_on_its_own_key_runs_its_handler_again_and_keeps_no_record(
    kit_settings: Any,
) -> None:
    h = Harness(kit_settings(), dedupe=False)
    async with h.runtime.running():
        event = customer_changed("d1")
        await h.send(event.to_bytes())
        await h.send(event.to_bytes())
        # Its handler is deliberately not idempotent: both copies reach it.
        await eventually(lambda: _runs_at_least(h, "d1", 2))
        await h.runtime.consumers[0].drain(5.0)  # what it settled is committed
        assert await h.runtime.db["processed_events"].count_documents({}) == 0


async def test_same_event_delivered_twice_has_one_effect(
    harness: Harness, kafka_bootstrap: str
) -> None:
    event = customer_changed("c2")
    await harness.send(event.to_bytes())
    await harness.send(event.to_bytes())
    marker = customer_changed("c2-after")
    await harness.send(marker.to_bytes())

    # Events on one key are consumed in order: once the marker is handled, both copies were.
    await eventually(lambda: _runs_at_least(harness, "c2-after", 1))
    assert await harness.runs("c2") == 1
    published = await read_topic(kafka_bootstrap, harness.settings.topic("contact.synced.v1"), 2)
    assert [
        Envelope[ContactSynced].from_bytes(r.value).data.qbo_customer_id for r in published
    ] == [
        "c2",
        "c2-after",
    ]


async def test_poison_message_lands_in_dlq_with_reason_and_consumer_keeps_running(
    harness: Harness, kafka_bootstrap: str
) -> None:
    await harness.send(b"{not json at all")
    await harness.send(json.dumps({"type": "qbo.entity-changed", "version": 1}).encode())
    await harness.send(customer_changed("permanent-1").to_bytes())
    await harness.send(customer_changed("c3").to_bytes())

    await eventually(lambda: _runs_at_least(harness, "c3", 1))
    dead = await read_topic(kafka_bootstrap, harness.settings.topic("qbo.entity-changed.v1.dlq"), 3)
    headers = [dict(r.headers) for r in dead]
    assert dead[0].value == b"{not json at all"
    assert headers[0]["dlq-reason"].startswith(b"malformed event:")
    assert b"tenant: Field required" in headers[1]["dlq-reason"]
    assert headers[2]["dlq-reason"] == b"customer permanent-1 has no email address"
    assert headers[2]["dlq-error-type"] == b"PermanentError"
    assert headers[2]["dlq-consumer"] == b"kit-test.sync-contact"
    assert (
        headers[2]["dlq-original-topic"] == harness.settings.topic("qbo.entity-changed.v1").encode()
    )


async def test_transient_failure_is_retried_then_succeeds(harness: Harness) -> None:
    harness.transient_failures_left["c4"] = 2
    await harness.send(customer_changed("c4").to_bytes())

    await eventually(lambda: _runs_at_least(harness, "c4", 1))
    assert harness.transient_failures_left["c4"] == 0
    assert await harness.runs("c4") == 1


async def test_transient_failure_that_outlasts_retries_is_dead_lettered(
    harness: Harness, kafka_bootstrap: str
) -> None:
    harness.transient_failures_left["c5"] = 99
    await harness.send(customer_changed("c5").to_bytes())
    await harness.send(customer_changed("c6").to_bytes())

    await eventually(lambda: _runs_at_least(harness, "c6", 1))
    [dead] = await read_topic(
        kafka_bootstrap, harness.settings.topic("qbo.entity-changed.v1.dlq"), 1
    )
    reason = dict(dead.headers)["dlq-reason"].decode()
    assert reason == "gave up after 4 attempts: TimeoutError: QBO did not answer in time"
    assert await harness.runs("c5") == 0


async def test_committed_offset_survives_a_restart_without_replaying(kit_settings: Any) -> None:
    settings = kit_settings()
    first = Harness(settings)
    async with first.runtime.running():
        await first.send(customer_changed("r1").to_bytes())
        await eventually(lambda: _runs_at_least(first, "r1", 1))
    # A new process with the same group resumes after the committed offset.
    second = Harness(settings)
    async with second.runtime.running():
        await second.send(customer_changed("r2").to_bytes())
        await eventually(lambda: _runs_at_least(second, "r2", 1))

        async def both_remembered() -> bool:
            # r2's record follows its effect by a moment; r1's was written by the first run.
            return await second.runtime.db.processed_events.count_documents({}) == 2

        await eventually(both_remembered)
        assert await second.runs("r1") == 1


async def _runs_at_least(harness: Harness, customer_id: str, n: int) -> bool:
    return await harness.runs(customer_id) >= n


async def test_dead_letter_hook_hears_of_each_event_given_up_on(kit_settings: Any) -> None:
    settings = kit_settings(
        handler_attempts=2,
        handler_wait_initial=0.01,
        handler_wait_max=0.02,
    )
    heard: list[tuple[str, GaveUp]] = []
    hook_failures = {"left": 1}

    async def on_dead_letter(event: Envelope[QboEntityChanged], gave_up: GaveUp) -> None:
        if event.data.entity_id == "flaky-hook" and hook_failures["left"]:
            hook_failures["left"] -= 1
            raise ConnectionError("could not tell the user yet")
        heard.append((event.data.entity_id, gave_up))

    h = Harness(settings, on_dead_letter)
    h.transient_failures_left = {"gives-up": 99, "flaky-hook": 99}
    async with h.runtime.running():
        for customer_id in ("gives-up", "permanent-2", "flaky-hook"):
            await h.send(customer_changed(customer_id).to_bytes())
        await h.send(b"{not json at all")  # nothing decoded: nobody to tell
        await h.send(customer_changed("after").to_bytes())
        await eventually(lambda: _runs_at_least(h, "after", 1))

    # The hook failed once for "flaky-hook": redelivered, given up on again, then heard.
    assert [customer_id for customer_id, _ in heard] == ["gives-up", "permanent-2", "flaky-hook"]
    gives_up, permanent, _ = (gave_up for _, gave_up in heard)
    assert (gives_up.permanent, gives_up.attempts, type(gives_up.error)) == (
        False, 2, TimeoutError
    )  # fmt: skip
    assert permanent.permanent
    assert permanent.reason == "customer permanent-2 has no email address"


@pytest.mark.parametrize("selective", [False, True], ids=["prompt", "selective"])
async def test_events_the_consumer_does_not_accept_are_skipped_without_a_dedupe_record(
    kit_settings: Any, selective: bool
) -> None:
    # A selective consumer (Kafka gathers its records before answering) behaves the same.
    h = Harness(
        kit_settings(), accepts=lambda event: event.data.entity == "Customer", selective=selective
    )
    invoice = testing.invoice_changed("realm-1", "130")
    customer = customer_changed("c7")
    async with h.runtime.running():
        await h.send(invoice.to_bytes())
        await h.send(customer.to_bytes())
        processed = h.runtime.db.processed_events

        async def customer_remembered() -> bool:
            return await processed.count_documents({}) >= 1

        await eventually(customer_remembered)
        assert await h.runs("130") == 0
        remembered = await processed.distinct("_id")
    # The customer was handled and remembered; the invoice, ignored, left no record.
    assert remembered == [f"sync-contact:{customer.id}"]


async def test_dedupe_records_older_than_the_retention_are_forgotten(kit_settings: Any) -> None:
    h = Harness(kit_settings(dedupe_retention_days=7))
    processed = h.runtime.db.processed_events
    now = datetime.now(UTC)
    await processed.insert_many(
        [
            {
                "_id": "sync-contact:old",
                "consumer": "sync-contact",
                "handled_at": now - timedelta(days=8),
            },
            {
                "_id": "sync-contact:new",
                "consumer": "sync-contact",
                "handled_at": now - timedelta(days=6),
            },
        ]
    )
    assert await h.runtime.forget_old_events() == 1
    assert await processed.distinct("_id") == ["sync-contact:new"]


async def test_handled_events_are_remembered_at_once_and_written_together(
    kit_settings: Any,
) -> None:
    h = Harness(kit_settings())
    processed = ProcessedEvents(h.runtime.db)
    collection = h.runtime.db.processed_events
    await collection.insert_one({"_id": "sync-contact:e2", "consumer": "sync-contact"})
    for event_id in ("e1", "e2", "e3"):
        processed.remember("sync-contact", event_id, "ok")
    assert await processed.seen("sync-contact", "e1")  # from memory, before any write
    assert await collection.count_documents({}) == 1
    # e2 was written meanwhile (a concurrent redelivery): the same outcome, not an error.
    await processed.flush()
    assert sorted(await collection.distinct("_id")) == [
        "sync-contact:e1",
        "sync-contact:e2",
        "sync-contact:e3",
    ]
    assert await processed.seen("sync-contact", "e3")
    assert not await processed.seen("sync-contact", "e4")


async def test_a_replay_for_another_consumer_is_left_alone_and_one_for_this_consumer_is_handled(
    harness: Harness,
) -> None:
    elsewhere = customer_changed("r1")
    await harness.runtime.publisher.publish(
        elsewhere, headers={"replay-for": "other-service.sync-contact"}
    )
    mine = customer_changed("r2")
    await harness.runtime.publisher.publish(mine, headers={"replay-for": "kit-test.sync-contact"})

    # One key, so in order: once r2 is handled, r1 was settled before it.
    await eventually(lambda: _runs_at_least(harness, "r2", 1))
    assert await harness.runs("r1") == 0
