"""The Kafka broker every service uses, and the one way to publish an event."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.structs import RecordMetadata
from dealbooks_contracts import REGISTRY, Envelope
from faststream.kafka import KafkaBroker

from dealbooks_kit.logging import get_logger
from dealbooks_kit.metrics import EVENTS_PUBLISHED
from dealbooks_kit.settings import KitSettings

log = get_logger(__name__)


def make_broker(settings: KitSettings) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and is idempotent.

    Publishing returns only after Kafka acknowledged the write, which is what lets a
    handler commit its offset (or a webhook answer 200) afterwards without losing anything.
    """
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=15000,
        graceful_timeout=10.0,
        # A plain stdlib logger, so faststream's lines go through the kit's redacting handler.
        logger=logging.getLogger("dealbooks.broker"),
        log_level=10,  # faststream's per-message lines go to DEBUG; the kit logs outcomes itself
        # No dependency injection: the kit's subscribers take the polled batch as it is (see
        # `EventConsumer.subscribe`). Resolving a context argument ran a sync function in a
        # worker thread for every batch, a tenth of a lightly loaded service's CPU.
        apply_types=False,
    )


class EventPublisher:
    """Publishes envelopes to their registered topic, keyed by tenant, and waits for the ack."""

    def __init__(self, broker: KafkaBroker, settings: KitSettings) -> None:
        self._broker = broker
        self._settings = settings

    async def publish(
        self, event: Envelope[Any], *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish `event` on its topic and wait for Kafka's ack; `headers` are added to the
        kit's own (an operator's replay names the one consumer it is for)."""
        spec = REGISTRY.by_type(event.type, event.version)
        topic = self._settings.topic(spec.topic)
        await self._broker.publish(
            event.to_bytes(),
            topic=topic,
            key=event.kafka_key,
            headers={
                "event-id": str(event.id),
                "event-type": event.type,
                "correlation-id": event.correlation_id,
                "content-type": "application/json",
                **(headers or {}),
            },
        )
        EVENTS_PUBLISHED.labels(self._settings.service_name, spec.topic).inc()
        # DEBUG: the consumer's "event handled" line (with its correlation id) tells the story at
        # INFO; one more line per event costs a busy service a few percent of its CPU.
        log.debug("event published", event_type=event.type, event_id=str(event.id), topic=topic)

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> RecordMetadata | None:
        """Publish bytes as they are (dead letters keep the original payload untouched);
        returns where Kafka put them (partition, offset), when the broker says."""
        written = await self._broker.publish(value, topic=topic, key=key, headers=headers)
        return written if isinstance(written, RecordMetadata) else None
