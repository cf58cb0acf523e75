"""Self-healing of a record sync: a lost `Customer` or `Item` webhook is made good by the next
reconciliation pass.

Every pass asks QuickBooks' Change Data Capture, per account with sync on, for the changes of
the service's entity since the account's watermark, and feeds each changed record through the
webhook's own per-record path (`RecordSync.on_entity_changed`, in process): it re-reads the
record and writes the CRM only when the mapped fingerprint moved, so whichever of webhook and
pass comes first does the work, and the other finds it unchanged. The watermark starts when
sync is switched on, and moves to CDC's answer time only once the pass's records are durable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import (
    Envelope,
    MappingChanged,
    QboEntityChanged,
    QboOperation,
    SyncTrigger,
)
from dealbooks_kit import PermanentError, TenantPass, each_tenant, get_logger
from dealbooks_qbo import CdcResult, Deleted, Select
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_sync.mapping_sets import MappingSet
from dealbooks_sync.records import RecordSync, SyncDeps

log = get_logger(__name__)

RECONCILE_JOB = "reconciliation"
WATERMARKS = "cdc_watermarks"
# QuickBooks' CDC answers changes of the last 30 days only; a day's margin for clock skew.
CDC_LOOKBACK = timedelta(days=29)
# A watermark starts this much before sync was switched on: our clock and QuickBooks' differ.
CLOCK_MARGIN = timedelta(seconds=5)
# CDC returns at most 1,000 objects; a full answer may have more behind it.
CDC_MAX_OBJECTS = 1000
CDC_CALLS_PER_PASS = 10
# QuickBooks stamps LastUpdatedTime to the second.
LAST_UPDATED_RESOLUTION = timedelta(seconds=1)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # stored in UTC


class Watermarks:
    """Collection `cdc_watermarks`: per account, since when QuickBooks' changes of the
    service's entity have been applied."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[WATERMARKS]

    async def get(self, realm_id: str) -> datetime | None:
        doc = await self._col.find_one({"_id": realm_id})
        return _utc(doc["since"]) if doc else None

    async def start(self, realm_id: str, since: datetime) -> None:
        """Start watching from `since`, unless the account is watched already."""
        await self._col.update_one(
            {"_id": realm_id}, {"$setOnInsert": {"since": since}}, upsert=True
        )

    async def move(self, realm_id: str, since: datetime) -> None:
        """Move an existing watermark (a forgotten one stays forgotten)."""
        await self._col.update_one({"_id": realm_id}, {"$set": {"since": since}})

    async def forget(self, realm_id: str) -> None:
        await self._col.delete_one({"_id": realm_id})


class Reconciliation:
    """The CDC pass of one sync service over its accounts with sync on."""

    def __init__(
        self, deps: SyncDeps, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.deps = deps
        self.kind = deps.kind
        self.sync = RecordSync(deps, SyncTrigger.RECONCILIATION)
        self.watermarks = Watermarks(deps.db)
        self.clock = clock

    async def on_mapping_changed(self, event: Envelope[MappingChanged]) -> None:
        """After the mapping set is stored: sync on starts the account's watermark (changes
        from then on are healed), sync off drops it (a later switch-on starts afresh, as
        webhooks received while it was off were skipped)."""
        if event.data.object_type is not self.kind.object_type:
            return
        realm_id = event.tenant.require_account_id()
        mset = await self.deps.sets.get(realm_id, self.kind.object_type)
        if mset is not None and mset.settings.enabled:
            await self.watermarks.start(realm_id, _utc(event.occurred_at) - CLOCK_MARGIN)
        else:
            await self.watermarks.forget(realm_id)

    async def reconcile_all(self) -> TenantPass:
        """A CDC pass for every account with sync on; one that fails (its company
        disconnected, QuickBooks or the CRM failing for it) is reported and keeps its
        watermark, and the others go on. Reports the changes applied."""
        realms = await self._enabled_realms()
        return await each_tenant(RECONCILE_JOB, realms, self.reconcile, kind="realm_id")

    async def reconcile(self, realm_id: str) -> int:
        """One CDC pass for an account: every change of the entity since its watermark goes
        through the webhook's path. Returns the changes seen."""
        mset = await self.deps.sets.get(realm_id, self.kind.object_type)
        if mset is None or not mset.settings.enabled:
            await self.watermarks.forget(realm_id)
            return 0
        since = await self.watermarks.get(realm_id)
        now = self.clock()
        if since is None:  # sync was on before this service healed: watch from now
            await self.watermarks.start(realm_id, now - CLOCK_MARGIN)
            return 0
        if since < now - CDC_LOOKBACK:
            # Beyond CDC's window (the service was stopped for weeks): what changed before is
            # healed only by a backfill.
            log.warning(
                "reconciliation watermark beyond the CDC window; older changes need a backfill",
                realm_id=realm_id,
                since=since.isoformat(),
            )
            since = now - CDC_LOOKBACK
        seen = 0
        for _ in range(CDC_CALLS_PER_PASS):
            result = await self.deps.qbo.company(realm_id).cdc([self.kind.qbo_entity], since)
            rows = result.changes.get(self.kind.qbo_entity, [])
            seen += await self._apply(mset, rows, result.time)
            following = _next_watermark(rows, result)
            if len(rows) < CDC_MAX_OBJECTS:
                await self.watermarks.move(realm_id, following)
                break
            if following <= since:
                # More than a full answer changed within one LastUpdatedTime (a bulk import):
                # CDC would answer the same objects again, so that instant is read by query.
                instant = since.replace(microsecond=0)
                seen += await self._apply_instant(mset, instant, result.time)
                following = instant + LAST_UPDATED_RESOLUTION
            await self.watermarks.move(realm_id, following)
            since = following
        return seen

    async def _apply_instant(self, mset: MappingSet, instant: datetime, now: datetime) -> int:
        """Every record of the entity whose LastUpdatedTime is `instant` (to the second), by
        a paged query. Deletions are not in a query: one deleted within such an instant past
        CDC's cap is left to a backfill."""
        until = instant + LAST_UPDATED_RESOLUTION
        statement = (
            Select(self.kind.qbo_entity)
            .where("MetaData.LastUpdatedTime", ">=", instant.isoformat())
            .where("MetaData.LastUpdatedTime", "<", until.isoformat())
            .order_by("Id")
        )
        rows = await self.deps.qbo.company(mset.realm_id).query_all(statement)
        return await self._apply(mset, rows, now)

    async def _apply(self, mset: MappingSet, rows: list[Any], answered_at: datetime) -> int:
        correlation = f"reconciliation:{mset.realm_id}:{self.kind.object_type.value}"
        seen = 0
        for row in rows:
            deleted = isinstance(row, Deleted)
            meta = getattr(row, "MetaData", None)
            change = QboEntityChanged(
                realm_id=mset.realm_id,
                entity=self.kind.qbo_entity,
                entity_id=str(row["Id"] if isinstance(row, dict) else row.Id),
                operation=QboOperation.DELETE if deleted else QboOperation.UPDATE,
                last_updated=_utc(getattr(meta, "LastUpdatedTime", None) or answered_at),
            )
            cause = Envelope.build(
                change, source=self.deps.source, tenant=mset.tenant, correlation_id=correlation
            )
            # A record that cannot be synced is published as `*.sync-failed`, as for a
            # webhook, and the pass goes on.
            with contextlib.suppress(PermanentError):
                await self.sync.on_entity_changed(cause)
            seen += 1
        return seen

    async def _enabled_realms(self) -> list[str]:
        cursor = self.deps.db["mapping_sets"].find(
            {"object_type": self.kind.object_type.value, "settings.enabled": True},
            {"realm_id": 1},
        )
        return sorted({str(doc["realm_id"]) async for doc in cursor})


def _next_watermark(rows: list[Any], result: CdcResult) -> datetime:
    """CDC's answer time, or, for an answer cut at the object cap, the newest change in it
    (the next call starts there; records changed at that instant are seen twice, which the
    fingerprint makes harmless; if that instant is where the call started, `reconcile`
    reads it by query). Which objects QuickBooks cuts is UNVERIFIED."""
    if len(rows) < CDC_MAX_OBJECTS:
        return _utc(result.time)
    times = [
        _utc(row.MetaData.LastUpdatedTime)
        for row in rows
        if getattr(row, "MetaData", None) is not None and row.MetaData.LastUpdatedTime
    ]
    return max(times, default=_utc(result.time))


__all__ = ["CDC_LOOKBACK", "RECONCILE_JOB", "Reconciliation", "Watermarks"]
