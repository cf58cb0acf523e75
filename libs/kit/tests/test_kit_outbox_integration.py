"""The outbox, proven on a real Kafka broker and a MongoDB-wire server: state and events are
written in one update, relayed in order, removed entry by entry, and leftovers are retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dealbooks_contracts import ContactSynced, Envelope
from dealbooks_infra import testing
from dealbooks_infra.testing import read_topic
from dealbooks_kit import Outbox, ServiceRuntime, outbox_entry, push

pytestmark = pytest.mark.integration

STATES = "sync_states"


synced = testing.contact_synced


class FlakyPublisher:
    """Publishes through the real publisher, failing the first `failures` calls, and runs
    `during_publish` (another writer) while an event is on its way."""

    def __init__(self, real: Any, failures: int = 0) -> None:
        self.real = real
        self.failures = failures
        self.during_publish: Any = None
        self.started: list[asyncio.Task[None]] = []

    def alongside(self, work: Any) -> Any:
        """A `during_publish` that starts `work` as a task of its own (another handler at the
        same time) instead of running it inside the publish."""

        async def start() -> None:
            self.started.append(asyncio.create_task(work()))

        return start

    async def finished(self) -> None:
        """Wait for what `alongside` started."""
        await asyncio.gather(*self.started)

    async def publish(self, event: Envelope[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        if self.during_publish is not None:
            writer, self.during_publish = self.during_publish, None
            await writer()
        await self.real.publish(event)


@pytest.fixture
async def runtime(kit_settings: Any) -> AsyncIterator[ServiceRuntime]:
    rt = ServiceRuntime(kit_settings(outbox_relay_seconds=0.2))
    async with rt.running():
        yield rt


async def record_state(rt: ServiceRuntime, doc_id: str, *events: Envelope[Any]) -> None:
    """A state change and the events it causes, in one single-document update."""
    await rt.db[STATES].update_one(
        {"_id": doc_id}, {"$set": {"state": "synced"}, **push(events)}, upsert=True
    )


async def published(rt: ServiceRuntime, bootstrap: str, count: int) -> list[str]:
    """Ids of the first `count` contact.synced events on the topic, in order."""
    events = await read_topic(
        bootstrap,
        rt.settings.topic("contact.synced.v1"),
        lambda record: Envelope[ContactSynced].from_bytes(record.value),
        count=count,
    )
    return [str(e.id) for e in events]


async def pending(rt: ServiceRuntime, doc_id: str) -> list[str]:
    doc = await rt.db[STATES].find_one({"_id": doc_id})
    return [entry["id"] for entry in (doc or {}).get("outbox", [])]


async def test_events_written_with_the_state_are_published_in_order_then_removed(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    first, second = synced("c1"), synced("c2")
    await record_state(runtime, "doc-1", first, second)

    assert await runtime.outbox.relay(STATES, "doc-1") == 2

    assert await published(runtime, kafka_bootstrap, 2) == [str(first.id), str(second.id)]
    assert await pending(runtime, "doc-1") == []
    assert (await runtime.db[STATES].find_one({"_id": "doc-1"}) or {})["state"] == "synced"


async def test_event_appended_while_relaying_stays_for_the_next_relay(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    first, late = synced("c3"), synced("c4")
    await record_state(runtime, "doc-2", first)
    racing = FlakyPublisher(runtime.publisher)
    racing.during_publish = lambda: record_state(runtime, "doc-2", late)

    await Outbox(runtime.db, racing).relay(STATES, "doc-2")  # type: ignore[arg-type]

    assert await pending(runtime, "doc-2") == [str(late.id)]
    await runtime.outbox.relay(STATES, "doc-2")
    assert await published(runtime, kafka_bootstrap, 2) == [str(first.id), str(late.id)]
    assert await pending(runtime, "doc-2") == []


async def test_failed_relay_keeps_the_events_and_the_periodic_pass_publishes_them(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    event = synced("c5")
    await record_state(runtime, "doc-3", event)
    broken = Outbox(runtime.db, FlakyPublisher(runtime.publisher, failures=1))  # type: ignore[arg-type]

    with pytest.raises(ConnectionError):
        await broken.relay(STATES, "doc-3")
    assert await pending(runtime, "doc-3") == [str(event.id)]

    runtime.use_outbox(STATES)  # watched from now on: the running pass picks it up
    await runtime.start_periodic()
    assert await published(runtime, kafka_bootstrap, 1) == [str(event.id)]

    async def drained() -> bool:
        return await pending(runtime, "doc-3") == []

    async with asyncio.timeout(30):
        while not await drained():
            await asyncio.sleep(0.05)


async def test_periodic_pass_publishes_only_entries_still_pending_since_its_previous_pass(
    runtime: ServiceRuntime,
) -> None:
    outbox = Outbox(runtime.db, runtime.publisher, [STATES])
    left_behind, fresh = synced("c6"), synced("c7")
    await record_state(runtime, "doc-4", left_behind)

    # A new entry may be on its way through its handler's own relay: not this pass.
    assert await outbox.relay_pending() == 0
    await record_state(runtime, "doc-5", fresh)
    assert await outbox.relay_pending() == 1

    assert await pending(runtime, "doc-4") == []
    assert await pending(runtime, "doc-5") == [str(fresh.id)]


async def reread_past_first_pass(rt: ServiceRuntime, publisher: Any = None) -> Outbox:
    """An outbox watching STATES as a reread collection, its first pass (a scan) behind it."""
    outbox = Outbox(rt.db, publisher or rt.publisher)
    outbox.watch(STATES, reread=True)
    assert await outbox.relay_pending() == 0
    return outbox


async def test_a_reread_collection_is_scanned_at_the_first_pass_only(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    earlier = synced("m4")
    await record_state(runtime, "doc-m4", earlier)  # left by a process that stopped
    outbox = Outbox(runtime.db, runtime.publisher)
    outbox.watch(STATES, reread=True)

    assert await outbox.relay_pending() == 1
    assert await published(runtime, kafka_bootstrap, 1) == [str(earlier.id)]
    # Later passes leave the collection to its writers' rereads (`relay_left`).
    await record_state(runtime, "doc-m5", synced("m5"))
    assert await outbox.relay_pending() == 0
    assert await outbox.relay_pending() == 0


async def test_the_first_pass_relays_every_document_of_a_reread_collection(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    left = [synced(f"p{n}") for n in range(3)]
    for n, event in enumerate(left):  # more than one page, all left by a process that stopped
        await record_state(runtime, f"doc-p{n}", event)
    outbox = Outbox(runtime.db, runtime.publisher)
    outbox.watch(STATES, reread=True)

    assert await outbox.relay_pending(limit=2) == 3
    assert sorted(await published(runtime, kafka_bootstrap, 3)) == sorted(str(e.id) for e in left)


async def test_a_document_read_after_its_writer_stopped_short_has_its_events_relayed(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    outbox = await reread_past_first_pass(runtime)
    left = synced("r1")
    await record_state(runtime, "doc-r1", left)  # written; its writer stopped before relaying
    assert await outbox.relay_pending() == 0  # past the first pass: the passes do not scan

    doc = await runtime.db[STATES].find_one({"_id": "doc-r1"})  # the event's rerun reads it
    assert doc is not None
    assert await outbox.relay_left(STATES, doc) == 1
    assert await published(runtime, kafka_bootstrap, 1) == [str(left.id)]
    assert await pending(runtime, "doc-r1") == []


async def test_entries_this_process_is_relaying_are_not_relayed_again_by_a_reader(
    runtime: ServiceRuntime,
) -> None:
    publisher = FlakyPublisher(runtime.publisher)
    outbox = Outbox(runtime.db, publisher)  # type: ignore[arg-type]
    event = synced("r2")
    await record_state(runtime, "doc-r2", event)
    relayed_by_reader: list[int] = []

    async def reader() -> None:  # another handler reads the document mid-relay
        doc = await runtime.db[STATES].find_one({"_id": "doc-r2"})
        assert doc is not None and [e["id"] for e in doc["outbox"]] == [str(event.id)]
        relayed_by_reader.append(await outbox.relay_left(STATES, doc))

    publisher.during_publish = publisher.alongside(reader)
    assert await outbox.relay(STATES, "doc-r2") == 1
    await publisher.finished()
    assert relayed_by_reader == [0]
    assert await pending(runtime, "doc-r2") == []


async def test_a_failed_relay_in_a_reread_collection_is_retried_by_the_next_pass(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    outbox = await reread_past_first_pass(runtime, FlakyPublisher(runtime.publisher, failures=1))
    event = synced("r3")
    await record_state(runtime, "doc-r3", event)
    doc = await runtime.db[STATES].find_one({"_id": "doc-r3"})
    assert doc is not None

    with pytest.raises(ConnectionError):
        await outbox.relay(STATES, "doc-r3", written=doc["outbox"])
    assert await outbox.relay_pending() == 1
    assert await published(runtime, kafka_bootstrap, 1) == [str(event.id)]
    assert await pending(runtime, "doc-r3") == []
    assert await outbox.relay_pending() == 0  # remembered once, not for ever


async def test_entries_settled_later_are_removed_together_and_count_as_published_until_then(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    outbox = Outbox(runtime.db, runtime.publisher, settle_delay=3600)  # settled by hand here
    first, second = synced("s1"), synced("s2")
    await record_state(runtime, "doc-s1", first)
    await record_state(runtime, "doc-s2", second)
    for doc_id in ("doc-s1", "doc-s2"):
        doc = await runtime.db[STATES].find_one({"_id": doc_id})
        assert doc is not None
        assert await outbox.relay(STATES, doc_id, written=doc["outbox"], settle_later=True) == 1

    assert await published(runtime, kafka_bootstrap, 2) == [str(first.id), str(second.id)]
    assert await pending(runtime, "doc-s1") == [str(first.id)]  # not removed yet...
    doc = await runtime.db[STATES].find_one({"_id": "doc-s1"})
    assert doc is not None
    assert await outbox.relay_left(STATES, doc) == 0  # ...but not published again either

    await outbox.settle()
    assert await pending(runtime, "doc-s1") == []
    assert await pending(runtime, "doc-s2") == []


async def test_a_pass_does_not_publish_again_what_this_process_is_relaying(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    publisher = FlakyPublisher(runtime.publisher)
    outbox = Outbox(runtime.db, publisher)  # type: ignore[arg-type]
    outbox.watch(STATES, reread=True)
    event = synced("s3")
    await record_state(runtime, "doc-s3", event)
    doc = await runtime.db[STATES].find_one({"_id": "doc-s3"})
    assert doc is not None
    passes: list[int] = []

    async def first_pass() -> None:  # it scans the collection mid-relay and finds the entry
        passes.append(await outbox.relay_pending())

    publisher.during_publish = publisher.alongside(first_pass)
    assert await outbox.relay(STATES, "doc-s3", written=doc["outbox"], settle_later=True) == 1
    await publisher.finished()
    assert passes == [0]
    await record_state(runtime, "doc-s4", marker := synced("s4"))
    assert await outbox.relay(STATES, "doc-s4") == 1
    assert await published(runtime, kafka_bootstrap, 2) == [str(event.id), str(marker.id)]


async def test_a_first_scan_that_failed_is_tried_again_by_the_next_pass(
    runtime: ServiceRuntime, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = synced("f1")
    await record_state(runtime, "doc-f1", left)  # left by a process that stopped
    outbox = Outbox(runtime.db, runtime.publisher)
    outbox.watch(STATES, reread=True)
    scan = outbox._pending_in

    async def unreachable(collection: str, limit: int | None) -> Any:
        monkeypatch.setattr(outbox, "_pending_in", scan)  # the server is back for the next
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(outbox, "_pending_in", unreachable)
    assert await outbox.relay_pending() == 0
    assert await outbox.relay_pending() == 1
    assert await published(runtime, kafka_bootstrap, 1) == [str(left.id)]
    assert await outbox.relay_pending() == 0  # scanned now: later passes leave it alone


async def test_a_documents_relays_take_turns_so_its_events_go_out_in_order(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    publisher = FlakyPublisher(runtime.publisher)
    outbox = Outbox(runtime.db, publisher)  # type: ignore[arg-type]
    first, second = synced("o1"), synced("o2")
    await record_state(runtime, "doc-o1", first)

    async def next_change() -> None:  # another handler writes and relays the next event
        await record_state(runtime, "doc-o1", second)
        await outbox.relay(STATES, "doc-o1", written=[outbox_entry(second)])

    async def slow_start() -> None:  # the first event is slow to reach Kafka
        await publisher.alongside(next_change)()
        await asyncio.sleep(0.3)

    publisher.during_publish = slow_start
    assert await outbox.relay(STATES, "doc-o1", written=[outbox_entry(first)]) == 1
    await publisher.finished()
    assert await published(runtime, kafka_bootstrap, 2) == [str(first.id), str(second.id)]
    assert await pending(runtime, "doc-o1") == []


async def test_a_document_whose_write_may_have_failed_is_relayed_by_the_next_pass(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    outbox = await reread_past_first_pass(runtime)
    event = synced("w1")
    await record_state(runtime, "doc-w1", event)  # applied, though its writer heard an error
    outbox.check_later(STATES, "doc-w1")

    assert await outbox.relay_pending() == 1
    assert await published(runtime, kafka_bootstrap, 1) == [str(event.id)]
    assert await outbox.relay_pending() == 0
