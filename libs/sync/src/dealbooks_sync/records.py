"""The record write pipeline both sync services run, one QBO record at a time: decode the
change, decide (`domain.decide`), write the CRM (archive, update by link, or upsert by key),
remember the link, publish the outcome and audit it. What differs per object type is the
`RecordKind`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dealbooks_contracts import (
    Envelope,
    EventPayload,
    MappingChanged,
    QboEntityChanged,
    QboOperation,
    SyncAction,
    SyncFailureCode,
    SyncTrigger,
)
from dealbooks_crm import CrmClient, CrmNotFound, CrmObject, PortalCrm
from dealbooks_kit import (
    Audit,
    CrmPortalNotConfigured,
    EventPublisher,
    GaveUp,
    PermanentError,
    TransientError,
)
from dealbooks_qbo import Entity, NotFound, QboClient, QboError
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_sync.crm_writes import CrmProperties, crm_call, crm_configured, emptied, refused
from dealbooks_sync.domain import (
    REQUIRED_CRM_PROPERTY,
    Archive,
    MappedRecord,
    RecordFacts,
    Skip,
    Write,
    apply_mappings,
    cleared_properties,
    decide,
    fingerprint,
    retries_exhausted,
)
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.links import Link, Links, link_after
from dealbooks_sync.mapping_sets import MappingSet, MappingSets
from dealbooks_sync.outcomes import Outcomes, RecordFailed, audit_outcome


@dataclass
class SyncDeps:
    """What the record sync needs, built once by the service's composition root."""

    kind: RecordKind
    db: AsyncDatabase[dict[str, Any]]
    qbo: QboClient
    crm: CrmClient
    publisher: EventPublisher
    source: str
    # The audit trail of each record's syncs (none: not recorded).
    audit: Audit | None = None

    def __post_init__(self) -> None:
        self.sets = MappingSets(self.db)
        self.links = Links(self.db)
        self.crm_properties = CrmProperties(self.crm, self.sets)


def mapped_record(
    kind: RecordKind, mset: MappingSet, qbo_id: str, entity: dict[str, Any]
) -> tuple[MappedRecord, str, dict[str, str]]:
    """What `mset` writes for one QBO record, its upsert key, and the CRM properties with the
    link property; RecordFailed for a value no mapping can write or a record without a key."""
    mapped = apply_mappings(kind.object_type, entity, mset.mappings)
    if mapped.errors:
        mapping_id, message = next(iter(mapped.errors.items()))
        prop = next((m.crm_property for m in mset.mappings if m.mapping_id == mapping_id), None)
        raise RecordFailed(
            SyncFailureCode.INVALID_VALUE, message, mapping_id=mapping_id, crm_property=prop
        )
    key = kind.key_of(qbo_id, mapped)
    if not key:
        required = REQUIRED_CRM_PROPERTY[kind.object_type]
        mapping = mset.mapping_for(required)
        raise RecordFailed(
            SyncFailureCode.MISSING_KEY,
            f"it has no {required}, and {kind.crm_object} are matched by {kind.upsert_property}",
            mapping_id=mapping.mapping_id if mapping else None,
            crm_property=kind.upsert_property,
        )
    return mapped, key, {**mapped.properties, kind.link_property: qbo_id}


class RecordSync:
    """Syncs one QBO record to the CRM per `qbo.entity-changed`, under the account's settings.
    `trigger` is what its outcomes say started them (a webhook, or a reconciliation pass
    feeding CDC changes through the same path)."""

    def __init__(self, deps: SyncDeps, trigger: SyncTrigger = SyncTrigger.WEBHOOK) -> None:
        self.deps = deps
        self.kind = deps.kind
        self.trigger = trigger

    async def on_mapping_changed(self, event: Envelope[MappingChanged]) -> None:
        """Store a newer mapping version and make sure the portal has dealbooks' properties."""
        if event.data.object_type is not self.kind.object_type:
            return
        realm = event.tenant.require_account_id()
        stored = await self.deps.sets.get(realm, self.kind.object_type)
        ready = stored is not None and stored.crm_ready
        # The properties exist before the version is visible, so syncs and backfills of this
        # version never pay for creating them.
        if event.data.settings.enabled and not ready:
            creating = self.deps.crm_properties.create(self.kind, event.tenant.portal_id)
            try:
                await creating
            except CrmPortalNotConfigured:
                # Keep the version, so each record fails for this reason (and says so) instead
                # of waiting for mappings; the event is dead-lettered with the same reason.
                await self.deps.sets.apply(event, crm_ready=False)
                raise
            ready = True
        await self.deps.sets.apply(event, crm_ready=ready)

    async def on_entity_changed(self, event: Envelope[QboEntityChanged]) -> None:
        """Decode, decide (domain), write the CRM, remember the link, publish the outcome."""
        change = event.data
        if change.entity != self.kind.qbo_entity:
            return
        mset = await self.deps.sets.get(change.realm_id, self.kind.object_type)
        if mset is None:
            # mapping-registry publishes defaults when the account connects; wait for them.
            raise TransientError(f"no mappings received yet for account {change.realm_id}")
        if change.operation is QboOperation.MERGE and change.deleted_id:
            await self._sync_one(event, mset, change.deleted_id, merged_away=True)
        await self._sync_one(
            event, mset, change.entity_id, deleted=change.operation is QboOperation.DELETE
        )

    async def on_gave_up(self, event: Envelope[QboEntityChanged], gave_up: GaveUp) -> None:
        """The consumer dead-lettered a change after temporary failures outlasted the retries:
        tell the user, as a permanent `*.sync-failed` the mapping status shows. (Permanent
        failures were published when they happened.)"""
        change = event.data
        if gave_up.permanent or change.entity != self.kind.qbo_entity:
            return
        mset = await self.deps.sets.get(change.realm_id, self.kind.object_type)
        error = gave_up.error
        message = retries_exhausted(
            gave_up.attempts, str(error) if error is not None else gave_up.reason
        )
        failed = self.kind.outcomes.failed(
            qbo_id=change.entity_id,
            crm_id=None,
            code=SyncFailureCode.RETRIES_EXHAUSTED,
            message=message,
            trigger=SyncTrigger.WEBHOOK,
            permanent=True,
            mapping_version=mset.version if mset else None,
            mapping_id=None,
            crm_property=None,
            attempts=gave_up.attempts,
        )
        await self._publish(event, failed)

    async def _sync_one(
        self,
        event: Envelope[Any],
        mset: MappingSet,
        qbo_id: str,
        *,
        merged_away: bool = False,
        deleted: bool = False,
    ) -> None:
        try:
            outcome = await crm_configured(
                self._decide_and_write(mset, qbo_id, merged_away, deleted)
            )
        except RecordFailed as failed:
            payload = self._outcomes(mset).failed(qbo_id, failed)
            await self._publish(event, payload)
            await self._audit(event, mset, qbo_id, payload)
            raise PermanentError(f"{self.kind.qbo_entity} {qbo_id}: {failed.message}") from failed
        await self._publish(event, outcome)
        await self._audit(event, mset, qbo_id, outcome)

    async def _audit(
        self, cause: Envelope[Any], mset: MappingSet, qbo_id: str, outcome: EventPayload
    ) -> None:
        if self.deps.audit is not None:
            await audit_outcome(self.deps.audit, self.kind, cause, mset, qbo_id, outcome)

    async def _decide_and_write(
        self, mset: MappingSet, qbo_id: str, merged_away: bool, deleted: bool
    ) -> EventPayload:
        outcomes = self._outcomes(mset)
        link = await self.deps.links.get(mset.realm_id, qbo_id)
        linked = link is not None and not link.archived
        if not mset.settings.enabled:
            return outcomes.skipped(qbo_id, None, Skip("sync is switched off"))
        entity: dict[str, Any] | None = None
        active = not deleted
        created_at = None
        if not (merged_away or deleted):
            model = await self._fetch(mset.realm_id, qbo_id)
            entity = model.to_qbo()
            active = entity.get("Active") is not False
            created_at = model.MetaData.CreateTime if model.MetaData else None
        facts = RecordFacts(
            active=active, created_at=created_at, linked=linked, merged_away=merged_away
        )
        decision = decide(mset.settings, facts)
        if isinstance(decision, Skip):
            return outcomes.skipped(qbo_id, link.crm_id if link else None, decision)
        portal = self.deps.crm.portal(mset.portal_id)
        if isinstance(decision, Archive):
            assert link is not None
            await crm_call(portal.archive(self.kind.crm_object, link.crm_id))
            archived = dataclasses.replace(link, archived=True)
            await self.deps.links.save(mset.realm_id, [archived], mset.version)
            return outcomes.synced(qbo_id, link.crm_id, SyncAction.ARCHIVED)
        assert entity is not None and isinstance(decision, Write)
        return await self._write(portal, mset, qbo_id, entity, link if linked else None, decision)

    async def _write(
        self,
        portal: PortalCrm,
        mset: MappingSet,
        qbo_id: str,
        entity: dict[str, Any],
        link: Link | None,
        decision: Write,
    ) -> EventPayload:
        outcomes = self._outcomes(mset)
        await self.deps.crm_properties.ensure(self.kind, mset)
        mapped, key, properties = mapped_record(self.kind, mset, qbo_id, entity)
        digest = fingerprint(properties)
        if link is not None and link.fingerprint == digest:
            return outcomes.synced(qbo_id, link.crm_id, SyncAction.UNCHANGED, mapped.written)
        crm_object: CrmObject | None = None
        cleared: dict[str, str] = {}
        if link is not None:
            cleared = cleared_properties(mset.mappings, mapped, link.written)
            crm_object = await self._update(portal, link.crm_id, {**properties, **emptied(cleared)})
            if crm_object is None:
                cleared = {}  # the record is gone: the new one has nothing to clear
        if crm_object is None and not decision.create_allowed:
            existing = await self._find(portal, key)
            if existing is None:
                reason = "no CRM record to update and the policy is 'update existing only'"
                return outcomes.skipped(qbo_id, None, Skip(reason))
            crm_object = await self._update(portal, existing.id, properties)
        action = SyncAction.UPDATED
        if crm_object is None:
            crm_object = await self._upsert(portal, key, properties)
            action = SyncAction.CREATED if crm_object.new else SyncAction.UPDATED
        new_link = link_after(qbo_id, crm_object.id, key, properties)
        await self.deps.links.save(mset.realm_id, [new_link], mset.version)
        written = [*mapped.written, *cleared.values()]
        return outcomes.synced(qbo_id, crm_object.id, action, written)

    async def _fetch(self, realm_id: str, qbo_id: str) -> Entity:
        try:
            return await self.deps.qbo.company(realm_id).read(self.kind.qbo_model, qbo_id)
        except NotFound as exc:
            raise RecordFailed(
                SyncFailureCode.QBO_ENTITY_NOT_FOUND,
                f"QuickBooks has no {self.kind.qbo_entity} {qbo_id}",
            ) from exc
        except QboError as exc:
            if not refused(exc):
                raise
            raise RecordFailed(SyncFailureCode.QBO_ENTITY_NOT_FOUND, f"QuickBooks: {exc}") from exc

    async def _update(
        self, portal: PortalCrm, crm_id: str, properties: dict[str, str]
    ) -> CrmObject | None:
        """PATCH by CRM id (so a changed email moves with the contact); None if it is gone."""
        try:
            return await crm_call(portal.update(self.kind.crm_object, crm_id, properties))
        except CrmNotFound:
            return None

    async def _find(self, portal: PortalCrm, key: str) -> CrmObject | None:
        try:
            return await crm_call(
                portal.get(self.kind.crm_object, key, id_property=self.kind.upsert_property)
            )
        except CrmNotFound:
            return None

    async def _upsert(self, portal: PortalCrm, key: str, properties: dict[str, str]) -> CrmObject:
        """Create the record, or update the one the CRM finds by `key`."""
        upserted = await crm_call(
            portal.batch_upsert(
                self.kind.crm_object, self.kind.upsert_property, [(key, properties)]
            )
        )
        if upserted.errors or not upserted.results:
            message = upserted.errors[0].message if upserted.errors else "no result"
            raise RecordFailed(SyncFailureCode.CRM_REJECTED, f"the CRM refused it: {message}")
        return upserted.results[0]

    def _outcomes(self, mset: MappingSet) -> Outcomes:
        return Outcomes(self.kind, mset, self.trigger)

    async def _publish(self, cause: Envelope[Any], payload: EventPayload) -> None:
        await self.deps.publisher.publish(
            Envelope.build(payload, source=self.deps.source, caused_by=cause)
        )
