"""`dealbooks dlq` against a real kit consumer on a real Kafka broker and MongoDB-wire server:
a poison event is dead-lettered, listed, shown, and once its cause is fixed, replayed to the
consumer that gave up, with its effect applied once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dealbooks_contracts import Envelope, QboEntityChanged
from dealbooks_infra import testing
from dealbooks_kit import KitSettings, PermanentError, ServiceRuntime
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration

TOPIC = "qbo.entity-changed.v1"


def customer_changed(customer_id: str) -> Envelope[QboEntityChanged]:
    return testing.entity_changed("realm-7", "Customer", customer_id, portal="portal-7")


class Ledger:
    """A service with two consumers of one topic: `apply` refuses customers it cannot handle
    yet (until `fixed`), `audit` takes everything. Each counts its runs per customer, and is
    deliberately not idempotent, so a second run shows."""

    def __init__(self, settings: KitSettings) -> None:
        self.runtime = ServiceRuntime(settings)
        self.fixed = False
        self.runtime.consume("apply", QboEntityChanged, self.apply)
        self.runtime.consume("audit", QboEntityChanged, self.audit)

    async def apply(self, event: Envelope[QboEntityChanged]) -> None:
        customer = event.data.entity_id
        if customer.startswith("bad") and not self.fixed:
            raise PermanentError(f"customer {customer} has no billing address")
        await self._count("applied", customer)

    async def audit(self, event: Envelope[QboEntityChanged]) -> None:
        await self._count("audited", event.data.entity_id)

    async def _count(self, collection: str, customer: str) -> None:
        await self.runtime.db[collection].update_one(
            {"_id": customer}, {"$inc": {"runs": 1}}, upsert=True
        )

    async def runs(self, collection: str, customer: str) -> int:
        doc = await self.runtime.db[collection].find_one({"_id": customer})
        return int(doc["runs"]) if doc else 0


Cli = Any  # the `Cli` of conftest.py: the installed command with an environment


@pytest.fixture
async def ledger(
    kafka_bootstrap: str, mongo_uri: str, namespace: str, kafka_supports_idempotence: bool
) -> AsyncIterator[Ledger]:
    settings = KitSettings(
        service_name="ledger",
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongo_uri,
        mongodb_database=f"{namespace}_ledger",
        topic_prefix=f"{namespace}.",
        kafka_idempotence=kafka_supports_idempotence,
        handler_attempts=2,
        handler_wait_initial=0.05,
    )
    service = Ledger(settings)
    async with service.runtime.running():
        yield service


@pytest.fixture
def cli(dealbooks: Callable[..., Cli], namespace: str) -> Cli:
    return dealbooks(
        LEDGER_MONGODB_DATABASE=f"{namespace}_ledger",
        DEALBOOKS_OPERATOR_MONGODB_DATABASE=f"{namespace}_operator",
    )


async def test_a_dead_letter_is_listed_shown_and_replayed_once_to_the_consumer_that_gave_up(
    ledger: Ledger, cli: Cli, kafka_bootstrap: str, namespace: str, mongo_uri: str
) -> None:
    poison = customer_changed("bad-1")
    await ledger.runtime.publisher.publish(poison)
    await ledger.runtime.publisher.publish(customer_changed("good-1"))
    dlq = f"{namespace}.{TOPIC}.dlq"
    await testing.read_topic(kafka_bootstrap, dlq, lambda r: r, count=1)
    await testing.eventually(lambda: ledger.runs("applied", "good-1"))
    await testing.eventually(lambda: ledger.runs("audited", "bad-1"))

    code, rows, _ = await cli("dlq", "list", "--consumer", "ledger.apply", "--realm", "realm-7")
    assert code == 0
    [row] = rows
    assert row["event_id"] == str(poison.id)
    assert (row["dlq_topic"], row["portal_id"], row["event_type"]) == (
        dlq,
        "portal-7",
        "qbo.entity-changed",
    )
    assert row["reason"] == "customer bad-1 has no billing address"
    assert row["replayed"] is None
    position = f"{row['partition']}:{row['offset']}"
    assert (await cli("dlq", "list", "--portal", "another-portal"))[1] == []

    code, shown, _ = await cli("dlq", "show", dlq, position)
    assert code == 0
    assert shown["envelope"]["id"] == str(poison.id)
    assert shown["envelope"]["data"]["entity_id"] == "bad-1"
    assert (shown["consumer"], shown["error_type"]) == ("ledger.apply", "PermanentError")
    # The event type names its dead-letter topic too; the event's own topic, whose positions
    # are not the dead letters', is refused in one line that names the dead-letter topic.
    code, by_type, _ = await cli("dlq", "show", "qbo.entity-changed", position)
    assert (code, by_type["envelope"]["id"]) == (0, str(poison.id))
    for command in ("show", "replay"):
        code, out, err = await cli("dlq", command, f"{namespace}.{TOPIC}", position)
        assert (code, out) == (1, None)
        assert err.startswith(f"dealbooks: {namespace}.{TOPIC} is the event's topic, not its")
        assert f"{TOPIC}.dlq" in err and len(err.strip().splitlines()) == 1

    # Replayed before the cause is fixed: it fails again, and says where it went.
    code, [failed], _ = await cli("dlq", "replay", dlq, position, "--wait", "30")
    assert code == 1
    assert failed["outcome"] == "dead_lettered", failed
    assert failed["new_event_id"] != str(poison.id)

    ledger.fixed = True
    code, [refused], _ = await cli("dlq", "replay", dlq, position)
    assert (code, refused["outcome"]) == (1, "refused")
    assert "--again" in refused["detail"]
    # As a person reads it, the dead letter is named once, before why it was refused.
    code, text, _ = await cli.text("dlq", "replay", dlq, position)
    assert code == 1
    assert text.startswith(f"{dlq} {position}: refused: already replayed as event ")
    assert text.count(position) == 1

    # The failed replay left a dead letter of its own, the copy caused by the original.
    code, rows, _ = await cli("dlq", "list", "--event-id", failed["new_event_id"])
    [second] = rows
    # The first one's replay points at it: in JSON, and in the list's REPLAYED column.
    again_at = f"{second['partition']}:{second['offset']}"
    code, rows, _ = await cli("dlq", "list", "--topic", TOPIC)
    first = next(r for r in rows if r["event_id"] == str(poison.id))
    assert first["replayed"]["dead_letter"] == {
        "dlq_topic": dlq,
        "partition": second["partition"],
        "offset": second["offset"],
    }
    code, text, _ = await cli.text("dlq", "list", "--topic", TOPIC)
    assert f"dead_lettered, again at {again_at}" in text
    code, text, _ = await cli.text("dlq", "show", dlq, position)
    assert f"(dead_lettered, again at {again_at})" in text
    # A replay recorded without that position (before it was kept) finds it among the list.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        unset = await client[f"{namespace}_operator"]["dlq_replays"].update_many(
            {"dead_letter": {"$ne": None}}, {"$unset": {"dead_letter": ""}}
        )
        assert unset.modified_count == 1
    finally:
        await client.close()
    code, text, _ = await cli.text("dlq", "list", "--topic", TOPIC)
    assert f"dead_lettered, again at {again_at}" in text
    # Only that one still waits for a decision: the first was replayed.
    code, rows, _ = await cli("dlq", "list", "--topic", TOPIC, "--not-replayed")
    assert [(r["offset"], r["event_id"]) for r in rows] == [
        (second["offset"], failed["new_event_id"])
    ]
    code, shown, _ = await cli("dlq", "show", dlq, f"{second['partition']}:{second['offset']}")
    assert shown["envelope"]["causation_id"] == str(poison.id)
    assert shown["envelope"]["correlation_id"] == poison.correlation_id

    code, [done], _ = await cli("dlq", "replay", "--event-id", failed["new_event_id"])
    assert (code, done["outcome"]) == (0, "ok"), done
    assert await ledger.runs("applied", "bad-1") == 1
    # Only the consumer that gave up was asked again.
    assert await ledger.runs("audited", "bad-1") == 1

    # Neither dead letter of the event is replayed once more without --again.
    for args in (("dlq", "replay", dlq, position), ("dlq", "replay", "--event-id", str(poison.id))):
        code, [again], _ = await cli(*args)
        assert (code, again["outcome"]) == (1, "refused")
    code, rows, _ = await cli("dlq", "list", "--topic", TOPIC)
    assert [r["replayed"]["outcome"] for r in rows] == ["dead_lettered", "ok"]
    assert await ledger.runs("applied", "bad-1") == 1
    # Left out rather than refused: nothing is left to replay.
    assert (await cli("dlq", "list", "--topic", TOPIC, "--not-replayed"))[1] == []
    code, _, err = await cli("dlq", "replay", "--topic", TOPIC, "--not-replayed")
    assert (code, err.strip()) == (1, "dealbooks: no dead letter matches")

    code, [forced], _ = await cli("dlq", "replay", dlq, position, "--again")
    assert (code, forced["outcome"]) == (0, "ok")
    assert await ledger.runs("applied", "bad-1") == 2
    assert await ledger.runs("audited", "bad-1") == 1


async def test_a_malformed_dead_letter_is_not_replayed(
    ledger: Ledger, cli: Cli, kafka_bootstrap: str, namespace: str
) -> None:
    await ledger.runtime.publisher.publish_raw(
        f"{namespace}.{TOPIC}", b"{not json", key=b"realm-7", headers={}
    )
    dlq = f"{namespace}.{TOPIC}.dlq"
    # Both consumers give up on it.
    record, _ = await testing.read_topic(kafka_bootstrap, dlq, lambda r: r, count=2)
    code, shown, _ = await cli("dlq", "show", dlq, f"{record.partition}:{record.offset}")
    assert (code, shown["envelope"], shown["raw"]) == (0, None, "{not json")
    assert shown["reason"].startswith("malformed event")

    code, [refused], _ = await cli("dlq", "replay", dlq, f"{record.partition}:{record.offset}")
    assert (code, refused["outcome"]) == (1, "refused")
    assert "not an event envelope" in refused["detail"]


async def test_replay_records_expire_and_the_next_replay_deletes_the_expired_ones(
    ledger: Ledger, cli: Cli, kafka_bootstrap: str, namespace: str, mongo_uri: str
) -> None:
    await ledger.runtime.publisher.publish(customer_changed("bad-2"))
    dlq = f"{namespace}.{TOPIC}.dlq"
    [record] = await testing.read_topic(kafka_bootstrap, dlq, lambda r: r, count=1)
    now = datetime.now(UTC)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    replays = client[f"{namespace}_operator"]["dlq_replays"]
    try:
        await replays.insert_many(
            [
                {"_id": "expired", "requested_at": now - timedelta(days=8), "expires_at": now},
                {"_id": "kept", "requested_at": now, "expires_at": now + timedelta(days=1)},
                # Written before records had an expiry: it counts from its request.
                {"_id": "old", "requested_at": now - timedelta(days=8)},
                {"_id": "recent", "requested_at": now - timedelta(days=6)},
            ]
        )
        ledger.fixed = True
        code, [done], _ = await cli(
            "dlq", "replay", dlq, f"{record.partition}:{record.offset}", "--retention-days", "7"
        )
        assert (code, done["outcome"]) == (0, "ok"), done

        left = {doc["_id"]: doc async for doc in replays.find({})}
        key = f"{dlq}:{record.partition}:{record.offset}"
        assert set(left) == {"kept", "recent", key}
        written = left[key]
        assert written["expires_at"] - written["requested_at"] == timedelta(days=7)

        # The retention from the environment, and the default of 30 days.
        for env, days in (({"DEALBOOKS_DLQ_REPLAY_RETENTION_DAYS": "2"}, 2), ({}, 30)):
            again = cli.with_env(**env)
            code, [forced], _ = await again(
                "dlq", "replay", dlq, f"{record.partition}:{record.offset}", "--again"
            )
            assert (code, forced["outcome"]) == (0, "ok"), forced
            written = await replays.find_one({"_id": key})
            assert written is not None
            assert written["expires_at"] - written["requested_at"] == timedelta(days=days)
    finally:
        await client.close()
