"""Collection `links`: which CRM record each QBO record was synced to, with the fingerprint of
what was written (so an unchanged record is not written again) and the properties sync filled
(so the next sync knows which ones QBO emptied)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dealbooks_kit import IndexSpec
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from dealbooks_sync.domain import fingerprint


@dataclass(frozen=True)
class Link:
    """A QBO record and the CRM record it was synced to."""

    qbo_id: str
    crm_id: str
    key: str
    fingerprint: str
    archived: bool
    # The CRM properties that sync filled, so the next one knows which QBO emptied.
    written: tuple[str, ...] = ()


class Links:
    """Collection `links`: QBO id -> CRM id (the CRM record carries the QBO id back)."""

    INDEXES = (IndexSpec("links", [("realm_id", 1), ("crm_id", 1)]),)
    """By CRM record (its `_id` is the realm and QBO id)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db["links"]

    @staticmethod
    def _link(doc: dict[str, Any]) -> Link:
        return Link(
            doc["qbo_id"],
            doc["crm_id"],
            doc["key"],
            doc["fingerprint"],
            doc["archived"],
            tuple(doc.get("written") or ()),
        )

    async def get(self, realm_id: str, qbo_id: str) -> Link | None:
        doc = await self._col.find_one({"_id": f"{realm_id}:{qbo_id}"})
        return self._link(doc) if doc else None

    async def get_many(self, realm_id: str, qbo_ids: Sequence[str]) -> dict[str, Link]:
        ids = [f"{realm_id}:{q}" for q in qbo_ids]
        return {d["qbo_id"]: self._link(d) async for d in self._col.find({"_id": {"$in": ids}})}

    @staticmethod
    def _fields(realm_id: str, link: Link, version: int) -> dict[str, Any]:
        return {
            "realm_id": realm_id,
            "qbo_id": link.qbo_id,
            "crm_id": link.crm_id,
            "key": link.key,
            "fingerprint": link.fingerprint,
            "archived": link.archived,
            "written": list(link.written),
            "mapping_version": version,
            "synced_at": datetime.now(UTC),
        }

    def _op(self, realm_id: str, link: Link, version: int) -> UpdateOne:
        return UpdateOne(
            {"_id": f"{realm_id}:{link.qbo_id}"},
            {"$set": self._fields(realm_id, link, version)},
            upsert=True,
        )

    async def save(
        self, realm_id: str, links: Sequence[Link], version: int, *, new: Sequence[Link] = ()
    ) -> None:
        """Upsert `links`; `new` ones (known to have no document) are inserted, which a
        MongoDB-wire server without index pushdown does far faster than upserts."""
        if links:
            await self._col.bulk_write([self._op(realm_id, x, version) for x in links])
        if new:
            docs = [
                {"_id": f"{realm_id}:{x.qbo_id}", **self._fields(realm_id, x, version)} for x in new
            ]
            try:
                await self._col.insert_many(docs, ordered=False)
            except BulkWriteError:
                # A concurrent sync linked some meanwhile: store those the slow way.
                await self._col.bulk_write([self._op(realm_id, x, version) for x in new])

    async def count_linked(self, realm_id: str) -> int:
        """How many of the account's records are linked to a live CRM record."""
        return await self._col.count_documents({"realm_id": realm_id, "archived": False})


def link_after(qbo_id: str, crm_id: str, key: str, properties: dict[str, str]) -> Link:
    """The link after writing `properties` (without the cleared ones) to CRM record `crm_id`."""
    return Link(qbo_id, crm_id, key, fingerprint(properties), False, tuple(sorted(properties)))
