"""The gateway's only state: a dedupe window, and which portals each QBO realm belongs to
(a projection of connector-auth's events, rebuilt from Kafka if lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dealbooks_kit import IndexSpec, Remembered, get_logger
from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

SEEN = "seen_notifications"
REALMS = "realm_portals"

INDEXES = [IndexSpec(SEEN, [("expires_at", 1)], name="expires")]
_DUPLICATE_KEY = 11000

Doc = dict[str, Any]
log = get_logger(__name__)


class Claim(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"


class DedupeWindow:
    """Remembers notifications published within the window.

    A claim is a document with a unique id (the one atomic operation on the MongoDB-wire
    subset). It is marked published only after Kafka acknowledged, and released if publishing
    failed, so a sender's retry of a failed delivery is never mistaken for a duplicate.

    Marks are written a moment later, together (one bulk write instead of one update per
    notification). Until then this process answers a duplicate from memory, and another
    replica's duplicate waits for the mark as it waits for any pending claim; a crash in
    between only lets a retried delivery be published again, never lost.
    """

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        window: timedelta,
        pending_wait: float,
        mark_delay: float = 0.05,
    ) -> None:
        self._c = db[SEEN]
        self._window = window
        self._pending_wait = pending_wait
        self._mark_delay = mark_delay
        self._unmarked: dict[str, None] = {}  # published here, mark not written yet
        self._marker: asyncio.Task[None] | None = None

    async def claim_all(self, keys: Sequence[str], owner: str, now: datetime) -> dict[str, Claim]:
        """For each of a delivery's keys, NEW if this caller should publish it, DUPLICATE if
        it was published already; the claims are inserted together, in one call."""
        claims = {key: Claim.DUPLICATE for key in keys if key in self._unmarked}
        fresh = [key for key in dict.fromkeys(keys) if key not in claims]
        held = await self._insert(fresh, owner, now)
        taken = [key for key in fresh if key in held]
        claims.update((key, Claim.NEW) for key in fresh if key not in taken)
        # Each waits for its own holder, side by side: a delivery's keys do not queue up.
        settled = await asyncio.gather(*(self._claim_taken(key, owner, now) for key in taken))
        claims.update(zip(taken, settled, strict=True))
        return claims

    async def _insert(self, keys: Sequence[str], owner: str, now: datetime) -> set[str]:
        """Insert claims of `keys`; returns those someone holds already."""
        if not keys:
            return set()
        docs = [
            {"_id": key, "owner": owner, "published": False, "expires_at": now + self._window}
            for key in keys
        ]
        try:
            await self._c.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != _DUPLICATE_KEY for e in errors):
                raise
            return {docs[e["index"]]["_id"] for e in errors}
        return set()

    async def _claim_taken(self, key: str, owner: str, now: datetime) -> Claim:
        """A key someone claimed: wait for that claim to settle, then decide."""
        for _ in range(3):
            existing = await self._settled(key)
            if existing is not None and existing["expires_at"] < now:
                await self._c.delete_one({"_id": key, "expires_at": existing["expires_at"]})
                existing = None
            if existing is None:  # released after a failed publish, or expired: claim it again
                if not await self._insert([key], owner, now):
                    return Claim.NEW
                continue
            if existing["published"]:
                return Claim.DUPLICATE
            # Still pending after the wait: publishing twice beats losing the notification.
            return Claim.NEW
        return Claim.NEW

    async def _settled(self, key: str) -> Doc | None:
        """The claim, once published or released, or as it is after the pending wait."""
        deadline = asyncio.get_running_loop().time() + self._pending_wait
        while True:
            doc = await self._c.find_one({"_id": key})
            if doc is None or doc["published"] or asyncio.get_running_loop().time() > deadline:
                return doc
            await asyncio.sleep(0.05)

    def published(self, key: str) -> None:
        """Kafka acknowledged `key`'s events: mark its claim published (a moment later)."""
        self._unmarked[key] = None
        if self._marker is None or self._marker.done():
            self._marker = asyncio.get_running_loop().create_task(self._mark_soon())

    async def _mark_soon(self) -> None:
        await asyncio.sleep(self._mark_delay)  # let other notifications join the bulk write
        try:
            await self.mark()
        except Exception as exc:  # kept for the next mark (housekeeping, shutdown, traffic)
            log.warning("published notifications not marked yet", error=repr(exc))

    async def mark(self) -> None:
        """Write the marks of the notifications published since the last mark."""
        keys = list(self._unmarked)
        if not keys:
            return
        # By `_id` alone (an index look-up everywhere; the local FerretDB scans for any filter
        # with a second field or an `$in`). Only a claim's owner releases it, and it expires
        # after the window, long after this; had it been released, the update matches nothing.
        await self._c.bulk_write(
            [UpdateOne({"_id": key}, {"$set": {"published": True}}) for key in keys],
            ordered=False,
        )
        for key in keys:
            self._unmarked.pop(key, None)

    async def release(self, key: str, owner: str) -> None:
        await self._c.delete_one({"_id": key, "owner": owner, "published": False})

    async def release_all(self, keys: Sequence[str], owner: str) -> None:
        """Release whatever claims of `keys` this owner still holds unpublished (after a
        failure part-way through `claim_all`), so the sender's retry need not wait them out."""
        await self._c.bulk_write(
            [DeleteOne({"_id": key, "owner": owner, "published": False}) for key in keys],
            ordered=False,
        )

    async def forget_expired(self, now: datetime) -> None:
        """No TTL indexes on the MongoDB-wire subset: expired entries are removed here."""
        await self._c.delete_many({"expires_at": {"$lt": now}})


class RealmDirectory:
    """realm id -> the portals it is connected to.

    Every notification asks, and the answer changes only when a company is connected or
    disconnected, so it is remembered for `remember_seconds` (`dealbooks_kit.Remembered`:
    this process's own changes count at once, another replica's within that time). A realm
    with no portal is never remembered, so a newly connected company is routed from its
    first notification."""

    def __init__(self, db: AsyncDatabase[Doc], remember_seconds: float = 5.0) -> None:
        self._c = db[REALMS]
        self._known: Remembered[str, list[str]] = Remembered(remember_seconds)

    async def portals(self, realm_id: str) -> list[str]:
        async def read() -> list[str]:
            doc = await self._c.find_one({"_id": realm_id})
            return list((doc or {}).get("portals") or [])

        return list(await self._known.get(realm_id, read, keep=bool))

    async def connect(self, realm_id: str, portal_id: str) -> None:
        self._known.forget(realm_id)
        await self._c.update_one(
            {"_id": realm_id}, {"$addToSet": {"portals": portal_id}}, upsert=True
        )
        self._known.forget(realm_id)

    async def disconnect(self, realm_id: str, portal_id: str) -> None:
        self._known.forget(realm_id)
        await self._c.update_one({"_id": realm_id}, {"$pull": {"portals": portal_id}})
        self._known.forget(realm_id)
