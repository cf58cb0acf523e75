"""Replaying a dead letter so that the event really runs again, once.

Every consumer remembers the ids it handled, dead-lettered ones included (`processed_events`,
outcome `dead_lettered`), so publishing the same bytes again would be skipped as a duplicate.
A replay therefore publishes a copy of the original envelope with a new id and
`causation_id` set to the dead-lettered event's id (type, version, tenant, correlation id,
occurred_at and data unchanged), on the original topic through the kit's publisher, with a
`replay-for` header naming the consumer that dead-lettered it: the kit's consumers hand the
copy to that consumer alone, so the consumers that handled the original are not asked twice.

Each replay is recorded in `dealbooks_operator.dlq_replays`, keyed by the dead letter's topic,
partition and offset, before anything is published: a second replay of the same dead letter is
refused unless `again`; so is a replay of a later dead letter of the same event for the same
consumer (a replay that failed again) while an earlier replay of it did not end dead-lettered.

A record is kept for a retention (30 days unless the operator says otherwise) and carries its
`expires_at`; each new replay record deletes the expired ones first, since the MongoDB-wire
server has no TTL index. A dead letter whose record has expired may be replayed again without
`again`, as if it never had been.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from dealbooks_contracts import OPERATOR_SOURCE, EnvelopeError, decode, uuid7
from dealbooks_kit import EventPublisher, make_broker
from dealbooks_kit.consumer import PROCESSED_COLLECTION, REPLAY_FOR_HEADER
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from dealbooks_cli.deadletters import DeadLetter, DeadLetterTopics
from dealbooks_cli.stack import CliError, Stack, unanswered

REPLAYS = "dlq_replays"
OPERATOR_SERVICE = OPERATOR_SOURCE
DEFAULT_RETENTION = timedelta(days=30)


def replay_key(letter: DeadLetter) -> str:
    """The document id of a dead letter's replay record: `<dlq topic>:<partition>:<offset>`."""
    return f"{letter.dlq_topic}:{letter.partition}:{letter.offset}"


def operator_db(stack: Stack, client: AsyncMongoClient[dict[str, Any]]) -> AsyncDatabase[Any]:
    """`dealbooks_operator`, with MONGODB_DATABASE_PREFIX (or as
    DEALBOOKS_OPERATOR_MONGODB_DATABASE names it)."""
    return client[stack.database(OPERATOR_SERVICE)]


@dataclass(frozen=True)
class Copy:
    """The event to publish again: its new id and bytes."""

    new_id: str
    original_id: str
    value: bytes


def fresh_copy(letter: DeadLetter) -> Copy:
    """The original envelope with a new id whose causation is the dead-lettered event.

    Bytes that were never a JSON object with an id (a malformed record) cannot be given a new
    identity and are refused."""
    event = letter.event
    if event is None or not event.get("id"):
        raise CliError(
            "not an event envelope (no JSON object with an id): "
            "there is nothing to replay; publish a corrected event instead"
        )
    new_id = str(uuid7())
    copy = {**event, "id": new_id, "causation_id": str(event["id"])}
    return Copy(new_id=new_id, original_id=str(event["id"]), value=json.dumps(copy).encode())


class Replays:
    """The record of replays (`dlq_replays`): one document per dead letter replayed."""

    def __init__(self, db: AsyncDatabase[Any], retention: timedelta = DEFAULT_RETENTION) -> None:
        self._c = db[REPLAYS]
        self.retention = retention

    async def forget_expired(self, now: datetime) -> int:
        """Delete the records whose retention ended (records written before `expires_at`
        existed count from their request time); returns how many."""
        expired = {
            "$or": [
                {"expires_at": {"$lte": now}},
                {
                    "expires_at": {"$exists": False},
                    "requested_at": {"$lte": now - self.retention},
                },
            ]
        }
        result = await self._c.delete_many(expired)
        return result.deleted_count

    async def root_of(self, consumer: str, event_id: str) -> str:
        """The first dead-lettered event of a replay chain: a dead letter of a replayed copy
        belongs to the event that was replayed."""
        earlier = await self._c.find_one({"consumer": consumer, "new_event_id": event_id})
        return str(earlier["root_event_id"]) if earlier else event_id

    async def claim(self, letter: DeadLetter, copy: Copy, *, again: bool) -> bool:
        """Record the replay about to be published; CliError if it was replayed already.
        True when this is the dead letter's first replay record."""
        key = replay_key(letter)
        now = datetime.now(UTC)
        await self.forget_expired(now)
        root = await self.root_of(letter.consumer, copy.original_id)
        attempt = {"new_event_id": copy.new_id, "requested_at": now, "outcome": "published"}
        expires_at = now + self.retention
        if not again:
            await self._refuse_if_replayed(letter, key, root)
        doc = {
            "_id": key,
            "dlq_topic": letter.dlq_topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "consumer": letter.consumer,
            "event_id": copy.original_id,
            "root_event_id": root,
            **attempt,
            "attempts": [attempt],
            "expires_at": expires_at,
        }
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._c.find_one({"_id": key}) or {}
            if not again:
                raise CliError(
                    "already replayed as event "
                    f"{existing.get('new_event_id')} (outcome: {existing.get('outcome')}); "
                    "use --again to replay it once more"
                ) from None
            await self._c.update_one(
                {"_id": key},
                {"$set": {**attempt, "expires_at": expires_at}, "$push": {"attempts": attempt}},
            )
            return False
        return True

    async def _refuse_if_replayed(self, letter: DeadLetter, key: str, root: str) -> None:
        # A replay that dead-lettered again leaves a new dead letter of the same event: it may
        # be replayed in its turn, but not while another replay of the event stands.
        live = await self._c.find_one(
            {
                "_id": {"$ne": key},
                "consumer": letter.consumer,
                "root_event_id": root,
                "outcome": {"$nin": ["dead_lettered", "not_published"]},
            }
        )
        if live is not None:
            raise CliError(
                f"event {root} was already replayed for {letter.consumer} from {live['_id']} "
                f"(outcome: {live['outcome']}); use --again to replay it once more"
            )

    async def settle(
        self,
        letter: DeadLetter,
        new_id: str,
        outcome: str,
        dead_letter: dict[str, Any] | None = None,
    ) -> None:
        """Record what became of the replay (`ok`, `settled`, `dead_lettered`, `pending`,
        `not_published`), and for `dead_lettered` where its new dead letter is."""
        doc = await self._c.find_one({"_id": replay_key(letter), "new_event_id": new_id})
        if doc is None:
            return
        attempts = [
            {**a, "outcome": outcome} if a.get("new_event_id") == new_id else a
            for a in doc.get("attempts", [])
        ]
        await self._c.update_one(
            {"_id": doc["_id"], "new_event_id": new_id},
            {"$set": {"outcome": outcome, "attempts": attempts, "dead_letter": dead_letter}},
        )

    async def forget(self, letter: DeadLetter, new_id: str) -> None:
        """Drop a first claim whose publish failed (nothing was sent)."""
        await self._c.delete_one({"_id": replay_key(letter), "new_event_id": new_id})

    async def of(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The replay records of these dead letters, by key."""
        if not keys:
            return {}
        return {doc["_id"]: doc async for doc in self._c.find({"_id": {"$in": keys}})}


async def publish_copy(stack: Stack, letter: DeadLetter, copy: Copy) -> None:
    """Publish the copy on the original topic for the consumer that dead-lettered it."""
    settings = stack.settings()
    broker = make_broker(settings)
    headers = {
        REPLAY_FOR_HEADER: letter.consumer,
        "replay-of": copy.original_id,
        "replay-dlq": replay_key(letter),
    }
    try:
        await broker.connect()
        publisher = EventPublisher(broker, settings)
        try:
            event = decode(copy.value)
        except EnvelopeError:
            # No longer (or never) a valid event here: keep its bytes, on the topic it came from.
            await publisher.publish_raw(
                letter.original_topic,
                copy.value,
                key=letter.key,
                headers={"event-id": copy.new_id, "content-type": "application/json", **headers},
            )
        else:
            await publisher.publish(event, headers=headers)
    finally:
        await broker.stop()


async def await_outcome(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    topics: DeadLetterTopics,
    letter: DeadLetter,
    new_id: str,
    dlq_ends: Any,
    wait: float,
) -> dict[str, Any]:
    """Wait up to `wait` seconds for the consumer's processed record of `new_id` or a new
    dead letter of it; say which (or `pending`)."""
    service, _, name = letter.consumer.partition(".")
    processed = client[stack.database(service)][PROCESSED_COLLECTION]
    with anyio.move_on_after(wait):
        while True:
            record = await processed.find_one({"_id": f"{name}:{new_id}"})
            again = [d for d in await topics.after(dlq_ends) if d.event_id == new_id]
            if again:
                dead = again[0]
                return {
                    "outcome": "dead_lettered",
                    "detail": f"dead-lettered again at {dead.coordinates}: "
                    f"{dead.headers.get('dlq-reason', '')}",
                    "dead_letter": {
                        "dlq_topic": dead.dlq_topic,
                        "partition": dead.partition,
                        "offset": dead.offset,
                    },
                }
            if record is not None and record.get("outcome") != "dead_lettered":
                outcome = str(record.get("outcome", "ok"))
                return {"outcome": outcome, "detail": f"handled by {letter.consumer} ({outcome})"}
            await anyio.sleep(0.3)
    return {
        "outcome": "pending",
        "detail": f"no outcome within {wait:g} s ({unanswered(letter.consumer)})",
    }


async def replay(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    topics: DeadLetterTopics,
    letter: DeadLetter,
    *,
    again: bool,
    wait: float,
    retention: timedelta = DEFAULT_RETENTION,
) -> dict[str, Any]:
    """Replay one dead letter (see the module docstring); returns what happened."""
    if not letter.consumer:
        raise CliError("names no consumer (no dlq-consumer header)")
    copy = fresh_copy(letter)
    replays = Replays(operator_db(stack, client), retention)
    first = await replays.claim(letter, copy, again=again)
    dlq_ends = await topics.end_offsets(letter.dlq_topic)
    try:
        await publish_copy(stack, letter, copy)
    except Exception as exc:
        if first:
            await replays.forget(letter, copy.new_id)
        else:
            await replays.settle(letter, copy.new_id, "not_published")
        raise CliError(f"could not publish the replay: {exc}") from exc
    outcome = await await_outcome(stack, client, topics, letter, copy.new_id, dlq_ends, wait)
    await replays.settle(letter, copy.new_id, outcome["outcome"], outcome.get("dead_letter"))
    return {
        "dlq_topic": letter.dlq_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "consumer": letter.consumer,
        "event_id": copy.original_id,
        "new_event_id": copy.new_id,
        "topic": letter.original_topic,
        **outcome,
    }
