"""Collection `mapping_sets`: the newest `mapping.changed` a sync service received per account
and object type (its settings and field mappings), and whether the portal has dealbooks' CRM
properties for it yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dealbooks_contracts import (
    Envelope,
    FieldMapping,
    MappingChanged,
    SyncObjectType,
    SyncSettings,
    Tenant,
)
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


@dataclass(frozen=True)
class MappingSet:
    """The newest `mapping.changed` this service has seen for one account and object type."""

    realm_id: str
    portal_id: str
    version: int
    settings: SyncSettings
    mappings: list[FieldMapping]
    crm_ready: bool

    @property
    def tenant(self) -> Tenant:
        return Tenant(portal_id=self.portal_id, account_id=self.realm_id)

    def mapping_for(self, crm_property: str) -> FieldMapping | None:
        return next((m for m in self.mappings if m.crm_property == crm_property), None)


class MappingSets:
    """Collection `mapping_sets`: one document per account and object type."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db["mapping_sets"]

    async def apply(self, event: Envelope[MappingChanged], *, crm_ready: bool = False) -> bool:
        """Keep the event if it is newer than what is stored; False for an old version."""
        data = event.data
        realm = event.tenant.require_account_id()
        ready: dict[str, Any] = {"crm_ready": True} if crm_ready else {}
        try:
            await self._col.update_one(
                {"_id": f"{realm}:{data.object_type.value}", "version": {"$lt": data.version}},
                {
                    "$set": {
                        "realm_id": realm,
                        "portal_id": event.tenant.portal_id,
                        "object_type": data.object_type.value,
                        "version": data.version,
                        "settings": data.settings.model_dump(mode="json"),
                        "mappings": [m.model_dump(mode="json") for m in data.mappings],
                        **ready,
                    },
                    **({} if crm_ready else {"$setOnInsert": {"crm_ready": False}}),
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # a newer version is stored already
        return True

    async def get(self, realm_id: str, object_type: SyncObjectType) -> MappingSet | None:
        doc = await self._col.find_one({"_id": f"{realm_id}:{object_type.value}"})
        if doc is None:
            return None
        return MappingSet(
            realm_id=doc["realm_id"],
            portal_id=doc["portal_id"],
            version=doc["version"],
            settings=SyncSettings.model_validate(doc["settings"]),
            mappings=[FieldMapping.model_validate(m) for m in doc["mappings"]],
            crm_ready=bool(doc.get("crm_ready")),
        )

    async def portal_of(self, realm_id: str) -> str | None:
        """The portal an account's mappings came from (whose connector-auth tokens to ask for)."""
        doc = await self._col.find_one({"realm_id": realm_id}, {"portal_id": 1})
        return str(doc["portal_id"]) if doc and doc.get("portal_id") else None

    async def realms_of_portal(self, portal_id: str, object_type: SyncObjectType) -> list[str]:
        """The accounts of a portal with mappings of `object_type` (a rare filtered read)."""
        cursor = self._col.find(
            {"portal_id": portal_id, "object_type": object_type.value}, {"realm_id": 1}
        )
        return sorted({str(doc["realm_id"]) async for doc in cursor})

    async def mark_crm_ready(self, realm_id: str, object_type: SyncObjectType) -> None:
        await self._col.update_one(
            {"_id": f"{realm_id}:{object_type.value}"}, {"$set": {"crm_ready": True}}
        )
