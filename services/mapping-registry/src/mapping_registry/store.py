"""mapping-registry's MongoDB: connected accounts, mapping set versions (with their outbox)
and the property-sync status per mapping.

Every version of a mapping set is its own document, inserted once with the `mapping.changed`
event announcing it in its outbox (`dealbooks_kit.outbox`): the state and the event cannot
diverge, and the unique `_id` per version lets exactly one of two concurrent edits win, which
a conditional update on a MongoDB-wire server cannot promise across connections.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import Envelope, FieldMapping, MappingChanged, SyncObjectType, SyncSettings
from dealbooks_kit import IndexSpec, outbox_entry
from dealbooks_kit.outbox import OUTBOX_FIELD
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from mapping_registry.domain import MappingSetState, StatusDelta

MAPPING_VERSIONS = "mapping_versions"
MAPPING_OUTCOMES = "mapping_outcomes"
DUPLICATE_KEY = 11000
INDEXES = (
    IndexSpec(MAPPING_VERSIONS, [("set_id", 1), ("version", -1)]),
    IndexSpec("mapping_status", [("realm_id", 1), ("object_type", 1)]),
    IndexSpec(MAPPING_OUTCOMES, [("realm_id", 1), ("object_type", 1)]),
)


class VersionConflict(Exception):
    """Someone else changed the mapping set first; reload and try again."""


class Accounts:
    """Collection `accounts`: which portal each connected QBO company belongs to."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db["accounts"]

    async def upsert(self, realm_id: str, portal_id: str, company_name: str) -> None:
        await self._col.update_one(
            {"_id": realm_id},
            {"$set": {"portal_id": portal_id, "company_name": company_name}},
            upsert=True,
        )

    async def portal_of(self, realm_id: str) -> str | None:
        doc = await self._col.find_one({"_id": realm_id})
        return str(doc["portal_id"]) if doc else None


def _set_id(realm_id: str, object_type: SyncObjectType) -> str:
    return f"{realm_id}:{object_type.value}"


class MappingSets:
    """Collection `mapping_versions`: every version per account and object type; the highest
    is the current one."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[MAPPING_VERSIONS]

    async def get(self, realm_id: str, object_type: SyncObjectType) -> MappingSetState | None:
        doc = await self._col.find_one(
            {"set_id": _set_id(realm_id, object_type)}, sort=[("version", -1)]
        )
        if doc is None:
            return None
        return MappingSetState(
            object_type=object_type,
            version=doc["version"],
            settings=SyncSettings.model_validate(doc["settings"]),
            mappings=[FieldMapping.model_validate(m) for m in doc["mappings"]],
        )

    async def insert(
        self, realm_id: str, state: MappingSetState, event: Envelope[MappingChanged]
    ) -> str:
        """Store `state` as its version with `event` in the outbox; returns the document id.

        Raises `VersionConflict` when that version exists already (someone saved first).
        """
        set_id = _set_id(realm_id, state.object_type)
        doc_id = f"{set_id}:{state.version}"
        try:
            await self._col.insert_one(
                {
                    "_id": doc_id,
                    "set_id": set_id,
                    "realm_id": realm_id,
                    "object_type": state.object_type.value,
                    "version": state.version,
                    "settings": state.settings.model_dump(mode="json"),
                    "mappings": [m.model_dump(mode="json") for m in state.mappings],
                    "saved_at": datetime.now(UTC),
                    OUTBOX_FIELD: [outbox_entry(event)],
                }
            )
        except DuplicateKeyError:
            raise VersionConflict(
                f"the mappings changed meanwhile (version {state.version} exists); "
                "reload them and try again"
            ) from None
        return doc_id


class MappingStatus:
    """Property-sync status per mapping: ok/failed counts over the last `window`, last sync and
    last error.

    Counts are not incremented: each outcome is one document per (event, mapping) with a
    unique `_id`, so a redelivered event inserts nothing new and counts once; reads sum those
    of the window, and `forget_before` drops older ones, so the collection stays the size of
    one window of traffic. Collection `mapping_status` keeps the last sync and last error,
    which a repeat rewrites with the same values.
    """

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], window: timedelta = timedelta(days=30)
    ) -> None:
        self._outcomes = db[MAPPING_OUTCOMES]
        self._col = db["mapping_status"]
        self.window = window

    def counted_since(self, now: datetime) -> datetime:
        """Where the window of counted outcomes starts."""
        return now - self.window

    async def record(
        self,
        realm_id: str,
        object_type: SyncObjectType,
        event_id: str,
        deltas: list[StatusDelta],
        at: datetime,
    ) -> None:
        """Count one sync outcome (event `event_id`) into each mapping's status, once."""
        where = {"realm_id": realm_id, "object_type": object_type.value}
        docs = [
            {
                "_id": f"{event_id}:{d.mapping_id}",
                **where,
                "mapping_id": d.mapping_id,
                "outcome": "failed" if d.failed else "ok",
                "at": at,
            }
            for d in deltas
        ]
        # The last sync and error first, so a count a reader sees has them too.
        for delta in deltas:
            update: dict[str, Any] = {"$set": {**where, "mapping_id": delta.mapping_id}}
            if delta.ok:
                update["$max"] = {"last_synced_at": at}
            if delta.error:
                update["$set"].update({"last_error": delta.error, "last_error_at": at})
            await self._col.update_one(
                {"_id": f"{realm_id}:{object_type.value}:{delta.mapping_id}"}, update, upsert=True
            )
        try:
            await self._outcomes.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def for_set(
        self, realm_id: str, object_type: SyncObjectType, since: datetime
    ) -> dict[str, Any]:
        """Per mapping id: ok and failed (outcomes since `since`), last_synced_at, last_error,
        last_error_at."""
        where = {"realm_id": realm_id, "object_type": object_type.value}
        out: dict[str, Any] = {doc["mapping_id"]: doc async for doc in self._col.find(where)}
        # One accumulator per $group: FerretDB mis-sums a second one in the same stage.
        counts = await self._outcomes.aggregate(
            [
                {"$match": {**where, "at": {"$gte": since}}},
                {
                    "$group": {
                        "_id": {"mapping_id": "$mapping_id", "outcome": "$outcome"},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
        async for row in counts:
            key = row["_id"]
            out.setdefault(key["mapping_id"], {})[key["outcome"]] = row["n"]
        return out

    async def forget_before(self, cutoff: datetime, now: datetime) -> int:
        """Drop outcomes older than `cutoff`; returns how many. Outcomes recorded before they
        carried a time start their window `now`. The MongoDB-wire servers here have no TTL
        index."""
        await self._outcomes.update_many({"at": {"$exists": False}}, {"$set": {"at": now}})
        result = await self._outcomes.delete_many({"at": {"$lt": cutoff}})
        return int(result.deleted_count)
