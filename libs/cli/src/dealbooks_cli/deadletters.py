"""Reading dead letters: every registered event's `<topic>.dlq` (with TOPIC_PREFIX), from the
start or from a time, filtered; one by its partition and offset.

A dead letter is the original record's bytes as the consumer got them, with the consumer's
`dlq-*` headers: reason, error type, consumer (`<service>.<consumer>`), attempts, original
topic/partition/offset and when it failed (see `dealbooks_kit.consumer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from dealbooks_contracts import REGISTRY
from dealbooks_kit.kafka import kafka_client_options

from dealbooks_cli.stack import CliError, Stack

_POLL_MS = 300


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    dlq_topic: str
    partition: int
    offset: int
    timestamp: datetime
    headers: dict[str, str]
    value: bytes
    key: bytes | None = None

    @property
    def coordinates(self) -> str:
        return f"{self.dlq_topic} {self.partition}:{self.offset}"

    @property
    def consumer(self) -> str:
        return self.headers.get("dlq-consumer", "")

    @property
    def original_topic(self) -> str:
        return self.headers.get("dlq-original-topic") or self.dlq_topic.removesuffix(".dlq")

    @property
    def event(self) -> dict[str, Any] | None:
        """The original envelope as JSON, or None when the bytes are not a JSON object."""
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def _event_field(self, *path: str) -> str:
        node: Any = self.event
        for name in path:
            node = node.get(name) if isinstance(node, dict) else None
        return "" if node is None else str(node)

    @property
    def event_id(self) -> str:
        return self._event_field("id")

    def summary(self) -> dict[str, Any]:
        """What `dlq list` shows of it (no payload)."""
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "failed_at": self.headers.get("dlq-failed-at") or self.timestamp.isoformat(),
            "consumer": self.consumer,
            "event_id": self.event_id,
            "event_type": self._event_field("type"),
            "portal_id": self._event_field("tenant", "portal_id"),
            "realm_id": self._event_field("tenant", "account_id"),
            "correlation_id": self._event_field("correlation_id"),
            "reason": self.headers.get("dlq-reason", ""),
            "error_type": self.headers.get("dlq-error-type", ""),
            "attempts": int(self.headers.get("dlq-attempts") or 0),
            "original": {
                "topic": self.original_topic,
                "partition": _int_or_none(self.headers.get("dlq-original-partition")),
                "offset": _int_or_none(self.headers.get("dlq-original-offset")),
            },
        }

    def detail(self) -> dict[str, Any]:
        """What `dlq show` shows: the summary and the original envelope (or raw text)."""
        event = self.event
        return {
            **self.summary(),
            "envelope": event,
            "raw": None if event is not None else self.value.decode(errors="replace"),
        }


@dataclass(frozen=True)
class Filters:
    """Which dead letters a command is about; empty fields match everything."""

    topic: str | None = None
    consumer: str | None = None
    portal: str | None = None
    realm: str | None = None
    since: datetime | None = None
    event_id: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)

    def matches(self, letter: DeadLetter) -> bool:
        summary = letter.summary()
        wanted = [
            (self.consumer, summary["consumer"]),
            (self.portal, summary["portal_id"]),
            (self.realm, summary["realm_id"]),
            (self.event_id, summary["event_id"]),
        ]
        if any(want is not None and want != have for want, have in wanted):
            return False
        return self.since is None or letter.timestamp >= self.since


def dlq_topics(stack: Stack, existing: Iterable[str], topic: str | None = None) -> list[str]:
    """The physical dead-letter topics of registered events that exist on the broker; `topic`
    narrows them to one, named as an event type, its topic or its dead-letter topic, with or
    without TOPIC_PREFIX."""
    prefix = stack.topic_prefix
    present = set(existing)
    names = []
    for spec in REGISTRY:
        aliases = {spec.type, spec.topic, spec.dlq_topic}
        if topic is not None and topic not in aliases | {prefix + a for a in aliases}:
            continue
        name = prefix + spec.dlq_topic
        if name in present:
            names.append(name)
    if topic is not None and not names and not any(topic in _aliases(s) for s in REGISTRY):
        raise CliError(f"{topic} is not a registered event type or topic")
    return sorted(names)


def _aliases(spec: Any) -> set[str]:
    return {spec.type, spec.topic, spec.dlq_topic}


def dlq_topic_named(stack: Stack, name: str) -> str:
    """The physical dead-letter topic `name` stands for: a dead-letter topic, or an event
    type (its event's), with or without TOPIC_PREFIX. An event's own topic is refused, since
    its positions are not the dead letters'."""
    prefix = stack.topic_prefix
    bare = name.removeprefix(prefix) if prefix else name
    for spec in REGISTRY:
        if bare in (spec.type, spec.dlq_topic):
            return prefix + spec.dlq_topic
        if bare == spec.topic:
            raise CliError(
                f"{name} is the event's topic, not its dead-letter topic: give "
                f"{spec.dlq_topic} and the position `dealbooks dlq list` shows"
            )
    if not bare.endswith(".dlq"):
        raise CliError(
            f"{name} is not a dead-letter topic (<topic>.dlq) or a registered event type: "
            "`dealbooks dlq list` shows where each dead letter is"
        )
    return prefix + bare


class DeadLetterTopics:
    """A group-less reader of the dead-letter topics (it commits nothing, moves nothing);
    `end_offsets`, `from_start` and `after` read any topic."""

    def __init__(
        self, stack: Stack, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient
    ) -> None:
        self._stack = stack
        self._consumer = consumer
        self._admin = admin
        self._known: dict[str, list[int]] = {}

    async def _topics(self) -> set[str]:
        return set(await self._admin.list_topics())

    async def _partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        topics = list(topics)
        wanted = [t for t in topics if t not in self._known]
        if wanted:
            for described in await self._admin.describe_topics(wanted):
                numbers = [p["partition"] for p in described.get("partitions", [])]
                if numbers:  # a topic not there yet is asked about again next time
                    self._known[described["topic"]] = sorted(numbers)
        return [
            TopicPartition(topic, number)
            for topic in topics
            for number in self._known.get(topic, [])
        ]

    async def matching(self, filters: Filters) -> list[DeadLetter]:
        """Every dead letter matching `filters`, oldest first per topic and partition."""
        topics = dlq_topics(self._stack, await self._topics(), filters.topic)
        partitions = await self._partitions(topics)
        if not partitions:
            return []
        starts = await self._starts(partitions, filters.since)
        letters = await self._read(starts)
        return [letter for letter in letters if filters.matches(letter)]

    async def get(self, dlq_topic: str, partition: int, offset: int) -> DeadLetter:
        """The dead letter at `dlq_topic` `partition`:`offset`; CliError if there is none."""
        name = dlq_topic_named(self._stack, dlq_topic)
        if name not in await self._topics():
            raise CliError(f"no dead-letter topic {name} on the broker")
        tp = TopicPartition(name, partition)
        if tp not in await self._partitions([name]):
            raise CliError(f"{name} has no partition {partition}")
        for letter in await self._read({tp: offset}, stop_after=offset):
            if letter.offset == offset:
                return letter
        raise CliError(f"no dead letter at {name} {partition}:{offset}")

    async def end_offsets(self, dlq_topic: str) -> dict[TopicPartition, int]:
        """Where each partition of `dlq_topic` ends now (to read only what comes after)."""
        partitions = await self._partitions([dlq_topic])
        if not partitions:
            return {}
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        return ends

    async def from_start(self, topic: str) -> dict[TopicPartition, int]:
        """Every partition of `topic` from its first offset (for a topic that did not exist
        when `end_offsets` was asked, so all it holds came after)."""
        partitions = await self._partitions([topic])
        if not partitions:
            return {}
        starts: dict[TopicPartition, int] = await self._consumer.beginning_offsets(partitions)
        return starts

    async def since(self, topic: str, when: datetime) -> list[DeadLetter]:
        """Every record of `topic` (any topic) written at or after `when`, oldest first per
        partition; none when the topic is not there."""
        partitions = await self._partitions([topic])
        if not partitions:
            return []
        return await self._read(await self._starts(partitions, when))

    async def after(self, starts: dict[TopicPartition, int]) -> list[DeadLetter]:
        """Dead letters written since `starts` (from `end_offsets`)."""
        return await self._read(starts) if starts else []

    async def _starts(
        self, partitions: list[TopicPartition], since: datetime | None
    ) -> dict[TopicPartition, int]:
        starts: dict[TopicPartition, int] = await self._consumer.beginning_offsets(partitions)
        if since is not None:
            stamp = int(since.timestamp() * 1000)
            found = await self._consumer.offsets_for_times({tp: stamp for tp in partitions})
            ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                at = found.get(tp)
                starts[tp] = at.offset if at is not None else ends[tp]
        return starts

    async def _read(
        self, starts: dict[TopicPartition, int], stop_after: int | None = None
    ) -> list[DeadLetter]:
        ends = await self._consumer.end_offsets(list(starts))
        if stop_after is not None:
            ends = {tp: min(ends[tp], stop_after + 1) for tp in ends}
        todo = {tp: start for tp, start in starts.items() if start < ends[tp]}
        if not todo:
            return []
        self._consumer.assign(list(todo))
        for tp, start in todo.items():
            self._consumer.seek(tp, start)
        letters: list[DeadLetter] = []
        while todo:
            batches = await self._consumer.getmany(*todo, timeout_ms=_POLL_MS)
            for tp, records in batches.items():
                letters += [_letter(r) for r in records if r.offset < ends[tp]]
            for tp in list(todo):
                if await self._consumer.position(tp) >= ends[tp]:
                    del todo[tp]
        return sorted(letters, key=lambda d: (d.dlq_topic, d.partition, d.offset))


def _letter(record: Any) -> DeadLetter:
    return DeadLetter(
        dlq_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        headers={k: bytes(v or b"").decode(errors="replace") for k, v in record.headers or ()},
        value=bytes(record.value or b""),
        key=record.key,
    )


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@asynccontextmanager
async def kafka_clients(
    stack: Stack,
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaAdminClient]]:
    """A group-less consumer (it commits nothing) and an admin client of the stack's Kafka;
    CliError when Kafka does not answer."""
    # The broker's address and security (SASL, TLS) as the services have them.
    options = kafka_client_options(stack.settings())
    consumer = AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, request_timeout_ms=10000
    )
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    try:
        await consumer.start()
        await admin.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        await admin.close()
        # aiokafka lists the addresses it tried as Python tuples: the bootstrap says them.
        said = re.sub(r" from \[.*\]$", "", str(exc)) or type(exc).__name__
        raise CliError(f"cannot reach Kafka at {stack.kafka_bootstrap}: {said}") from exc
    try:
        yield consumer, admin
    finally:
        await consumer.stop()
        await admin.close()


@asynccontextmanager
async def dead_letter_topics(stack: Stack) -> AsyncIterator[DeadLetterTopics]:
    """A reader of the stack's dead-letter topics; CliError when Kafka does not answer."""
    async with kafka_clients(stack) as (consumer, admin):
        yield DeadLetterTopics(stack, consumer, admin)
