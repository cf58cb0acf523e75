"""The one way a service consumes events: decode, dedupe, handle with retries, dead-letter, commit.

Guarantees, for every handler:
- the offset is committed only after the handler's effect (or the dead letter) is durable;
- an event id already handled by this consumer is skipped (dedupe in the service's own DB);
- transient failures are retried with exponential backoff and jitter;
- permanent failures, malformed bytes and failures that outlast the retries go to
  `<topic>.dlq` with the original bytes and a reason a person can read;
- a decoded event given up on is also handed to the consumer's `on_dead_letter` hook (a
  service tells the user who started the action); if the hook fails, the event is redelivered;
- nothing a message does can stop the consumer loop.
Handlers must still be idempotent: a crash after the effect and before the dedupe record
replays the event.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
import structlog
from dealbooks_contracts import REGISTRY, Envelope, EventPayload
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from dealbooks_kit.errors import PermanentError
from dealbooks_kit.kafka import EventPublisher
from dealbooks_kit.logging import get_logger
from dealbooks_kit.metrics import (
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    HANDLER_SECONDS,
)
from dealbooks_kit.mongo import IndexSpec
from dealbooks_kit.settings import KitSettings

P = TypeVar("P", bound=EventPayload)
Handler = Callable[[Envelope[P]], Awaitable[None]]


@dataclass(frozen=True)
class GaveUp:
    """Why a consumer dead-lettered an event: the reason written to the DLQ, the last error
    (a `PermanentError`, or whatever outlasted the retries) and the attempts made."""

    reason: str
    error: BaseException | None
    attempts: int

    @property
    def permanent(self) -> bool:
        """True when the handler declared the failure permanent; False when retries ran out."""
        return isinstance(self.error, PermanentError)


DeadLetterHook = Callable[[Envelope[P], GaveUp], Awaitable[None]]

log = get_logger(__name__)

PROCESSED_COLLECTION = "processed_events"
PROCESSED_INDEXES = (IndexSpec(PROCESSED_COLLECTION, [("consumer", 1), ("handled_at", 1)]),)


class ProcessedEvents:
    """Which event ids each consumer of this service has already handled."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection = db[PROCESSED_COLLECTION]

    async def seen(self, consumer: str, event_id: str) -> bool:
        return await self._collection.find_one({"_id": f"{consumer}:{event_id}"}) is not None

    async def mark(self, consumer: str, event_id: str, outcome: str) -> None:
        # A concurrent redelivery may have recorded it already; that is the same outcome.
        with contextlib.suppress(DuplicateKeyError):
            await self._collection.insert_one(
                {
                    "_id": f"{consumer}:{event_id}",
                    "consumer": consumer,
                    "outcome": outcome,
                    "handled_at": datetime.now(UTC),
                }
            )


class _GiveUp(Exception):
    def __init__(self, reason: str, error: BaseException | None, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.attempts = attempts


class EventConsumer(Generic[P]):
    """Runs one handler for one event type under the kit's delivery rules."""

    def __init__(
        self,
        *,
        name: str,
        payload: type[P],
        handler: Handler[P],
        settings: KitSettings,
        db: AsyncDatabase[dict[str, Any]],
        publisher: EventPublisher,
        on_dead_letter: DeadLetterHook[P] | None = None,
        accepts: Callable[[Envelope[P]], bool] | None = None,
    ) -> None:
        spec = REGISTRY.by_model(payload)
        self.name = name
        self.spec = spec
        self.topic = settings.topic(spec.topic)
        self.dlq_topic = settings.topic(spec.dlq_topic)
        self._envelope_type: Any = Envelope[payload]  # type: ignore[valid-type]
        self._handler = handler
        self._settings = settings
        self._processed = ProcessedEvents(db)
        self._publisher = publisher
        self._on_dead_letter = on_dead_letter
        self._accepts = accepts

    def subscribe(self, broker: KafkaBroker, **subscriber_options: Any) -> None:
        """Register on `broker`; one consumer group per (service, consumer name)."""
        options: dict[str, Any] = {
            # Prefixed like the topics, so isolated test runs never share a consumer group.
            "group_id": self._settings.topic(f"{self._settings.service_name}.{self.name}"),
            "auto_offset_reset": "earliest",
            "ack_policy": AckPolicy.MANUAL,
            "title": f"{self._settings.service_name}.{self.name}",
        }
        options.update(subscriber_options)

        @broker.subscriber(self.topic, **options)  # type: ignore[untyped-decorator]
        async def _on_message(message: KafkaMessage) -> None:
            await self.process(message)

    async def process(self, message: Any) -> None:
        """Handle one Kafka message end to end; never raises."""
        service = self._settings.service_name
        body: bytes = message.body
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=service, consumer=self.name)
        try:
            event: Envelope[P] = self._envelope_type.model_validate_json(body)
        except ValidationError as exc:
            await self._settle_dead_letter(message, f"malformed event: {_short(exc)}", exc)
            return
        if (event.type, event.version) != (self.spec.type, self.spec.version):
            reason = (
                f"event {event.type} v{event.version} does not belong on topic {self.spec.topic}"
            )
            await self._settle_dead_letter(message, reason, None)
            return
        structlog.contextvars.bind_contextvars(
            event_id=str(event.id),
            event_type=event.type,
            correlation_id=event.correlation_id,
            portal_id=event.tenant.portal_id,
            account_id=event.tenant.account_id,
        )
        event_id = str(event.id)
        if self._accepts is not None and not self._accepts(event):
            # Not this consumer's business (e.g. another QBO entity): no effect, so nothing to
            # remember; skipping the dedupe record saves two database calls per event.
            EVENTS_CONSUMED.labels(service, self.spec.topic, "ignored").inc()
            await message.ack()
            return
        try:
            if await self._processed.seen(self.name, event_id):
                EVENTS_CONSUMED.labels(service, self.spec.topic, "duplicate").inc()
                log.info("duplicate event skipped")
                await message.ack()
                return
            started = time.perf_counter()
            outcome = "ok"
            try:
                await self._handle_with_retries(event)
            except _GiveUp as gave_up:
                if not await self._dead_letter(
                    message, gave_up.reason, gave_up.error, gave_up.attempts
                ):
                    return
                if self._on_dead_letter is not None:
                    await self._on_dead_letter(
                        event, GaveUp(gave_up.reason, gave_up.error, gave_up.attempts)
                    )
                outcome = "dead_lettered"
            HANDLER_SECONDS.labels(service, self.spec.topic).observe(time.perf_counter() - started)
            await self._processed.mark(self.name, event_id, outcome)
            if outcome == "ok":
                EVENTS_CONSUMED.labels(service, self.spec.topic, "ok").inc()
                log.info("event handled")
            await message.ack()
        except Exception:
            # The dedupe store or the broker is unreachable: redeliver rather than lose it.
            log.exception("event not settled; it will be redelivered")
            EVENTS_CONSUMED.labels(service, self.spec.topic, "redelivered").inc()
            await _nack_later(message)

    async def _handle_with_retries(self, event: Envelope[P]) -> None:
        attempts = self._settings.handler_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._handler(event)
                return
            except PermanentError as exc:
                EVENTS_FAILED.labels(
                    self._settings.service_name, self.spec.topic, type(exc).__name__
                ).inc()
                raise _GiveUp(exc.reason, exc, attempt) from exc
            except Exception as exc:
                EVENTS_FAILED.labels(
                    self._settings.service_name, self.spec.topic, type(exc).__name__
                ).inc()
                if attempt == attempts:
                    reason = f"gave up after {attempts} attempts: {type(exc).__name__}: {exc}"
                    raise _GiveUp(reason, exc, attempt) from exc
                delay = self._backoff(attempt)
                log.warning(
                    "handler failed; retrying",
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                    error=f"{type(exc).__name__}: {exc}",
                )
                await anyio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        base = self._settings.handler_wait_initial * 2.0 ** (attempt - 1)
        return min(self._settings.handler_wait_max, base) + random.uniform(0, base / 2)

    async def _settle_dead_letter(
        self, message: Any, reason: str, error: BaseException | None
    ) -> None:
        if await self._dead_letter(message, reason, error, attempts=0):
            await message.ack()

    async def _dead_letter(
        self, message: Any, reason: str, error: BaseException | None, attempts: int
    ) -> bool:
        """Write the original bytes to the DLQ; False (and a nack) if that failed."""
        raw = message.raw_message
        headers = {
            "dlq-reason": reason[:2000],
            "dlq-error-type": type(error).__name__ if error else "",
            "dlq-consumer": f"{self._settings.service_name}.{self.name}",
            "dlq-attempts": str(attempts),
            "dlq-original-topic": raw.topic,
            "dlq-original-partition": str(raw.partition),
            "dlq-original-offset": str(raw.offset),
            "dlq-failed-at": datetime.now(UTC).isoformat(),
        }
        try:
            await self._publisher.publish_raw(
                self.dlq_topic, message.body, key=raw.key, headers=headers
            )
        except Exception:
            log.exception("dead letter could not be written; the event will be redelivered")
            await _nack_later(message)
            return False
        EVENTS_DEAD_LETTERED.labels(self._settings.service_name, self.spec.topic).inc()
        EVENTS_CONSUMED.labels(self._settings.service_name, self.spec.topic, "dead_lettered").inc()
        log.error("event dead-lettered", reason=reason, dlq_topic=self.dlq_topic)
        return True


async def _nack_later(message: Any, pause: float = 1.0) -> None:
    # Seek back so the message is fetched again; the pause keeps an outage from spinning hot.
    await anyio.sleep(pause)
    await message.nack()


def _short(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
        for err in exc.errors()[:5]
    ]
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more
