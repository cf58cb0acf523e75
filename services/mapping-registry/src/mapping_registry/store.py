"""mapping-registry's MongoDB: connected accounts, mapping sets (with their outbox) and the
property-sync status per mapping.

A mapping set and the `mapping.changed` event announcing it are written in one document
(`outbox`), so a crash between saving and publishing loses nothing: `pending()` relays it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dealbooks_contracts import Envelope, FieldMapping, MappingChanged, SyncObjectType, SyncSettings
from dealbooks_kit import IndexSpec
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from mapping_registry.domain import MappingSetState, StatusDelta

INDEXES = (
    IndexSpec("mapping_sets", [("outbox_pending", 1)]),
    IndexSpec("mapping_status", [("realm_id", 1), ("object_type", 1)]),
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
    """Collection `mapping_sets`: the current version per account and object type."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db["mapping_sets"]

    async def get(self, realm_id: str, object_type: SyncObjectType) -> MappingSetState | None:
        doc = await self._col.find_one({"_id": _set_id(realm_id, object_type)})
        if doc is None:
            return None
        return MappingSetState(
            object_type=object_type,
            version=doc["version"],
            settings=SyncSettings.model_validate(doc["settings"]),
            mappings=[FieldMapping.model_validate(m) for m in doc["mappings"]],
        )

    def _fields(
        self, realm_id: str, state: MappingSetState, event: Envelope[MappingChanged]
    ) -> dict[str, Any]:
        return {
            "realm_id": realm_id,
            "object_type": state.object_type.value,
            "version": state.version,
            "settings": state.settings.model_dump(mode="json"),
            "mappings": [m.model_dump(mode="json") for m in state.mappings],
            "updated_at": datetime.now(UTC),
            "outbox": event.to_bytes().decode(),
            "outbox_pending": True,
        }

    async def create(
        self, realm_id: str, state: MappingSetState, event: Envelope[MappingChanged]
    ) -> bool:
        """Store version 1; False if the account already has mappings (a reconnection)."""
        doc = {"_id": _set_id(realm_id, state.object_type), **self._fields(realm_id, state, event)}
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def replace(
        self, realm_id: str, state: MappingSetState, event: Envelope[MappingChanged]
    ) -> None:
        """Store the next version, if nobody stored it first (optimistic concurrency)."""
        result = await self._col.update_one(
            {"_id": _set_id(realm_id, state.object_type), "version": state.version - 1},
            {"$set": self._fields(realm_id, state, event)},
        )
        if result.matched_count == 0:
            raise VersionConflict(f"mapping set changed meanwhile (expected v{state.version - 1})")

    async def pending(self) -> list[Envelope[MappingChanged]]:
        """Events saved but not yet confirmed published."""
        return [
            Envelope[MappingChanged].from_bytes(doc["outbox"])
            async for doc in self._col.find({"outbox_pending": True})
        ]

    async def published(self, event: Envelope[MappingChanged]) -> None:
        await self._col.update_one(
            {"outbox": event.to_bytes().decode()}, {"$set": {"outbox_pending": False}}
        )


class MappingStatus:
    """Collection `mapping_status`: ok/failed counts, last sync and last error per mapping."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db["mapping_status"]

    async def record(
        self,
        realm_id: str,
        object_type: SyncObjectType,
        deltas: list[StatusDelta],
        at: datetime,
    ) -> None:
        for delta in deltas:
            update: dict[str, Any] = {
                "$inc": {"ok": delta.ok, "failed": delta.failed},
                "$set": {
                    "realm_id": realm_id,
                    "object_type": object_type.value,
                    "mapping_id": delta.mapping_id,
                },
            }
            if delta.ok:
                update["$set"]["last_synced_at"] = at
            if delta.error:
                update["$set"].update({"last_error": delta.error, "last_error_at": at})
            await self._col.update_one(
                {"_id": f"{realm_id}:{object_type.value}:{delta.mapping_id}"}, update, upsert=True
            )

    async def for_set(self, realm_id: str, object_type: SyncObjectType) -> dict[str, Any]:
        cursor = self._col.find({"realm_id": realm_id, "object_type": object_type.value})
        return {doc["mapping_id"]: doc async for doc in cursor}
