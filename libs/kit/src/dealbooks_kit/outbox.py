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
the document still holds, except what this process published already. A relay that fails
in a live process is remembered and retried by the next pass, and so is a document whose
write failed without saying whether it was applied (`check_later`: a timer's write, which no
rerun reads again). Such a writer may also
let the published entries be removed a moment later, together with other relays'
(`settle_later`: one bulk write instead of one update per event); until then this process
remembers them as published, and a crash in between only publishes them again.

The pass also sets `dealbooks_outbox_pending` and `dealbooks_outbox_oldest_seconds` per
collection: the entries it found and left waiting in a scanned collection (up to its `limit`
documents),
and in a reread collection after its first scan the entries of the documents whose relay failed
here (the only ones it knows of). An entry's age comes from its id, a UUIDv7 (its first 48 bits
are the milliseconds it was made at), so no event body is read for it.

Within a process, the relays of one document run one at a time, so its events go out in the
order they were written. Built for the MongoDB-wire subset: `$pull` removes whole elements by
equality only. Two processes relaying one document at worst publish an event twice (same
envelope id, which consumers drop), never lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from dealbooks_contracts import Envelope, decode
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_kit.kafka import EventPublisher
from dealbooks_kit.logging import get_logger
from dealbooks_kit.metrics import OUTBOX_OLDEST, OUTBOX_PENDING
from dealbooks_kit.mongo import IndexSpec
from dealbooks_kit.tracing import continuing, outbox_context

log = get_logger(__name__)

OUTBOX_FIELD = "outbox"
Doc = dict[str, Any]


def outbox_entry(event: Envelope[Any]) -> Doc:
    """How one event is stored in a document's outbox (with the writer's trace context, when
    tracing is on, which its relay continues)."""
    return {"id": str(event.id), "event": event.to_bytes().decode(), **outbox_context()}


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
        *,
        service: str = "",
    ) -> None:
        self._db = db
        self._service = service
        self._settle_delay = settle_delay
        self._publisher = publisher
        self.collections: list[str] = list(dict.fromkeys(collections))
        self.reread: set[str] = set()
        self._unscanned: set[str] = set()  # reread collections whose first scan is to come
        self._lingering: dict[str, set[str]] = {}  # entry ids pending at the previous pass
        self._acked: set[str] = set()  # entry ids published and not removed yet (`settle`)
        self._unsettled: dict[tuple[str, Any], None] = {}  # documents for the next pass
        self._to_remove: list[tuple[str, Any, Doc]] = []  # published, removed by `settle`
        self._settler: asyncio.Task[None] | None = None
        # One relay per document at a time, so its events go out in order: (lock, users).
        self._relaying: dict[tuple[str, Any], tuple[asyncio.Lock, int]] = {}

    def watch(self, *collections: str, reread: bool = False) -> None:
        """Include `collections` in the periodic pass; `reread` ones are scanned at the first
        pass only (their writers reread their documents: see the module's docstring)."""
        for name in collections:
            if name not in self.collections:
                self.collections.append(name)
            if reread and name not in self.reread:
                self.reread.add(name)
                self._unscanned.add(name)

    def check_later(self, collection: str, doc_id: Any) -> None:
        """Have the next pass relay whatever this document holds: for a writer whose write
        failed without saying whether it was applied, and that no rerun will read again."""
        self._unsettled[(collection, doc_id)] = None

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
        reading them back; entries others append meanwhile are theirs to relay. The document
        is read all the same when an earlier relay of it failed, so its events keep their
        order. Relays of one document run one at a time in this process, and leave out what
        an earlier one published (removed later: `settle_later`).
        Returns how many were published. A failed publish raises and leaves that entry and
        the ones after it in place, for a later relay; the next pass of this process tries
        the document again. `settle_later`: published entries are removed by the next
        `settle`, in one bulk write with other relays' (for writers that reread their
        documents: see the module's docstring), not one by one.
        """
        key = (collection, doc_id)
        async with self._one_at_a_time(key):
            if written is None or key in self._unsettled:
                doc = await self._db[collection].find_one({"_id": doc_id}, {OUTBOX_FIELD: 1})
                written = (doc or {}).get(OUTBOX_FIELD) or []
            entries = [e for e in written if e["id"] not in self._acked]
            try:
                for entry in entries:
                    with continuing(entry):
                        await self._publisher.publish(decode(entry["event"]))
                    if settle_later:
                        self._to_remove.append((collection, doc_id, entry))
                        self._acked.add(entry["id"])
                        continue
                    # The entry exactly as read: entries appended meanwhile stay untouched.
                    await self._db[collection].update_one(
                        {"_id": doc_id}, {"$pull": {OUTBOX_FIELD: entry}}
                    )
            except BaseException:
                self._unsettled[key] = None
                raise
            finally:
                if self._to_remove and (self._settler is None or self._settler.done()):
                    self._settler = asyncio.get_running_loop().create_task(self._settle_soon())
        return len(entries)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: tuple[str, Any]) -> AsyncIterator[None]:
        lock, users = self._relaying.get(key, (asyncio.Lock(), 0))
        self._relaying[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._relaying[key]
            if users == 1:
                del self._relaying[key]
            else:
                self._relaying[key] = (lock, users - 1)

    async def _settle_soon(self) -> None:
        await asyncio.sleep(self._settle_delay)  # let other relays join the bulk write
        try:
            await self.settle()
        except Exception as exc:  # kept (and counted as published) for the next settle
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
                self._acked -= {e["id"] for _, e in pulls}
        finally:  # what was not removed waits for the next settle
            self._to_remove[:0] = [(c, d, e) for c, pulls in left.items() for d, e in pulls]

    async def relay_left(self, collection: str, doc: Doc) -> int:
        """Relay what a document just read still holds in its outbox (a crashed or failed
        relay's events), except what this process published already; a relay of it under
        way here finishes first."""
        if all(e["id"] in self._acked for e in doc.get(OUTBOX_FIELD) or []):
            return 0
        # Read again once any relay of it here is over: what that relay removed is gone.
        return await self.relay(collection, doc["_id"])

    async def relay_pending(self, limit: int = 100) -> int:
        """One pass over every watched collection; returns how many events were published.

        Relays the documents holding an entry that was already pending at the previous pass
        (left behind, not in flight), up to `limit` documents per collection; the first pass
        takes every document of a reread collection (until a scan of it succeeds), since no
        later pass looks there again. A document whose relay fails is logged and left for the
        next pass.
        """
        try:
            await self.settle()
        except Exception as exc:  # kept for the next pass; orphans are still looked for
            log.warning("published outbox entries not removed yet", error=repr(exc))
        published = await self._relay_unsettled()
        scanned: set[str] = set()
        for collection in self.collections:
            first_scan = collection in self._unscanned
            if collection in self.reread and not first_scan:
                continue
            try:
                pending = await self._pending_in(collection, None if first_scan else limit)
            except Exception as exc:  # a reread collection stays unscanned until it works
                log.warning("outbox scan failed; the next pass scans again", error=repr(exc))
                continue
            scanned.add(collection)
            before = self._lingering.get(collection, set())
            self._lingering[collection] = set().union(*pending.values())
            relayed: set[Any] = set()
            for doc_id, entry_ids in pending.items():
                if not entry_ids & before and not first_scan:
                    continue
                try:
                    published += await self.relay(collection, doc_id)
                except Exception as exc:
                    log.warning(
                        "outbox relay failed; the next pass retries",
                        collection=collection,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                else:
                    relayed.add(doc_id)
            self._report(collection, {d: ids for d, ids in pending.items() if d not in relayed})
            self._unscanned.discard(collection)
        await self._report_reread(self.reread - self._unscanned - scanned)
        return published

    async def _report_reread(self, collections: Iterable[str]) -> None:
        """Report, for reread collections past their first scan, the entries of the documents
        whose relay failed here (read only when there are any)."""
        for collection in collections:
            doc_ids = [d for c, d in self._unsettled if c == collection]
            pending: dict[Any, set[str]] = {}
            if doc_ids:
                try:
                    cursor = self._db[collection].find(
                        {"_id": {"$in": doc_ids}}, {f"{OUTBOX_FIELD}.id": 1}
                    )
                    pending = {
                        d["_id"]: {e["id"] for e in d.get(OUTBOX_FIELD) or []} async for d in cursor
                    }
                except Exception as exc:  # the gauges keep their last values
                    log.warning("outbox pending not counted", error=repr(exc))
                    continue
            self._report(collection, pending)

    def _report(self, collection: str, pending: dict[Any, set[str]]) -> None:
        """Set the collection's pending and oldest-entry gauges from what a pass found and
        left waiting (entries in flight through their handler's own relay included)."""
        made = [_made_at(entry_id) for ids in pending.values() for entry_id in ids]
        oldest = min((m for m in made if m is not None), default=None)
        OUTBOX_PENDING.labels(self._service, collection).set(len(made))
        OUTBOX_OLDEST.labels(self._service, collection).set(
            0.0 if oldest is None else max(0.0, time.time() - oldest)
        )

    async def _pending_in(self, collection: str, limit: int | None) -> dict[Any, set[str]]:
        """The documents of `collection` holding entries (up to `limit`), with their ids."""
        cursor = self._db[collection].find(
            {f"{OUTBOX_FIELD}.0": {"$exists": True}}, {f"{OUTBOX_FIELD}.id": 1}
        )
        if limit is not None:
            cursor = cursor.limit(limit)
        return {doc["_id"]: {e["id"] for e in doc[OUTBOX_FIELD]} async for doc in cursor}

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


def _made_at(entry_id: str) -> float | None:
    """When an entry was made (Unix seconds), from its UUIDv7 id; None for another id."""
    try:
        parsed = uuid.UUID(entry_id)
    except ValueError:
        return None
    return (parsed.int >> 80) / 1000 if parsed.version == 7 else None


__all__ = ["OUTBOX_FIELD", "Outbox", "outbox_entry", "outbox_index", "push", "push_entries"]
