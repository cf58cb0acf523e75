"""The dedupe window on a real MongoDB-wire server, as two gateway replicas share it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from webhook_gateway.store import SEEN, Claim, DedupeWindow

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


class Inserts(monitoring.CommandListener):
    """Counts the insert commands a client sends."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "insert"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def inserts() -> Inserts:
    return Inserts()


@pytest.fixture
async def db(mongo_uri: str, inserts: Inserts) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, tz_aware=True, event_listeners=[inserts]
    )
    try:
        yield client[f"gwdedupe{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


async def claim(window: DedupeWindow, key: str, owner: str, now: datetime) -> Claim:
    return (await window.claim_all([key], owner, now))[key]


def replica(db: AsyncDatabase[dict[str, Any]], pending_wait: float = 5.0) -> DedupeWindow:
    """One gateway process's window; its marks are written only when a test says so."""
    return DedupeWindow(db, DAY, pending_wait, mark_delay=3600)


async def test_a_published_notification_is_a_duplicate_here_at_once_and_elsewhere_once_marked(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    here, elsewhere = replica(db), replica(db)
    now = datetime.now(UTC)
    assert await claim(here, "n1", "owner-1", now) is Claim.NEW
    here.published("n1")

    # This process knows at once; the stored claim still says "not published".
    assert await claim(here, "n1", "owner-2", now) is Claim.DUPLICATE
    assert (await db[SEEN].find_one({"_id": "n1"}) or {}).get("published") is False

    # Another replica's duplicate waits for the pending claim and sees the mark land.
    waiting = asyncio.create_task(claim(elsewhere, "n1", "owner-3", now))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await here.mark()
    assert await waiting is Claim.DUPLICATE
    assert (await db[SEEN].find_one({"_id": "n1"}) or {}).get("published") is True


async def test_a_mark_lost_with_its_process_lets_a_retry_be_published_again_not_dropped(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    crashed, survivor = replica(db), replica(db, pending_wait=0.3)
    now = datetime.now(UTC)
    assert await claim(crashed, "n3", "owner-1", now) is Claim.NEW
    crashed.published("n3")  # and the process stops before its mark is written

    # The sender's retry reaches another replica: the claim stays pending past the wait,
    # so publishing twice beats losing the notification.
    assert await claim(survivor, "n3", "owner-2", now) is Claim.NEW


async def test_marks_are_written_soon_without_being_asked(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    window = DedupeWindow(db, DAY, pending_wait=5.0, mark_delay=0.01)
    now = datetime.now(UTC)
    for key in ("n4", "n5"):
        assert await claim(window, key, "owner-1", now) is Claim.NEW
        window.published(key)

    async def marked() -> bool:
        docs = [doc async for doc in db[SEEN].find({"_id": {"$in": ["n4", "n5"]}})]
        return len(docs) == 2 and all(doc["published"] for doc in docs)

    async with asyncio.timeout(10):
        while not await marked():
            await asyncio.sleep(0.02)
    assert await claim(replica(db), "n4", "owner-2", now) is Claim.DUPLICATE


async def test_a_deliverys_notifications_are_claimed_in_one_insert(
    db: AsyncDatabase[dict[str, Any]], inserts: Inserts
) -> None:
    window = replica(db)
    now = datetime.now(UTC)
    assert await claim(window, "n6", "owner-1", now) is Claim.NEW
    window.published("n6")
    await window.mark()
    before = inserts.count

    # One delivery: two new notifications, one published before, one repeated.
    claims = await replica(db).claim_all(["n7", "n6", "n8", "n7"], "owner-2", now)

    assert claims == {"n7": Claim.NEW, "n6": Claim.DUPLICATE, "n8": Claim.NEW}
    assert inserts.count - before == 1


async def test_claims_a_failed_delivery_still_holds_are_released_for_the_retry(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    failed, retry = replica(db), replica(db, pending_wait=3600)  # a pending claim would hang
    now = datetime.now(UTC)
    assert await failed.claim_all(["n9", "n10"], "owner-1", now) == {
        "n9": Claim.NEW,
        "n10": Claim.NEW,
    }
    # Publishing failed part-way: what this delivery claimed is given back.
    await failed.release_all(["n9", "n10"], "owner-1")

    async with asyncio.timeout(10):
        claims = await retry.claim_all(["n9", "n10"], "owner-2", now)
    assert claims == {"n9": Claim.NEW, "n10": Claim.NEW}
