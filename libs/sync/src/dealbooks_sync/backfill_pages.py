"""One page of a backfill: map the page's QBO records and sort them (unchanged, new or moved
keys to upsert, known records to update, failures) before anything is written, then write the
CRM in batches, link and publish."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from dealbooks_contracts import Envelope, EventPayload, SyncAction, SyncFailureCode, SyncTrigger
from dealbooks_qbo import Entity

from dealbooks_sync.crm_writes import emptied
from dealbooks_sync.domain import MappedRecord, cleared_properties, fingerprint
from dealbooks_sync.links import Link, link_after
from dealbooks_sync.mapping_sets import MappingSet
from dealbooks_sync.outcomes import Outcomes, RecordFailed
from dealbooks_sync.records import SyncDeps, mapped_record

MAX_BATCH = 100  # records per CRM batch call


@dataclass
class PagePlan:
    """What one page of QBO records asks of the CRM, decided before anything is written."""

    links: dict[str, Link]
    counts: Counter[str]  # read, created, updated, unchanged, failed (`runs.COUNTS`)
    events: list[EventPayload]
    pending: dict[str, tuple[str, dict[str, str], list[str]]]
    updates: list[tuple[str, str, dict[str, str], list[str]]]
    clears: dict[str, dict[str, str]]  # by QBO id: what QBO emptied since last time

    @property
    def crm_calls(self) -> int:
        return -(-len(self.pending) // MAX_BATCH) + -(-len(self.updates) // MAX_BATCH)


class BackfillPages:
    """Plans and writes the pages of one kind's backfill."""

    def __init__(self, deps: SyncDeps) -> None:
        self.deps = deps
        self.kind = deps.kind

    async def plan(self, mset: MappingSet, rows: list[Entity]) -> PagePlan:
        """Map one page of QBO records and sort them: unchanged, new or moved keys to upsert,
        known records to update, failures."""
        ids = [str(r.Id) for r in rows]
        plan = PagePlan(
            await self.deps.links.get_many(mset.realm_id, ids), Counter(), [], {}, [], {}
        )
        plan.counts["read"] = len(rows)
        outcomes = Outcomes(self.kind, mset, SyncTrigger.BACKFILL)
        for row in rows:
            qbo_id = str(row.Id)
            try:
                mapped, key, properties = mapped_record(self.kind, mset, qbo_id, row.to_qbo())
            except RecordFailed as failed:
                plan.counts["failed"] += 1
                plan.events.append(outcomes.failed(qbo_id, failed))
                continue
            link = plan.links.get(qbo_id)
            if (
                link is not None
                and not link.archived
                and link.fingerprint == fingerprint(properties)
            ):
                plan.counts["unchanged"] += 1
                plan.events.append(
                    outcomes.synced(qbo_id, link.crm_id, SyncAction.UNCHANGED, mapped.written)
                )
                continue
            written = mapped.written
            if link is not None and not link.archived:
                cleared = cleared_properties(mset.mappings, mapped, link.written)
                plan.clears[qbo_id] = emptied(cleared)
                written = [*written, *cleared.values()]
                if link.key.lower() != key.lower():
                    plan.updates.append((qbo_id, link.crm_id, properties, written))
                    continue
            # Two QBO records with one key (a shared email) become one CRM record.
            plan.pending[key.lower()] = (qbo_id, properties, written)
        return plan

    async def write(self, mset: MappingSet, plan: PagePlan) -> None:
        """Batch-upsert new and moved keys, batch-update the rest, link, publish."""
        outcomes = Outcomes(self.kind, mset, SyncTrigger.BACKFILL)
        new_links = [
            *await self._upsert_pending(mset, plan, outcomes),
            *await self._update_known(mset, plan, outcomes),
        ]
        fresh = [x for x in new_links if x.qbo_id not in plan.links]
        known = [x for x in new_links if x.qbo_id in plan.links]
        await self.deps.links.save(mset.realm_id, known, mset.version, new=fresh)
        await self._publish_all(mset, plan.events)

    async def _upsert_pending(
        self, mset: MappingSet, plan: PagePlan, outcomes: Outcomes
    ) -> list[Link]:
        """One batch upsert of the new and moved keys; their links."""
        if not plan.pending:
            return []
        counts, clears = plan.counts, plan.clears
        result = await self.deps.crm.portal(mset.portal_id).batch_upsert(
            self.kind.crm_object,
            self.kind.upsert_property,
            [(key, {**p, **clears.get(q, {})}) for key, (q, p, _) in plan.pending.items()],
        )
        by_key = {
            str(o.properties.get(self.kind.upsert_property) or "").lower(): o
            for o in result.results
        }
        links: list[Link] = []
        for key, (qbo_id, props, written) in plan.pending.items():
            obj = by_key.get(key)
            if obj is None:
                counts["failed"] += 1
                message = result.errors[0].message if result.errors else "no result"
                rejected = RecordFailed(SyncFailureCode.CRM_REJECTED, message)
                plan.events.append(outcomes.failed(qbo_id, rejected))
                continue
            action = SyncAction.CREATED if obj.new else SyncAction.UPDATED
            counts["created"] += action is SyncAction.CREATED
            counts["updated"] += action is SyncAction.UPDATED
            links.append(link_after(qbo_id, obj.id, key, props))
            plan.events.append(outcomes.synced(qbo_id, obj.id, action, written))
        return links

    async def _update_known(
        self, mset: MappingSet, plan: PagePlan, outcomes: Outcomes
    ) -> list[Link]:
        """One batch update of the linked records whose key moved; their links."""
        if not plan.updates:
            return []
        clears = plan.clears
        await self.deps.crm.portal(mset.portal_id).batch_update(
            self.kind.crm_object,
            [(crm_id, {**props, **clears.get(q, {})}) for q, crm_id, props, _ in plan.updates],
        )
        links: list[Link] = []
        for qbo_id, crm_id, props, written in plan.updates:
            plan.counts["updated"] += 1
            key = self.kind.key_of(qbo_id, MappedRecord(props, written)) or qbo_id
            links.append(link_after(qbo_id, crm_id, key, props))
            plan.events.append(outcomes.synced(qbo_id, crm_id, SyncAction.UPDATED, written))
        return links

    async def _publish_all(self, mset: MappingSet, events: list[EventPayload]) -> None:
        correlation = f"backfill:{mset.realm_id}:{self.kind.object_type.value}"
        for start in range(0, len(events), 200):
            await asyncio.gather(
                *(
                    self.deps.publisher.publish(
                        Envelope.build(
                            e,
                            source=self.deps.source,
                            tenant=mset.tenant,
                            correlation_id=correlation,
                        )
                    )
                    for e in events[start : start + 200]
                )
            )
