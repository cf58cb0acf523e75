"""Durable backfill runs: one document per account in the sync service's `backfills`
collection (each sync service syncs one object type), holding the run's state, its cursor
into the QuickBooks query, its counts, its call caps and its lease.

At most one run of an account is active (planned, running or paused) at a time: a run is
created by one conditional upsert that matches only a finished run (or none), so of two
starts at once the loser gets a duplicate key. A running run is driven by the process that
holds its lease (holder id + expiry, renewed while it runs, as `dealbooks_kit.periodic`
leases jobs); when the holder dies the lease expires, and the service's periodic check (or
another replica) takes it over and continues from the cursor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_kit import IndexSpec
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]

PLANNED, RUNNING, PAUSED = "planned", "running", "paused"
DONE, CANCELLED, FAILED = "done", "cancelled", "failed"
ACTIVE = (PLANNED, RUNNING, PAUSED)
CAP_REACHED = "cap reached"
COUNTS = ("read", "created", "updated", "unchanged", "failed")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caps:
    """The most QuickBooks and CRM calls a run may make in all."""

    qbo: int
    crm: int

    def as_doc(self) -> dict[str, int]:
        return {"qbo": self.qbo, "crm": self.crm}


class BackfillBusy(Exception):
    """The account already has an active run (the run document is attached)."""

    def __init__(self, message: str, run: Doc | None) -> None:
        super().__init__(message)
        self.run = run


class BackfillRuns:
    """Collection `backfills`: `_id` is the account's realm id, one run at a time."""

    INDEXES = (
        IndexSpec("backfills", [("realm_id", 1), ("started_at", -1)]),
        IndexSpec("backfills", [("run_id", 1)]),
    )
    """An account's runs newest first, and a run by its id."""

    def __init__(self, db: AsyncDatabase[Doc], object_type: str, holder: str) -> None:
        self._c = db["backfills"]
        self.object_type = object_type
        self.holder = holder

    async def current(self, realm_id: str) -> Doc | None:
        """The account's latest run, active or not."""
        return await self._c.find_one({"_id": realm_id, "run_id": {"$exists": True}})

    async def by_run_id(self, run_id: str) -> Doc | None:
        return await self._c.find_one({"run_id": run_id})

    async def create(self, realm_id: str, portal_id: str, caps: Caps, lease_seconds: float) -> Doc:
        """A new run, running and leased to this holder; BackfillBusy if one is active."""
        at = now()
        fields: Doc = {
            "run_id": uuid.uuid4().hex,
            "realm_id": realm_id,
            "portal_id": portal_id,
            "object_type": self.object_type,
            "state": RUNNING,
            "reason": None,
            "error": None,
            "cursor": {"start": 1, "last_id": None},
            **dict.fromkeys(COUNTS, 0),
            "calls": {"qbo": 0, "crm": 0},
            "caps": caps.as_doc(),
            "holder": self.holder,
            "lease_expires_at": at + timedelta(seconds=lease_seconds),
            "started_at": at,
            "updated_at": at,
            "finished_at": None,
        }
        try:
            doc = await self._c.find_one_and_update(
                {"_id": realm_id, "state": {"$nin": list(ACTIVE)}},
                {"$set": fields},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # an active run's document: the upsert tried to insert
            doc = None
        if doc is None or doc.get("run_id") != fields["run_id"]:
            active = await self.current(realm_id)
            raise BackfillBusy("a backfill of this account is already active", active)
        return doc

    async def claim(
        self, realm_id: str, lease_seconds: float, *, caps: Caps | None = None
    ) -> Doc | None:
        """Take the account's run to drive it: a paused one (resumed), or a running one whose
        lease expired or is this holder's. None if there is none to take."""
        at = now()
        taken = {
            "state": RUNNING,
            "$or": [{"holder": self.holder}, {"lease_expires_at": {"$lte": at}}],
        }
        fields: Doc = {
            "state": RUNNING,
            "reason": None,
            "holder": self.holder,
            "lease_expires_at": at + timedelta(seconds=lease_seconds),
            "updated_at": at,
        }
        if caps is not None:
            fields["caps"] = caps.as_doc()
        return await self._c.find_one_and_update(
            {"_id": realm_id, "$or": [{"state": PAUSED}, taken]},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )

    async def abandoned(self) -> list[str]:
        """Accounts whose running run has no live holder."""
        cursor = self._c.find({"state": RUNNING, "lease_expires_at": {"$lte": now()}}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]

    async def progress(self, run: Doc, lease_seconds: float, **fields: Any) -> bool:
        """Save the run's progress (and extend its lease) while this holder drives it; False
        if it was cancelled or taken over meanwhile."""
        at = now()
        result = await self._c.update_one(
            {"_id": run["_id"], "run_id": run["run_id"], "holder": self.holder, "state": RUNNING},
            {
                "$set": {
                    **fields,
                    "lease_expires_at": at + timedelta(seconds=lease_seconds),
                    "updated_at": at,
                }
            },
        )
        return result.matched_count == 1

    async def finish(self, run: Doc, state: str, **fields: Any) -> bool:
        """End this holder's drive: paused, done or failed (the lease goes with it)."""
        result = await self._c.update_one(
            {"_id": run["_id"], "run_id": run["run_id"], "holder": self.holder, "state": RUNNING},
            {"$set": {**fields, "state": state, "holder": None, "updated_at": now()}},
        )
        return result.matched_count == 1

    async def release(self, run: Doc) -> None:
        """Give up the lease without ending the run (a replica shutting down): the next check
        resumes it at once."""
        await self._c.update_one(
            {"_id": run["_id"], "run_id": run["run_id"], "holder": self.holder},
            {"$set": {"holder": None, "lease_expires_at": now()}},
        )

    async def cancel(self, realm_id: str) -> Doc | None:
        """Cancel the account's active run; its driver stops at its next save."""
        at = now()
        return await self._c.find_one_and_update(
            {"_id": realm_id, "state": {"$in": list(ACTIVE)}},
            {"$set": {"state": CANCELLED, "holder": None, "finished_at": at, "updated_at": at}},
            return_document=ReturnDocument.AFTER,
        )


def public(doc: Doc) -> Doc:
    """A run as the routes show it: no `_id`, times in ISO 8601."""
    out = {k: v for k, v in doc.items() if k != "_id"}
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.items()}
