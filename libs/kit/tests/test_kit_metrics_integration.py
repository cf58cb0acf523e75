"""The metrics an operator watches, read from prometheus-client's registry after real work on a
real Kafka broker and a MongoDB-wire server: a consumer's lag, events in flight and the age of
the oldest unsettled one, dead letters, and the outbox's pending entries and their age."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from dealbooks_contracts import (
    Envelope,
    QboEntityChanged,
)
from dealbooks_infra import testing
from dealbooks_kit import Outbox, PermanentError, ServiceRuntime, push
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

SERVICE = "kit-metrics-test"
TOPIC = "qbo.entity-changed.v1"
CONSUMER = {"service": SERVICE, "consumer": "watched", "topic": TOPIC}


def value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


changed = testing.invoice_changed


until = testing.until_true


async def test_a_held_event_shows_as_lag_in_flight_and_age_until_it_settles(
    kit_settings: Any,
) -> None:
    runtime = ServiceRuntime(kit_settings(service_name=SERVICE))
    release = anyio.Event()
    handled: list[str] = []

    async def handle(event: Envelope[QboEntityChanged]) -> None:
        if event.data.entity_id == "held":
            await release.wait()
        handled.append(event.data.entity_id)

    runtime.consume("watched", QboEntityChanged, handle)
    async with runtime.running():
        await runtime.publisher.publish(changed("realm-held", "held"))
        for n in range(3):
            await runtime.publisher.publish(changed("realm-free", f"free-{n}"))
        await until(lambda: len(handled) == 3)
        await anyio.sleep(0.2)

        assert value("dealbooks_consumer_in_flight", CONSUMER) == 1
        assert value("dealbooks_consumer_oldest_unsettled_seconds", CONSUMER) >= 0.2
        assert value("dealbooks_consumer_lag", CONSUMER) >= 1

        release.set()
        await until(lambda: len(handled) == 4)
        await until(lambda: value("dealbooks_consumer_in_flight", CONSUMER) == 0)
        assert value("dealbooks_consumer_oldest_unsettled_seconds", CONSUMER) == 0
        await until(lambda: value("dealbooks_consumer_lag", CONSUMER) == 0)


async def test_a_dead_letter_is_counted_by_topic_and_consumer_with_the_topic_s_depth(
    kit_settings: Any,
) -> None:
    runtime = ServiceRuntime(kit_settings(service_name=SERVICE))
    written = {"service": SERVICE, "topic": TOPIC, "consumer": "refuses"}
    before = value("dealbooks_events_dead_lettered_total", written)

    async def refuse(event: Envelope[QboEntityChanged]) -> None:
        raise PermanentError("not an invoice we know")

    runtime.consume("refuses", QboEntityChanged, refuse)
    async with runtime.running():
        await runtime.publisher.publish(changed("realm-1", "inv-1"))
        await runtime.publisher.publish(changed("realm-1", "inv-2"))
        await until(lambda: value("dealbooks_events_dead_lettered_total", written) == before + 2)

    depth = {"service": SERVICE, "topic": f"{TOPIC}.dlq"}
    assert value("dealbooks_dlq_depth", depth) >= 2


synced = testing.contact_synced


async def test_an_entry_left_in_the_outbox_is_pending_with_its_age_until_a_pass_relays_it(
    kit_settings: Any,
) -> None:
    runtime = ServiceRuntime(kit_settings(service_name=SERVICE, outbox_relay_seconds=3600))
    labels = {"service": SERVICE, "collection": "metered_states"}
    async with runtime.running():
        outbox = Outbox(runtime.db, runtime.publisher, ["metered_states"], service=SERVICE)
        await runtime.db["metered_states"].update_one(
            {"_id": "doc-1"}, {"$set": {"state": "synced"}, **push([synced("c1")])}, upsert=True
        )
        await anyio.sleep(0.3)

        # First seen: perhaps still on its way through its handler's relay, so left, and pending.
        assert await outbox.relay_pending() == 0
        assert value("dealbooks_outbox_pending", labels) == 1
        assert value("dealbooks_outbox_oldest_seconds", labels) >= 0.3

        assert await outbox.relay_pending() == 1
        assert value("dealbooks_outbox_pending", labels) == 0
        assert value("dealbooks_outbox_oldest_seconds", labels) == 0
