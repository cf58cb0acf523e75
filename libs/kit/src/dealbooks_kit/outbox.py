"""Events stored with the state change that causes them, then relayed to Kafka.

A handler appends its events to an `outbox` array in the same single-document update that
records its state change (`push(events)` gives the clause), so the two cannot diverge without
multi-document transactions. `Outbox.relay` then publishes each entry in order and, once
Kafka acknowledged it, removes that exact entry; a crash in between leaves it for the next
relay, which publishes the same envelope (same id) again and consumers drop the duplicate.
A periodic pass (`relay_pending`) publishes whatever a failed or crashed relay left behind:
entries it already saw pending on its previous pass, so it leaves alone the ones a handler
is relaying right now (publishing to a new topic can take seconds) and does not duplicate them.

How the pass finds them depends on the collection. A small collection (accounts, mapping
versions) is scanned for documents with entries at every pass. A collection that grows with
traffic is *reread*: scanning it would cost a full read each pass on a server that cannot use
an index for it (the local FerretDB on SQLite serves only `_id` look-ups from an index), so it
is scanned at the first pass only (what a stopped process left), and its writers reread a
document before changing it. A handler's write whose relay does not finish leaves its Kafka
offset uncommitted, so the event comes again (to this process or, after a crash, to whichever
takes the partition over) and its rerun reads the document; `relay_left` then publishes what
the document still holds, except entries this process is relaying right now. A relay that
fails in a live process is remembered and retried by the next pass. Such a writer may also
let the published entries be removed a moment later, together with other relays'
(`settle_later`: one bulk write instead of one update per event); until then this process
counts them as in flight, and a crash in between only publishes them again.

Built for the MongoDB-wire subset: `$pull` removes whole elements by equality only. Two
relays racing on one document at worst publish an event twice (same envelope id, which
consumers drop), never lose it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from dealbooks_contracts import Envelope, decode
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_kit.kafka import EventPublisher
from dealbooks_kit.logging import get_logger
from dealbooks_kit.mongo import IndexSpec

log = get_logger(__name__)

OUTBOX_FIELD = "outbox"
Doc = dict[str, Any]


def outbox_entry(event: Envelope[Any]) -> Doc:
    """How one event is stored in a document's outbox."""
    return {"id": str(event.id), "event": event.to_bytes().decode()}


def push(events: Sequence[Envelope[Any]]) -> Doc:
    """The `$push` clause appending `events` to a document's outbox; merge it into the update
    that records the state change."""
    return push_entries([outbox_entry(e) for e in events])


def push_entries(entries: Sequence[Doc]) -> Doc:
    """`push` for entries already made (to hand them to `Outbox.relay` as `written`)."""
    return {"$push": {OUTBOX_FIELD: {"$each": list(entries)}}}


def outbox_index(collection: str) -> IndexSpec:
    """The index the periodic pass uses to find documents with pending events."""
    return IndexSpec(collection, [(f"{OUTBOX_FIELD}.id", 1)], name="outbox")


class Outbox:
    """Publishes the outbox entries of documents in the collections it watches."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        publisher: EventPublisher,
        collections: Iterable[str] = (),
        settle_delay: float = 0.05,
    ) -> None:
        self._db = db
        self._settle_delay = settle_delay
        self._publisher = publisher
        self.collections: list[str] = list(dict.fromkeys(collections))
        self.reread: set[str] = set()
        self._lingering: dict[str, set[str]] = {}  # entry ids pending at the previous pass
        self._in_flight: set[str] = set()  # entry ids this process is relaying now
        self._unsettled: dict[tuple[str, Any], None] = {}  # failed relays, for the next pass
        self._to_remove: list[tuple[str, Any, Doc]] = []  # published, removed by `settle`
        self._settler: asyncio.Task[None] | None = None
        self._first_pass = True

    def watch(self, *collections: str, reread: bool = False) -> None:
        """Include `collections` in the periodic pass; `reread` ones are scanned at the first
        pass only (their writers reread their documents: see the module's docstring)."""
        for name in collections:
            if name not in self.collections:
                self.collections.append(name)
            if reread:
                self.reread.add(name)

    async def relay(
        self,
        collection: str,
        doc_id: Any,
        written: Sequence[Doc] | None = None,
        *,
        settle_later: bool = False,
    ) -> int:
        """Publish one document's pending events in order, removing each once Kafka acked it.

        `written`: the entries the caller just wrote (or read: `relay_left`), which saves
        reading them back; entries others append meanwhile are theirs to relay. Read here,
        the entries this process is relaying already (or published, not yet removed) are
        left out.
        Returns how many were published. A failed publish raises and leaves that entry and
        the ones after it in place, for a later relay; the next pass of this
        process tries the document again. `settle_later`: published entries are removed by
        the next `settle`, in one bulk write with other relays' (for writers that reread their
        documents: see the module's docstring), not one by one.
        """
        if written is None:
            doc = await self._db[collection].find_one({"_id": doc_id}, {OUTBOX_FIELD: 1})
            # Not the entries this process is relaying, or published and not yet removed.
            entries: list[Doc] = [
                e for e in (doc or {}).get(OUTBOX_FIELD) or [] if e["id"] not in self._in_flight
            ]
        else:
            entries = list(written)
        ids = {entry["id"] for entry in entries}
        self._in_flight |= ids
        published: set[str] = set()  # and left for `settle`, still in flight until then
        try:
            for entry in entries:
                await self._publisher.publish(decode(entry["event"]))
                if settle_later:
                    self._to_remove.append((collection, doc_id, entry))
                    published.add(entry["id"])
                    continue
                # The entry exactly as read: entries appended meanwhile stay untouched.
                await self._db[collection].update_one(
                    {"_id": doc_id}, {"$pull": {OUTBOX_FIELD: entry}}
                )
        except BaseException:
            self._unsettled[(collection, doc_id)] = None
            raise
        finally:
            self._in_flight -= ids - published
            if published and (self._settler is None or self._settler.done()):
                self._settler = asyncio.get_running_loop().create_task(self._settle_soon())
        return len(entries)

    async def _settle_soon(self) -> None:
        await asyncio.sleep(self._settle_delay)  # let other relays join the bulk write
        try:
            await self.settle()
        except Exception as exc:  # kept (and counted in flight) for the next settle
            log.warning("published outbox entries not removed yet", error=repr(exc))

    async def settle(self) -> None:
        """Remove the entries `settle_later` relays published, one bulk write per collection."""
        left: defaultdict[str, list[tuple[Any, Doc]]] = defaultdict(list)
        for collection, doc_id, entry in self._to_remove:
            left[collection].append((doc_id, entry))
        self._to_remove = []
        try:
            for collection, pulls in list(left.items()):
                await self._db[collection].bulk_write(
                    [UpdateOne({"_id": d}, {"$pull": {OUTBOX_FIELD: e}}) for d, e in pulls],
                    ordered=False,
                )
                del left[collection]
                self._in_flight -= {e["id"] for _, e in pulls}
        finally:  # what was not removed waits for the next settle
            self._to_remove[:0] = [(c, d, e) for c, pulls in left.items() for d, e in pulls]

    async def relay_left(self, collection: str, doc: Doc) -> int:
        """Relay what a document just read still holds in its outbox (a crashed or failed
        relay's events), except entries this process is relaying right now."""
        left = [e for e in doc.get(OUTBOX_FIELD) or [] if e["id"] not in self._in_flight]
        return await self.relay(collection, doc["_id"], written=left) if left else 0

    async def relay_pending(self, limit: int = 100) -> int:
        """One pass over every watched collection; returns how many events were published.

        Relays the documents holding an entry that was already pending at the previous pass
        (left behind, not in flight), up to `limit` documents per collection; the first pass
        takes every document of a reread collection, since no later pass looks there again.
        A document whose relay fails is logged and left for the next pass.
        """
        try:
            await self.settle()
        except Exception as exc:  # kept for the next pass; orphans are still looked for
            log.warning("published outbox entries not removed yet", error=repr(exc))
        published = await self._relay_unsettled()
        first_pass, self._first_pass = self._first_pass, False
        for collection in self.collections:
            if collection in self.reread and not first_pass:
                continue
            cursor = self._db[collection].find(
                {f"{OUTBOX_FIELD}.0": {"$exists": True}}, {f"{OUTBOX_FIELD}.id": 1}
            )
            if collection not in self.reread:
                cursor = cursor.limit(limit)
            pending = {doc["_id"]: {e["id"] for e in doc[OUTBOX_FIELD]} async for doc in cursor}
            before = self._lingering.get(collection, set())
            self._lingering[collection] = set().union(*pending.values())
            for doc_id, entry_ids in pending.items():
                if not entry_ids & before and not (first_pass and collection in self.reread):
                    continue
                try:
                    published += await self.relay(collection, doc_id)
                except Exception as exc:
                    log.warning(
                        "outbox relay failed; the next pass retries",
                        collection=collection,
                        error=f"{type(exc).__name__}: {exc}",
                    )
        return published

    async def _relay_unsettled(self) -> int:
        """Relay again the documents whose relay failed in this process."""
        published = 0
        for collection, doc_id in list(self._unsettled):
            del self._unsettled[(collection, doc_id)]
            try:
                published += await self.relay(collection, doc_id)
            except Exception as exc:  # remembered again by `relay`
                log.warning(
                    "outbox relay failed; the next pass retries",
                    collection=collection,
                    error=f"{type(exc).__name__}: {exc}",
                )
        return published


__all__ = ["OUTBOX_FIELD", "Outbox", "outbox_entry", "outbox_index", "push", "push_entries"]
