"""The Kafka broker every service uses, and the one way to publish an event.

Every Kafka client (the broker's producer and consumers, topic creation, the operator CLI's
readers) connects with the same security from the settings: `kafka_security` for faststream,
`kafka_client_options` for a raw aiokafka client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.helpers import create_ssl_context
from aiokafka.structs import RecordMetadata
from dealbooks_contracts import REGISTRY, Envelope
from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from dealbooks_kit.logging import get_logger
from dealbooks_kit.metrics import EVENTS_PUBLISHED
from dealbooks_kit.settings import KitSettings
from dealbooks_kit.tracing import publishing

log = get_logger(__name__)


class _Masked(str):
    """A password as aiokafka needs it (a `str`, encoded when it authenticates) that shows
    as asterisks in a repr or a formatted string: faststream keeps the clients' arguments in
    objects whose repr lists them."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"

    def __str__(self) -> str:
        return "**********"


_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


def kafka_ssl_context(settings: KitSettings) -> ssl.SSLContext | None:
    """The TLS context of an SSL or SASL_SSL connection: the brokers' certificates checked
    against `kafka_ssl_cafile` (else the system's CAs), with the client certificate if one is
    set; None when the protocol does not use TLS."""
    if settings.kafka_security_protocol not in {"SSL", "SASL_SSL"}:
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
    )
    return context


def kafka_security(settings: KitSettings) -> BaseSecurity | None:
    """faststream's security for the configured protocol and SASL mechanism; None for
    PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return _SASL[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        _Masked(settings.kafka_sasl_password.get_secret_value()),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def kafka_client_options(settings: KitSettings) -> dict[str, Any]:
    """Keyword arguments for a raw aiokafka client (`AIOKafkaConsumer`, `AIOKafkaProducer`,
    `AIOKafkaAdminClient`): the bootstrap servers, the service as client id and the security
    settings. Add the client's own options to them."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.service_name,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _Masked(settings.kafka_sasl_password.get_secret_value())
    return options


class _Broker(KafkaBroker):
    """faststream's KafkaBroker, but its subscribers join their consumer groups together
    instead of one after another. A join waits for the group's other members to rejoin (about
    a heartbeat), so a replica added to running ones with five groups took some 12 s before
    it consumed anything or ran a timer; joined together, it takes one join's time. (faststream's
    own `start` is: connect, start every subscriber, then every publisher.)"""

    async def start(self) -> None:
        await self.connect()
        # One failing start cancels the others' before start() raises (the first failure, as
        # faststream's own would): no join goes on after it.
        try:
            async with asyncio.TaskGroup() as joining:
                for subscriber in self.subscribers:
                    joining.create_task(subscriber.start())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from failed
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


def make_broker(settings: KitSettings) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and is idempotent.

    Publishing returns only after Kafka acknowledged the write, which is what lets a
    handler commit its offset (or a webhook answer 200) afterwards without losing anything.
    """
    return _Broker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        security=kafka_security(settings),
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
        kit's own (an operator's replay names the one consumer it is for). The record
        carries the trace context of its publish (`dealbooks_kit.tracing`)."""
        spec = REGISTRY.by_type(event.type, event.version)
        topic = self._settings.topic(spec.topic)
        sent = {
            "event-id": str(event.id),
            "event-type": event.type,
            "correlation-id": event.correlation_id,
            "content-type": "application/json",
            **(headers or {}),
        }
        with publishing(topic, event.type, sent["event-id"], sent):
            await self._broker.publish(
                event.to_bytes(), topic=topic, key=event.kafka_key, headers=sent
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
        with publishing(topic, headers.get("event-type", ""), headers.get("event-id", ""), headers):
            written = await self._broker.publish(value, topic=topic, key=key, headers=headers)
        return written if isinstance(written, RecordMetadata) else None
