"""Lanes: events with one ordering key are handled in order, different keys side by side.

On a real Kafka broker and a MongoDB-wire server. The handler notes when each event starts
and ends (as a sequence of marks, not times), so the tests read overlap, never durations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from dealbooks_contracts import Envelope, QboEntityChanged
from dealbooks_infra import testing
from dealbooks_kit import KitSettings, ServiceRuntime

pytestmark = pytest.mark.integration


changed = testing.invoice_changed


until = testing.until_true


class Recorder:
    """A handler that holds each event until released, noting starts and ends in order."""

    def __init__(
        self,
        settings: KitSettings,
        ordering_key: Callable[[Envelope[QboEntityChanged]], str] | None = None,
        **subscriber_options: Any,
    ) -> None:
        self.runtime = ServiceRuntime(settings)
        self.settings = settings
        self.marks: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = anyio.Event()
        self.runtime.consume(
            "lanes", QboEntityChanged, self.handle, ordering_key=ordering_key, **subscriber_options
        )

    async def handle(self, event: Envelope[QboEntityChanged]) -> None:
        self.marks.append(("start", event.data.entity_id))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        self.marks.append(("end", event.data.entity_id))

    async def send(self, event: Envelope[QboEntityChanged]) -> None:
        # Through a real producer, keyed by tenant like every published event.
        await self.runtime.publisher.publish(event)

    def started(self) -> list[str]:
        return [entity for mark, entity in self.marks if mark == "start"]

    def ended(self) -> list[str]:
        return [entity for mark, entity in self.marks if mark == "end"]


async def test_events_of_different_tenants_are_handled_side_by_side(kit_settings: Any) -> None:
    recorder = Recorder(kit_settings())
    async with recorder.runtime.running():
        for realm in ("realm-a", "realm-b", "realm-c"):
            await recorder.send(changed(realm, f"inv-{realm}"))
        # All three start while none may finish: they run at once.
        await until(lambda: len(recorder.started()) == 3)
        assert recorder.most_in_flight == 3
        recorder.release.set()
        await until(lambda: len(recorder.ended()) == 3)


async def test_events_of_one_tenant_are_handled_one_after_another_in_order(
    kit_settings: Any,
) -> None:
    recorder = Recorder(kit_settings())
    recorder.release.set()
    async with recorder.runtime.running():
        ids = [f"inv-{n}" for n in range(12)]
        for entity_id in ids:
            await recorder.send(changed("realm-a", entity_id))
        await until(lambda: len(recorder.ended()) == 12)
    assert recorder.most_in_flight == 1
    # start, end, start, end, ... in publishing order
    assert recorder.marks == [(mark, e) for e in ids for mark in ("start", "end")]


async def test_a_finer_ordering_key_lets_one_tenant_s_entities_run_side_by_side(
    kit_settings: Any,
) -> None:
    recorder = Recorder(
        kit_settings(), ordering_key=lambda event: f"{event.data.realm_id}:{event.data.entity_id}"
    )
    async with recorder.runtime.running():
        for entity_id in ("inv-1", "inv-2", "inv-1"):
            await recorder.send(changed("realm-a", entity_id))
        # inv-1 and inv-2 start together; the second inv-1 waits for the first.
        await until(lambda: len(recorder.started()) == 2)
        assert sorted(recorder.started()) == ["inv-1", "inv-2"]
        recorder.release.set()
        await until(lambda: len(recorder.ended()) == 3)
    first_end = recorder.marks.index(("end", "inv-1"))
    second_start = len(recorder.marks) - 1 - recorder.marks[::-1].index(("start", "inv-1"))
    assert first_end < second_start


async def test_concurrency_is_capped_by_the_setting(kit_settings: Any) -> None:
    recorder = Recorder(kit_settings(consumer_concurrency=2))
    async with recorder.runtime.running():
        for realm in ("realm-a", "realm-b", "realm-c", "realm-d"):
            await recorder.send(changed(realm, f"inv-{realm}"))
        await until(lambda: len(recorder.started()) == 2)
        # Give the other two a chance to (wrongly) start before releasing.
        for _ in range(20):
            await anyio.sleep(0.01)
        assert recorder.most_in_flight == 2
        recorder.release.set()
        await until(lambda: len(recorder.ended()) == 4)
    assert recorder.most_in_flight == 2


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts the times the group took partitions away from this consumer."""

    def __init__(self) -> None:
        self.revoked = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revoked += 1

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


async def test_a_consumer_whose_handlers_outlast_the_poll_interval_stays_in_its_group(
    kit_settings: Any,
) -> None:
    # Handlers held three times Kafka's poll interval, with no room for another record: the
    # consumer pauses fetching but keeps polling, so the group never takes it for dead (which
    # would revoke its partitions and deliver everything in flight again).
    rebalances = Rebalances()
    recorder = Recorder(
        kit_settings(consumer_max_in_flight=1),
        listener=rebalances,
        max_poll_interval_ms=2000,
    )
    async with recorder.runtime.running():
        for realm in ("realm-a", "realm-b"):
            await recorder.send(changed(realm, f"inv-{realm}"))
        await until(lambda: len(recorder.started()) >= 1)
        await anyio.sleep(6)
        recorder.release.set()
        await until(lambda: len(recorder.ended()) == 2)
        await anyio.sleep(1)
        assert rebalances.revoked == 0
    assert sorted(recorder.started()) == ["inv-realm-a", "inv-realm-b"]
