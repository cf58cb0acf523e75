"""The one way a service consumes events: decode, dedupe, handle with retries, dead-letter, commit.

Guarantees, for every handler:
- the offset is committed only after the handler's effect (or the dead letter) is durable;
- an event id already handled by this consumer is skipped (dedupe in the service's own DB);
- what a failure leads to is the kit's one failure policy (`dealbooks_kit.failures`), from the
  failure's kind and the consumer's `origin` (a person waits, or nobody does): retry with
  exponential backoff and jitter, dead-letter, reject back to the person, pause the tenant
  or settle with a logged reason;
- malformed bytes and dead-lettered events go to `<topic>.dlq` with the original bytes and a
  reason a person can read;
- a dead-lettered event is also handed to the consumer's `on_dead_letter` hook, and a rejected
  one to its `on_reject` hook (a service tells the person who started the action); if a hook
  fails, the event is handled again;
- nothing a message does can stop the consumer loop;
- a record carrying a `replay-for` header (an operator's replay of a dead letter, see
  `dealbooks dlq replay`) is handled only by the consumer it names, `<service>.<consumer>`;
  every other consumer of the topic settles it untouched.
Handlers must still be idempotent: a crash after the effect and before the dedupe record
replays the event.

Throughput: polled records are dealt into lanes by ordering key (the Kafka key, i.e. the
tenant, unless the consumer names a finer one such as one QuickBooks entity). A lane is handled
in order; lanes run side by side, up to `consumer_concurrency` handlers at once, so one slow
tenant (retrying a 429, say) holds up only its own lane. Fetching pauses (the
partitions are paused; polling, which keeps the consumer in its group, goes on) while
`consumer_max_in_flight` records are unsettled. Per partition, the committed offset is the
lowest one still unsettled, so a crash replays only records that may not have taken effect. A
record that cannot be settled (the dedupe store or the broker is down) is tried again in its
lane after a pause, holding the lane, until it is.
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
from pymongo.errors import BulkWriteError

from dealbooks_kit.eventdocs import (
    dead_letter_description,
    documented_envelope,
    event_summary,
    with_event_schema,
)
from dealbooks_kit.failures import Action, Decision, Failure, Origin, decide, retry_after
from dealbooks_kit.kafka import EventPublisher
from dealbooks_kit.lanes import Lanes
from dealbooks_kit.logging import get_logger
from dealbooks_kit.metrics import (
    CONSUMER_IN_FLIGHT,
    CONSUMER_LAG,
    CONSUMER_OLDEST_UNSETTLED,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    HANDLER_SECONDS,
    TENANT_PAUSED,
    note_dlq_end,
)
from dealbooks_kit.mongo import IndexSpec
from dealbooks_kit.priority import person_waiting
from dealbooks_kit.settings import KitSettings
from dealbooks_kit.tracing import consuming

P = TypeVar("P", bound=EventPayload)
Handler = Callable[[Envelope[P]], Awaitable[None]]
OrderingKey = Callable[[Envelope[P]], str]


@dataclass(frozen=True)
class GaveUp:
    """Why a consumer dead-lettered an event: the reason written to the DLQ, the last error,
    its kind of failure and the attempts made."""

    reason: str
    error: BaseException | None
    attempts: int
    failure: Failure = Failure.UNEXPECTED

    @property
    def permanent(self) -> bool:
        """True when retrying could not help; False when retries ran out."""
        return self.failure in {
            Failure.INVALID_INPUT,
            Failure.MISCONFIGURED,
            Failure.NOT_CONNECTED,
        }


DeadLetterHook = Callable[[Envelope[P], GaveUp], Awaitable[None]]
# Tells the person who started the work why it was refused: the policy's decision and the
# failure itself (the service turns them into its own rejection).
RejectHook = Callable[[Envelope[P], Decision, BaseException], Awaitable[None]]

log = get_logger(__name__)

PROCESSED_COLLECTION = "processed_events"
REPLAY_FOR_HEADER = "replay-for"
_DUPLICATE_KEY = 11000
PROCESSED_INDEXES = (IndexSpec(PROCESSED_COLLECTION, [("consumer", 1), ("handled_at", 1)]),)


class ProcessedEvents:
    """Which event ids each consumer of this service has already handled.

    A handled event is remembered at once in memory and written with the others handled
    since the last write (`flush`, one insert for all), which the consumer does before it
    commits their offsets: so a committed offset always has its records written, and a crash
    before the write leaves the offsets uncommitted, the events delivered again and the
    (idempotent) handlers run again, as a crash just before a single write would."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection = db[PROCESSED_COLLECTION]
        self._pending: dict[str, dict[str, Any]] = {}

    async def seen(self, consumer: str, event_id: str) -> bool:
        key = f"{consumer}:{event_id}"
        if key in self._pending:
            return True
        return await self._collection.find_one({"_id": key}) is not None

    async def forget_before(self, cutoff: datetime) -> int:
        """Drop records of events handled before `cutoff` (older than any redelivery Kafka's
        retention allows); returns how many. MongoDB-wire servers here have no TTL index."""
        result = await self._collection.delete_many({"handled_at": {"$lt": cutoff}})
        return int(result.deleted_count)

    def remember(self, consumer: str, event_id: str, outcome: str) -> None:
        """Record a handled event; written by the next `flush`."""
        key = f"{consumer}:{event_id}"
        self._pending[key] = {
            "_id": key,
            "consumer": consumer,
            "outcome": outcome,
            "handled_at": datetime.now(UTC),
        }

    async def flush(self) -> None:
        """Write what was remembered since the last flush; raises (keeping it) on failure."""
        if not self._pending:
            return
        batch = dict(self._pending)
        try:
            await self._collection.insert_many(list(batch.values()), ordered=False)
        except BulkWriteError as exc:
            # A concurrent redelivery may have recorded some already: the same outcome.
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != _DUPLICATE_KEY for e in errors) or not errors:
                raise
        for key in batch:
            self._pending.pop(key, None)


class _GiveUp(Exception):
    def __init__(
        self, reason: str, error: BaseException, attempts: int, decision: Decision
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.attempts = attempts
        self.decision = decision


class _Reject(Exception):
    def __init__(self, decision: Decision, error: BaseException) -> None:
        super().__init__(decision.reason)
        self.decision = decision
        self.error = error


class _Settle(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


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
        origin: Origin = Origin.SYSTEM,
        on_reject: RejectHook[P] | None = None,
        accepts: Callable[[Envelope[P]], bool] | None = None,
        ordering_key: OrderingKey[P] | None = None,
        dedupe: bool = True,
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
        if origin is Origin.PERSON and on_reject is None:
            raise ValueError(f"consumer {name}: a person waits, so it needs an on_reject hook")
        self.origin = origin
        self._on_reject = on_reject
        self._accepts = accepts
        self._dedupe = dedupe
        self._ordering_key = ordering_key
        self._lanes = Lanes(
            handle=self._process_item,
            sort=self._sort,
            concurrency=settings.consumer_concurrency,
            max_in_flight=settings.consumer_max_in_flight,
            name=f"{settings.service_name}.{name}",
            commit_interval=settings.consumer_commit_interval_ms / 1000,
            before_commit=self._processed.flush,
        )
        # Read at each scrape from what the lanes keep: nothing is added per record.
        labels = (settings.service_name, name, spec.topic)
        lanes = self._lanes
        CONSUMER_LAG.labels(*labels).set_function(lanes.lag)
        CONSUMER_IN_FLIGHT.labels(*labels).set_function(lambda: lanes.in_flight)
        CONSUMER_OLDEST_UNSETTLED.labels(*labels).set_function(lanes.oldest_unsettled_seconds)
        self._dead_lettered = EVENTS_DEAD_LETTERED.labels(settings.service_name, spec.topic, name)

    def subscribe(self, broker: KafkaBroker, **subscriber_options: Any) -> None:
        """Register on `broker`; one consumer group per (service, consumer name)."""
        title = f"{self._settings.service_name}.{self.name}"
        options: dict[str, Any] = {
            # Prefixed like the topics, so isolated test runs never share a consumer group.
            "group_id": self._settings.topic(title),
            "auto_offset_reset": "earliest",
            "ack_policy": AckPolicy.MANUAL,
            "title": title,
            "description": f"{event_summary(self.spec)} Consumed by {title}.",
            "batch": True,
            "max_records": self._settings.consumer_batch_size,
            # How long a poll waits when nothing is there (records already fetched return at
            # once). After an empty poll faststream also sleeps that long, and a record arriving
            # meanwhile waits: short, so an idle consumer adds at most ~50 ms to a hop.
            "batch_timeout_ms": 50,
            # The handler gets the polled batch itself: records are decoded once, by the
            # lanes' `sort`, not first as JSON by faststream.
            "decoder": _as_polled,
        }
        options.update(subscriber_options)
        options["listener"] = self._lanes.rebalances(subscriber_options.get("listener"))

        async def _on_batch(message: KafkaMessage) -> None:
            await self._lanes.dispatch(message)

        # The AsyncAPI document shows the envelope each record carries, and the dead letters
        # this consumer writes (`publish_raw`, not this publisher object, writes them).
        broker.subscriber(self.topic, **options)(with_event_schema(_on_batch, self.spec.model))
        broker.publisher(
            self.dlq_topic,
            title=f"{title}.dlq",
            description=dead_letter_description(self.spec, title),
            schema=documented_envelope(self.spec.model),
        )

    def reopen(self) -> None:
        """Take records again after a drain (a runtime started anew)."""
        self._lanes.reopen()

    async def drain(self, timeout: float) -> None:
        """Stop taking records, let lanes finish (up to `timeout`), commit what settled."""
        await self._lanes.drain(timeout)

    def _sort(self, record: Any) -> tuple[Any, tuple[Any, Envelope[P] | ValidationError]]:
        """A record's lane (its ordering key, else its Kafka key, else its partition) and
        what its handling needs, decoded once."""
        decoded = self._decode(record.value or b"")
        item = (record, decoded)
        if self._ordering_key is not None and isinstance(decoded, Envelope):
            with contextlib.suppress(Exception):
                return ("key", self._ordering_key(decoded)), item
        lane = ("kafka", record.key) if record.key else ("partition", record.partition)
        return lane, item

    async def _process_item(self, item: tuple[Any, Envelope[P] | ValidationError]) -> bool:
        record, decoded = item
        event = decoded if isinstance(decoded, Envelope) else None
        # One span per record, continuing the trace its publisher wrote into its headers.
        with consuming(record, f"{self._settings.service_name}.{self.name}", event):
            return await self.process(record, decoded)

    def _decode(self, body: bytes) -> Envelope[P] | ValidationError:
        try:
            event: Envelope[P] = self._envelope_type.model_validate_json(body)
        except ValidationError as exc:
            return exc
        return event

    async def process(self, record: Any, decoded: Envelope[P] | ValidationError) -> bool:
        """Handle one record end to end; True once it is settled (handled, skipped or
        dead-lettered durably), False if it must be delivered again. Never raises."""
        service = self._settings.service_name
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=service, consumer=self.name)
        target = replay_target(record)
        if target is not None and target != f"{service}.{self.name}":
            EVENTS_CONSUMED.labels(service, self.spec.topic, "ignored").inc()
            return True
        if isinstance(decoded, ValidationError):
            return await self._dead_letter(record, f"malformed event: {_short(decoded)}", decoded)
        event = decoded
        if (event.type, event.version) != (self.spec.type, self.spec.version):
            reason = (
                f"event {event.type} v{event.version} does not belong on topic {self.spec.topic}"
            )
            return await self._dead_letter(record, reason, None)
        structlog.contextvars.bind_contextvars(
            event_id=str(event.id),
            event_type=event.type,
            correlation_id=event.correlation_id,
            portal_id=event.tenant.portal_id,
            account_id=event.tenant.account_id,
        )
        if self._accepts is not None and not self._accepts(event):
            # Not this consumer's business (e.g. another QBO entity): no effect, so nothing to
            # remember; skipping the dedupe record saves two database calls per event.
            EVENTS_CONSUMED.labels(service, self.spec.topic, "ignored").inc()
            return True
        try:
            return await self._handle_once(record, event)
        except Exception:
            # The dedupe store or the broker is unreachable: try again rather than lose it.
            log.exception("event not settled; it will be handled again")
            EVENTS_CONSUMED.labels(service, self.spec.topic, "redelivered").inc()
            return False

    async def _handle_once(self, record: Any, event: Envelope[P]) -> bool:
        """Handle an event unless it was handled before, and remember how it went; False if
        its dead letter could not be written. Raises if the dedupe store or a hook fails."""
        service = self._settings.service_name
        event_id = str(event.id)
        if self._dedupe and await self._processed.seen(self.name, event_id):
            EVENTS_CONSUMED.labels(service, self.spec.topic, "duplicate").inc()
            log.info("duplicate event skipped")
            return True
        started = time.perf_counter()
        outcome = await self._outcome(record, event)
        if outcome is None:
            return False
        HANDLER_SECONDS.labels(service, self.spec.topic).observe(time.perf_counter() - started)
        if self._dedupe:
            self._processed.remember(self.name, event_id, outcome)
        if outcome == "ok":
            EVENTS_CONSUMED.labels(service, self.spec.topic, "ok").inc()
            log.info("event handled")
        return True

    async def _outcome(self, record: Any, event: Envelope[P]) -> str | None:
        """Run the handler under the failure policy: "ok", "settled", "rejected" or
        "dead_lettered"; None if the dead letter could not be written."""
        try:
            await self._handle_with_retries(event)
        except _Settle as settled:
            self._settled(settled.decision)
            return "settled"
        except _Reject as rejected:
            await self._rejected(event, rejected)
            return "rejected"
        except _GiveUp as gave_up:
            return "dead_lettered" if await self._gave_up(record, event, gave_up) else None
        return "ok"

    def _settled(self, decision: Decision) -> None:
        service = self._settings.service_name
        if decision.action is Action.PAUSE_TENANT:
            TENANT_PAUSED.labels(service, self.spec.topic, decision.failure).inc()
        EVENTS_CONSUMED.labels(service, self.spec.topic, "settled").inc()
        log.info(
            "event settled without effect",
            failure=decision.failure.value,
            action=decision.action.value,
            reason=decision.reason,
        )

    async def _rejected(self, event: Envelope[P], rejected: _Reject) -> None:
        """Tell the person who waits (the `on_reject` hook)."""
        assert self._on_reject is not None
        await self._on_reject(event, rejected.decision, rejected.error)
        EVENTS_CONSUMED.labels(self._settings.service_name, self.spec.topic, "rejected").inc()
        log.info(
            "request rejected",
            failure=rejected.decision.failure.value,
            reason=rejected.decision.reason,
        )

    async def _gave_up(self, record: Any, event: Envelope[P], gave_up: _GiveUp) -> bool:
        """Dead-letter the record, then run the hooks; False if the dead letter failed."""
        failure = gave_up.decision.failure
        if not await self._dead_letter(
            record, gave_up.reason, gave_up.error, gave_up.attempts, failure
        ):
            return False
        if self._on_dead_letter is not None:
            await self._on_dead_letter(
                event, GaveUp(gave_up.reason, gave_up.error, gave_up.attempts, failure)
            )
        if gave_up.decision.rule.tell and self._on_reject is not None:
            await self._on_reject(event, gave_up.decision, gave_up.error)
        return True

    async def _handle_with_retries(self, event: Envelope[P]) -> None:
        """Run the handler; a failure is decided by the kit's failure policy and comes out as
        `_Settle`, `_Reject` or `_GiveUp` (or is retried here)."""
        attempts = self._settings.handler_attempts
        for attempt in range(1, attempts + 1):
            try:
                # Its API calls go ahead of background ones when a person waits for it.
                with person_waiting(self.origin is Origin.PERSON):
                    await self._handler(event)
                return
            except Exception as exc:
                decision = decide(exc, self.origin)
                EVENTS_FAILED.labels(
                    self._settings.service_name, self.spec.topic, type(exc).__name__
                ).inc()
                action = decision.final(attempt, attempts)
                if action is Action.RETRY:
                    delay = self._backoff(attempt, retry_after(exc))
                    log.warning(
                        "handler failed; retrying",
                        attempt=attempt,
                        failure=decision.failure.value,
                        retry_in_s=round(delay, 3),
                        error=decision.reason,
                    )
                    await anyio.sleep(delay)
                    continue
                if action in {Action.SETTLE, Action.PAUSE_TENANT}:
                    raise _Settle(decision) from exc
                if action is Action.REJECT and self._on_reject is not None:
                    raise _Reject(decision, exc) from exc
                reason = decision.reason
                if decision.action is Action.RETRY:
                    reason = f"gave up after {attempts} attempts: {reason}"
                raise _GiveUp(reason, exc, attempt, decision) from exc

    def _backoff(self, attempt: int, asked: float | None = None) -> float:
        base = self._settings.handler_wait_initial * 2.0 ** (attempt - 1)
        wait = min(self._settings.handler_wait_max, base) + random.uniform(0, base / 2)
        if asked is not None:
            wait = max(wait, min(asked, self._settings.handler_wait_max))
        return wait

    async def _dead_letter(
        self,
        record: Any,
        reason: str,
        error: BaseException | None,
        attempts: int = 0,
        failure: Failure = Failure.INVALID_INPUT,
    ) -> bool:
        """Write the original bytes to the DLQ; False if that failed (handle it again)."""
        headers = {
            "dlq-reason": reason[:2000],
            "dlq-error-type": type(error).__name__ if error else "",
            "dlq-failure": failure.value,
            "dlq-consumer": f"{self._settings.service_name}.{self.name}",
            "dlq-attempts": str(attempts),
            "dlq-original-topic": record.topic,
            "dlq-original-partition": str(record.partition),
            "dlq-original-offset": str(record.offset),
            "dlq-failed-at": datetime.now(UTC).isoformat(),
        }
        try:
            written = await self._publisher.publish_raw(
                self.dlq_topic, record.value or b"", key=record.key, headers=headers
            )
        except Exception:
            log.exception("dead letter could not be written; the event will be handled again")
            return False
        self._dead_lettered.inc()
        if written is not None:
            note_dlq_end(
                self._settings.service_name, self.spec.dlq_topic, written.partition, written.offset
            )
        EVENTS_CONSUMED.labels(self._settings.service_name, self.spec.topic, "dead_lettered").inc()
        log.error("event dead-lettered", reason=reason, dlq_topic=self.dlq_topic)
        return True


def replay_target(record: Any) -> str | None:
    """The consumer (`<service>.<consumer>`) a replayed record is meant for, if it names one."""
    for key, value in getattr(record, "headers", None) or ():
        if key == REPLAY_FOR_HEADER and value:
            return bytes(value).decode(errors="replace")
    return None


async def _as_polled(message: KafkaMessage) -> KafkaMessage:
    return message


def _short(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
        for err in exc.errors()[:5]
    ]
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more
