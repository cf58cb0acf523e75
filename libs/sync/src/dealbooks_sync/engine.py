"""The QBO -> CRM record sync both contact-sync and product-sync run: the mapping sets they
received, the links they made, one record synced per `qbo.entity-changed`, and the batched
backfill. What differs per object type is a `RecordKind`; the rules live in `domain`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from dealbooks_contracts import (
    Envelope,
    EventPayload,
    FieldMapping,
    MappingChanged,
    QboEntityChanged,
    QboOperation,
    SyncAction,
    SyncFailureCode,
    SyncObjectType,
    SyncSettings,
    SyncTrigger,
    Tenant,
)
from dealbooks_crm import (
    CrmClient,
    CrmError,
    CrmNotFound,
    CrmObject,
    PortalCrm,
    PropertyDefinition,
)
from dealbooks_kit import (
    Audit,
    CrmPortalNotConfigured,
    EventPublisher,
    Failure,
    GaveUp,
    IndexSpec,
    PermanentError,
    TransientError,
    classify,
    external_call,
    get_logger,
)
from dealbooks_kit.periodic import process_holder
from dealbooks_qbo import Entity, NotFound, QboClient, QboError
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from dealbooks_sync.domain import (
    DEALBOOKS_PROPERTY_GROUP,
    OWNED_PROPERTIES,
    REQUIRED_CRM_PROPERTY,
    Archive,
    MappedRecord,
    RecordFacts,
    RecordOutcomes,
    Skip,
    Write,
    apply_mappings,
    cleared_properties,
    decide,
    fingerprint,
    retries_exhausted,
)
from dealbooks_sync.runs import (
    CAP_REACHED,
    COUNTS,
    DONE,
    FAILED,
    PAUSED,
    PLANNED,
    RUNNING,
    BackfillBusy,
    BackfillRuns,
    Caps,
    public,
)
from dealbooks_sync.runs import now as runs_now

log = get_logger(__name__)
T = TypeVar("T")

QBO_PAGE_SIZE = 1000
MAX_BATCH = 100  # records per CRM batch call
INDEXES = (
    IndexSpec("links", [("realm_id", 1), ("crm_id", 1)]),
    IndexSpec("backfills", [("realm_id", 1), ("started_at", -1)]),
    IndexSpec("backfills", [("run_id", 1)]),
)
"""The indexes a sync service declares (its `_id`s carry the natural keys)."""


@dataclass(frozen=True)
class RecordKind:
    """How one QBO entity maps onto one CRM object type."""

    object_type: SyncObjectType
    qbo_entity: str
    qbo_model: type[Entity]
    crm_object: str
    link_property: str
    upsert_property: str
    key_of: Callable[[str, MappedRecord], str | None]
    outcomes: RecordOutcomes

    def property_definitions(self) -> list[PropertyDefinition]:
        """The dealbooks-owned CRM properties this kind writes."""
        defs = []
        for prop in OWNED_PROPERTIES[self.object_type]:
            fields: dict[str, Any] = {
                "name": prop.name,
                "label": prop.label,
                "type": prop.type,
                "fieldType": "booleancheckbox" if prop.type == "bool" else "text",
                "groupName": DEALBOOKS_PROPERTY_GROUP,
            }
            if prop.name == self.upsert_property or prop.name == self.link_property:
                fields["hasUniqueValue"] = True
            defs.append(PropertyDefinition.model_validate(fields))
        return defs


# ---- state ---------------------------------------------------------------------------------


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


# ---- errors --------------------------------------------------------------------------------


class RecordFailed(Exception):
    """A record cannot be synced as things stand; published as `*.sync-failed`."""

    def __init__(
        self,
        code: SyncFailureCode,
        message: str,
        *,
        mapping_id: str | None = None,
        crm_property: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.mapping_id = mapping_id
        self.crm_property = crm_property


def _refused(exc: BaseException) -> bool:
    """Whether the kit's failure policy calls `exc` invalid input: such a record fails, and
    says so in its sync status; every other failure goes to the consumer's policy as it is
    (retried, the tenant paused, settled)."""
    return classify(exc) is Failure.INVALID_INPUT


# ---- one record ------------------------------------------------------------------------------


class CrmProperties:
    """Creates the dealbooks-owned properties in a portal once per account and object type."""

    def __init__(self, crm: CrmClient, sets: MappingSets) -> None:
        self._crm = crm
        self._sets = sets

    async def create(self, kind: RecordKind, portal_id: str) -> None:
        """Create the group and properties the portal lacks (idempotent)."""
        portal = self._crm.portal(portal_id)
        await portal.ensure_property_group(kind.crm_object, DEALBOOKS_PROPERTY_GROUP, "dealbooks")
        await portal.ensure_properties(kind.crm_object, kind.property_definitions())

    async def ensure(self, kind: RecordKind, mset: MappingSet) -> None:
        if mset.crm_ready:
            return
        await self.create(kind, mset.portal_id)
        await self._sets.mark_crm_ready(mset.realm_id, kind.object_type)


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
            outcome = await _crm_configured(
                self._decide_and_write(mset, qbo_id, merged_away, deleted)
            )
        except RecordFailed as failed:
            payload = self._failed(mset, qbo_id, failed)
            await self._publish(event, payload)
            await self._audit(event, mset, qbo_id, payload)
            raise PermanentError(f"{self.kind.qbo_entity} {qbo_id}: {failed.message}") from failed
        await self._publish(event, outcome)
        await self._audit(event, mset, qbo_id, outcome)

    async def _audit(
        self, cause: Envelope[Any], mset: MappingSet, qbo_id: str, outcome: EventPayload
    ) -> None:
        """One entry per record and causing change: what the sync did (or why it did not),
        the CRM record it wrote, and under which mapping version."""
        if self.deps.audit is None:
            return
        facts = outcome.model_dump(mode="json")
        crm_kind = self.kind.crm_object.rstrip("s")  # contact, product
        crm_id = facts.get(f"crm_{crm_kind}_id")
        code = facts.get("code")
        done = "failed" if code else str(facts.get("action"))
        kept = {"trigger", "mapping_version", "mapping_ids", "skipped_reason", "code", "message"}
        detail = {key: value for key, value in facts.items() if key in kept and value}
        detail["crm_id"] = crm_id
        call = _CALLS.get(done)
        if crm_id and call:
            method, path = call
            detail["call"] = external_call(
                "crm", method, path.format(object=self.kind.crm_object, id=crm_id)
            )
        related = [f"{crm_kind}:{mset.portal_id}:{crm_id}"] if crm_id else []
        await self.deps.audit.record(
            self.kind.qbo_entity.lower(),
            f"{mset.realm_id}:{qbo_id}",
            cause.tenant,
            cause,
            f"{crm_kind}.{done}",
            detail,
            result="failed" if code else "ok",
            related=related,
        )

    async def _decide_and_write(
        self, mset: MappingSet, qbo_id: str, merged_away: bool, deleted: bool
    ) -> EventPayload:
        link = await self.deps.links.get(mset.realm_id, qbo_id)
        linked = link is not None and not link.archived
        if not mset.settings.enabled:
            return self._outcome(mset, qbo_id, None, Skip("sync is switched off"))
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
            return self._outcome(mset, qbo_id, link.crm_id if link else None, decision)
        portal = self.deps.crm.portal(mset.portal_id)
        if isinstance(decision, Archive):
            assert link is not None
            await _crm_call(portal.archive(self.kind.crm_object, link.crm_id))
            archived = dataclasses.replace(link, archived=True)
            await self.deps.links.save(mset.realm_id, [archived], mset.version)
            return self._synced(mset, qbo_id, link.crm_id, SyncAction.ARCHIVED)
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
        await self.deps.crm_properties.ensure(self.kind, mset)
        mapped, key, properties = self._mapped(mset, qbo_id, entity)
        digest = fingerprint(properties)
        if link is not None and link.fingerprint == digest:
            return self._synced(mset, qbo_id, link.crm_id, SyncAction.UNCHANGED, mapped.written)
        crm_object: CrmObject | None = None
        cleared: dict[str, str] = {}
        if link is not None:
            cleared = cleared_properties(mset.mappings, mapped, link.written)
            crm_object = await self._update(portal, link.crm_id, {**properties, **_clear(cleared)})
            if crm_object is None:
                cleared = {}  # the record is gone: the new one has nothing to clear
        if crm_object is None and not decision.create_allowed:
            existing = await self._find(portal, key)
            if existing is None:
                reason = "no CRM record to update and the policy is 'update existing only'"
                return self._outcome(mset, qbo_id, None, Skip(reason))
            crm_object = await self._update(portal, existing.id, properties)
        action = SyncAction.UPDATED
        if crm_object is None:
            upserted = await _crm_call(
                portal.batch_upsert(
                    self.kind.crm_object, self.kind.upsert_property, [(key, properties)]
                )
            )
            if upserted.errors or not upserted.results:
                message = upserted.errors[0].message if upserted.errors else "no result"
                raise RecordFailed(SyncFailureCode.CRM_REJECTED, f"the CRM refused it: {message}")
            crm_object = upserted.results[0]
            action = SyncAction.CREATED if crm_object.new else SyncAction.UPDATED
        new_link = _link(qbo_id, crm_object.id, key, properties)
        await self.deps.links.save(mset.realm_id, [new_link], mset.version)
        written = [*mapped.written, *cleared.values()]
        return self._synced(mset, qbo_id, crm_object.id, action, written)

    def _mapped(
        self, mset: MappingSet, qbo_id: str, entity: dict[str, Any]
    ) -> tuple[MappedRecord, str, dict[str, str]]:
        mapped = apply_mappings(self.kind.object_type, entity, mset.mappings)
        if mapped.errors:
            mapping_id, message = next(iter(mapped.errors.items()))
            prop = next((m.crm_property for m in mset.mappings if m.mapping_id == mapping_id), None)
            raise RecordFailed(
                SyncFailureCode.INVALID_VALUE, message, mapping_id=mapping_id, crm_property=prop
            )
        key = self.kind.key_of(qbo_id, mapped)
        if not key:
            required = REQUIRED_CRM_PROPERTY[self.kind.object_type]
            mapping = mset.mapping_for(required)
            raise RecordFailed(
                SyncFailureCode.MISSING_KEY,
                f"it has no {required}, and {self.kind.crm_object} are matched by "
                f"{self.kind.upsert_property}",
                mapping_id=mapping.mapping_id if mapping else None,
                crm_property=self.kind.upsert_property,
            )
        return mapped, key, {**mapped.properties, self.kind.link_property: qbo_id}

    async def _fetch(self, realm_id: str, qbo_id: str) -> Entity:
        try:
            return await self.deps.qbo.company(realm_id).read(self.kind.qbo_model, qbo_id)
        except NotFound as exc:
            raise RecordFailed(
                SyncFailureCode.QBO_ENTITY_NOT_FOUND,
                f"QuickBooks has no {self.kind.qbo_entity} {qbo_id}",
            ) from exc
        except QboError as exc:
            if not _refused(exc):
                raise
            raise RecordFailed(SyncFailureCode.QBO_ENTITY_NOT_FOUND, f"QuickBooks: {exc}") from exc

    async def _update(
        self, portal: PortalCrm, crm_id: str, properties: dict[str, str]
    ) -> CrmObject | None:
        """PATCH by CRM id (so a changed email moves with the contact); None if it is gone."""
        try:
            return await _crm_call(portal.update(self.kind.crm_object, crm_id, properties))
        except CrmNotFound:
            return None

    async def _find(self, portal: PortalCrm, key: str) -> CrmObject | None:
        try:
            return await _crm_call(
                portal.get(self.kind.crm_object, key, id_property=self.kind.upsert_property)
            )
        except CrmNotFound:
            return None

    def _outcome(
        self, mset: MappingSet, qbo_id: str, crm_id: str | None, skip: Skip
    ) -> EventPayload:
        return self.kind.outcomes.synced(
            qbo_id=qbo_id,
            crm_id=crm_id,
            action=SyncAction.SKIPPED,
            trigger=self.trigger,
            mapping_version=mset.version,
            mapping_ids=[],
            skipped_reason=skip.reason,
        )

    def _synced(
        self,
        mset: MappingSet,
        qbo_id: str,
        crm_id: str | None,
        action: SyncAction,
        written: Sequence[str] = (),
        trigger: SyncTrigger | None = None,
    ) -> EventPayload:
        return self.kind.outcomes.synced(
            qbo_id=qbo_id,
            crm_id=crm_id,
            action=action,
            trigger=trigger or self.trigger,
            mapping_version=mset.version,
            mapping_ids=list(written),
            skipped_reason=None,
        )

    def _failed(
        self,
        mset: MappingSet,
        qbo_id: str,
        failed: RecordFailed,
        trigger: SyncTrigger | None = None,
    ) -> EventPayload:
        return self.kind.outcomes.failed(
            qbo_id=qbo_id,
            crm_id=None,
            code=failed.code,
            message=failed.message,
            trigger=trigger or self.trigger,
            permanent=True,
            mapping_version=mset.version,
            mapping_id=failed.mapping_id,
            crm_property=failed.crm_property,
        )

    async def _publish(self, cause: Envelope[Any], payload: EventPayload) -> None:
        await self.deps.publisher.publish(
            Envelope.build(payload, source=self.deps.source, caused_by=cause)
        )


# The CRM call a created or archived record was written with, as its audit entry names it (an
# update is a PATCH by id or an upsert by key, whichever found the record).
_CALLS = {
    "created": ("POST", "/crm/v3/objects/{object}/batch/upsert"),
    "archived": ("DELETE", "/crm/v3/objects/{object}/{id}"),
}


def _link(qbo_id: str, crm_id: str, key: str, properties: dict[str, str]) -> Link:
    """The link after writing `properties` (without the cleared ones) to CRM record `crm_id`."""
    return Link(qbo_id, crm_id, key, fingerprint(properties), False, tuple(sorted(properties)))


def _clear(cleared: dict[str, str]) -> dict[str, str]:
    """The CRM clears a property given an empty string."""
    return dict.fromkeys(cleared, "")


async def _crm_call(call: Awaitable[T]) -> T:
    """Run a CRM call, sorting its failure into retry-later or tell-the-user."""
    try:
        return await call
    except CrmNotFound:
        raise
    except CrmError as exc:
        if not _refused(exc):
            raise
        raise RecordFailed(SyncFailureCode.CRM_REJECTED, f"the CRM refused it: {exc}") from exc


async def _crm_configured(call: Awaitable[T]) -> T:
    """Run `call`; a portal dealbooks has no CRM token for fails the record, permanently."""
    try:
        return await call
    except CrmPortalNotConfigured as exc:
        raise RecordFailed(SyncFailureCode.CRM_NOT_CONNECTED, exc.reason) from exc


# ---- backfill ----------------------------------------------------------------------------------


class BackfillRefused(Exception):
    """The account's settings do not allow a backfill (a sentence for the operator)."""


@dataclass
class BackfillReport:
    """Progress and result of one backfill run."""

    run_id: str
    realm_id: str
    object_type: str
    state: str = RUNNING
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, run: dict[str, Any]) -> BackfillReport:
        fields: dict[str, Any] = {k: run.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class BackfillLimits:
    """How a backfill pages, caps and leases (from the service's settings)."""

    default_caps: Caps = dataclasses.field(default_factory=lambda: Caps(qbo=10_000, crm=100_000))
    page_size: int = QBO_PAGE_SIZE
    lease_seconds: float = 60.0


@dataclass
class _Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass
class _PagePlan:
    """What one page of QBO records asks of the CRM, decided before anything is written."""

    links: dict[str, Link]
    counts: _Counts
    events: list[EventPayload]
    pending: dict[str, tuple[str, dict[str, str], list[str]]]
    updates: list[tuple[str, str, dict[str, str], list[str]]]
    clears: dict[str, dict[str, str]]  # by QBO id: what QBO emptied since last time

    @property
    def crm_calls(self) -> int:
        return -(-len(self.pending) // MAX_BATCH) + -(-len(self.updates) // MAX_BATCH)


class Backfill:
    """Operator-started sync of records that existed before sync was switched on.

    Reads QBO with paged queries (1,000 per call) and writes the CRM with batch upserts
    (100 per call); both clients keep inside their API's rate limits. A run is durable
    (`dealbooks_sync.runs`): its cursor is the STARTPOSITION of the next page not yet
    written, saved after each page, so a run taken over after its holder died re-reads at
    most one page, whose records the links' fingerprints make unchanged. It counts its calls
    and pauses before a page would take it over either cap.
    """

    def __init__(
        self, deps: SyncDeps, limits: BackfillLimits | None = None, holder: str | None = None
    ) -> None:
        self.deps = deps
        self.kind = deps.kind
        self.limits = limits or BackfillLimits()
        self.runs = BackfillRuns(deps.db, self.kind.object_type.value, holder or process_holder())
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def _ready_set(self, realm_id: str) -> MappingSet:
        mset = await self.deps.sets.get(realm_id, self.kind.object_type)
        if mset is None:
            raise BackfillRefused(f"account {realm_id} has no mappings yet")
        if not mset.settings.enabled:
            raise BackfillRefused("sync is switched off for this account")
        if mset.settings.create_update_policy.value != "create_and_update":
            raise BackfillRefused(
                "a backfill creates CRM records; the create-and-update policy does not allow it"
            )
        return mset

    def caps(self, max_qbo_calls: int | None = None, max_crm_calls: int | None = None) -> Caps:
        """The caps asked for, the settings' defaults for those not given."""
        default = self.limits.default_caps
        return Caps(
            qbo=default.qbo if max_qbo_calls is None else max_qbo_calls,
            crm=default.crm if max_crm_calls is None else max_crm_calls,
        )

    async def dry_run(self, realm_id: str, caps: Caps | None = None) -> dict[str, Any]:
        """The plan: how many QBO records a run would read and the calls it would make (one
        COUNT query), writing nothing."""
        mset = await self._ready_set(realm_id)
        caps = caps or self.caps()
        count = await self.deps.qbo.company(realm_id).count(self.kind.qbo_entity)
        linked = await self.deps.db["links"].count_documents(
            {"realm_id": realm_id, "archived": False}
        )
        qbo_calls = -(-(count + 1) // self.limits.page_size)
        crm_calls = -(-count // MAX_BATCH)
        return {
            "state": PLANNED,
            "realm_id": realm_id,
            "object_type": self.kind.object_type.value,
            "records": count,
            "already_linked": linked,
            "qbo_calls": qbo_calls,
            "crm_calls": crm_calls,
            "caps": caps.as_doc(),
            "within_caps": qbo_calls <= caps.qbo and crm_calls <= caps.crm,
            "mapping_version": mset.version,
        }

    async def start(self, realm_id: str, caps: Caps | None = None) -> BackfillReport:
        """Start a run in the background; poll `status(realm_id)` or `report(run_id)`.
        BackfillBusy if the account has an active run."""
        mset = await self._ready_set(realm_id)
        run = await self.runs.create(
            realm_id, mset.portal_id, caps or self.caps(), self.limits.lease_seconds
        )
        self._launch(run)
        return BackfillReport.of(run)

    async def resume(self, realm_id: str, caps: Caps | None = None) -> dict[str, Any]:
        """Continue a paused run (or one whose holder died) from its cursor, with new caps
        if given. BackfillBusy if it runs elsewhere or there is nothing to resume."""
        await self._ready_set(realm_id)
        run = await self.runs.claim(realm_id, self.limits.lease_seconds, caps=caps)
        if run is None:
            raise BackfillBusy(
                "no paused backfill of this account, or it is running",
                await self.runs.current(realm_id),
            )
        self._launch(run)
        return public(run)

    async def cancel(self, realm_id: str) -> dict[str, Any] | None:
        """Cancel the account's active run; None if there is none."""
        run = await self.runs.cancel(realm_id)
        task = self._tasks.get(realm_id)
        if task is not None:
            task.cancel()
        return public(run) if run else None

    async def status(self, realm_id: str) -> dict[str, Any] | None:
        """The account's latest run."""
        run = await self.runs.current(realm_id)
        return public(run) if run else None

    async def report(self, run_id: str) -> dict[str, Any] | None:
        run = await self.runs.by_run_id(run_id)
        return public(run) if run else None

    async def resume_abandoned(self) -> int:
        """The periodic check: take over every running run whose holder's lease expired."""
        taken = 0
        for realm_id in await self.runs.abandoned():
            run = await self.runs.claim(realm_id, self.limits.lease_seconds)
            if run is not None:
                log.info("backfill taken over", realm_id=realm_id, run_id=run["run_id"])
                self._launch(run)
                taken += 1
        return taken

    async def catch_up(self, portal_id: str) -> list[BackfillReport]:
        """The app is back in a portal after an uninstall: what changed in QuickBooks
        meanwhile never reached its CRM, so every account whose sync would create and update
        records is backfilled again (in the background). Others are left as they are: their
        policy forbids what a backfill does; their next changes sync as usual."""
        started = []
        for realm_id in await self.deps.sets.realms_of_portal(portal_id, self.kind.object_type):
            try:
                started.append(await self.start(realm_id))
            except (BackfillRefused, BackfillBusy) as refused:
                log.info("not caught up after reinstall", realm_id=realm_id, reason=str(refused))
        return started

    async def run(self, realm_id: str, caps: Caps | None = None) -> BackfillReport:
        """Run a backfill until it ends or pauses (the benchmark and tests wait for it)."""
        started = await self.start(realm_id, caps)
        await self.wait(realm_id)
        run = await self.runs.by_run_id(started.run_id)
        return BackfillReport.of(run or started.as_dict())

    async def wait(self, realm_id: str) -> None:
        """Until this process's drive of the account's run ends."""
        task = self._tasks.get(realm_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def stop(self, *, release: bool = True) -> None:
        """Stop driving runs here. `release` hands their leases back (a shutdown) so the next
        check resumes them at once; without it they expire (as if this process died)."""
        driving = dict(self._tasks)
        for task in driving.values():
            task.cancel()
        await asyncio.gather(*driving.values(), return_exceptions=True)
        if release:
            for realm_id in driving:
                run = await self.runs.current(realm_id)
                if run is not None:
                    await self.runs.release(run)

    def _launch(self, run: dict[str, Any]) -> None:
        realm_id = str(run["_id"])
        task = asyncio.create_task(self._drive(run), name=f"backfill {realm_id}")
        self._tasks[realm_id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(realm_id) is t:
                del self._tasks[realm_id]

        task.add_done_callback(done)

    async def _drive(self, run: dict[str, Any]) -> None:
        try:
            async with self._renewing(run):
                await self._pages(run)
        except asyncio.CancelledError:
            raise  # stopped or cancelled: the lease is left to expire or was released
        except Exception as exc:
            log.exception("backfill failed", run_id=run["run_id"])
            await self.runs.finish(
                run, FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=runs_now()
            )

    @contextlib.asynccontextmanager
    async def _renewing(self, run: dict[str, Any]) -> AsyncIterator[None]:
        """Keep the lease alive while a page takes longer than a fraction of it."""
        seconds = self.limits.lease_seconds

        async def renew() -> None:
            while True:
                await asyncio.sleep(seconds / 3)
                with contextlib.suppress(Exception):  # tried again at the next third
                    await self.runs.progress(run, seconds)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pages(self, run: dict[str, Any]) -> None:
        """Page after page from the cursor until a short page, a cap, or a cancel."""
        mset = await self._ready_set(str(run["_id"]))
        await self.deps.crm_properties.ensure(self.kind, mset)
        company = self.deps.qbo.company(mset.realm_id)
        caps, calls = Caps(**run["caps"]), dict(run["calls"])
        cursor, size = dict(run["cursor"]), self.limits.page_size
        counts = {k: int(run.get(k) or 0) for k in COUNTS}
        while True:
            if calls["qbo"] + 1 > caps.qbo:
                await self.runs.finish(run, PAUSED, reason=CAP_REACHED, calls=calls)
                return
            statement = f"SELECT * FROM {self.kind.qbo_entity} STARTPOSITION {cursor['start']} MAXRESULTS {size}"  # noqa: S608,E501 (QBO query, no input)
            page = await company.query_page(statement)
            calls["qbo"] += 1
            rows = [r for r in page.rows if isinstance(r, Entity)]
            plan = await self._plan(mset, rows)
            if calls["crm"] + plan.crm_calls > caps.crm:
                # Nothing of this page is written: the cursor stays before it.
                await self.runs.finish(run, PAUSED, reason=CAP_REACHED, calls=calls)
                return
            await self._write(mset, plan)
            calls["crm"] += plan.crm_calls
            for key in COUNTS:
                counts[key] += getattr(plan.counts, key)
            cursor = {
                "start": cursor["start"] + len(page.rows),
                "last_id": str(rows[-1].Id) if rows else cursor["last_id"],
            }
            progress = {"cursor": cursor, "calls": calls, **counts}
            if len(page.rows) < size:
                await self.runs.finish(run, DONE, finished_at=runs_now(), **progress)
                return
            if not await self.runs.progress(run, self.limits.lease_seconds, **progress):
                log.info("backfill stopped: cancelled or taken over", run_id=run["run_id"])
                return

    async def _plan(self, mset: MappingSet, rows: list[Entity]) -> _PagePlan:
        """Map one page of QBO records and sort them: unchanged, new or moved keys to upsert,
        known records to update, failures."""
        ids = [str(r.Id) for r in rows]
        plan = _PagePlan(
            await self.deps.links.get_many(mset.realm_id, ids), _Counts(), [], {}, [], {}
        )
        plan.counts.read = len(rows)
        syncer = RecordSync(self.deps)
        for row in rows:
            qbo_id = str(row.Id)
            try:
                mapped, key, properties = syncer._mapped(mset, qbo_id, row.to_qbo())
            except RecordFailed as failed:
                plan.counts.failed += 1
                plan.events.append(syncer._failed(mset, qbo_id, failed, SyncTrigger.BACKFILL))
                continue
            link = plan.links.get(qbo_id)
            if (
                link is not None
                and not link.archived
                and link.fingerprint == fingerprint(properties)
            ):
                plan.counts.unchanged += 1
                plan.events.append(
                    syncer._synced(
                        mset,
                        qbo_id,
                        link.crm_id,
                        SyncAction.UNCHANGED,
                        mapped.written,
                        SyncTrigger.BACKFILL,
                    )
                )
                continue
            written = mapped.written
            if link is not None and not link.archived:
                cleared = cleared_properties(mset.mappings, mapped, link.written)
                plan.clears[qbo_id] = _clear(cleared)
                written = [*written, *cleared.values()]
                if link.key.lower() != key.lower():
                    plan.updates.append((qbo_id, link.crm_id, properties, written))
                    continue
            # Two QBO records with one key (a shared email) become one CRM record.
            plan.pending[key.lower()] = (qbo_id, properties, written)
        return plan

    async def _write(self, mset: MappingSet, plan: _PagePlan) -> None:
        """Batch-upsert new and moved keys, batch-update the rest, link, publish."""
        syncer = RecordSync(self.deps)
        portal = self.deps.crm.portal(mset.portal_id)
        counts, events, clears = plan.counts, plan.events, plan.clears
        new_links: list[Link] = []
        if plan.pending:
            result = await portal.batch_upsert(
                self.kind.crm_object,
                self.kind.upsert_property,
                [(key, {**p, **clears.get(q, {})}) for key, (q, p, _) in plan.pending.items()],
            )
            by_key = {
                str(o.properties.get(self.kind.upsert_property) or "").lower(): o
                for o in result.results
            }
            for key, (qbo_id, props, written) in plan.pending.items():
                obj = by_key.get(key)
                if obj is None:
                    counts.failed += 1
                    message = result.errors[0].message if result.errors else "no result"
                    rejected = RecordFailed(SyncFailureCode.CRM_REJECTED, message)
                    events.append(syncer._failed(mset, qbo_id, rejected, SyncTrigger.BACKFILL))
                    continue
                action = SyncAction.CREATED if obj.new else SyncAction.UPDATED
                counts.created += action is SyncAction.CREATED
                counts.updated += action is SyncAction.UPDATED
                new_links.append(_link(qbo_id, obj.id, key, props))
                events.append(
                    syncer._synced(mset, qbo_id, obj.id, action, written, SyncTrigger.BACKFILL)
                )
        if plan.updates:
            await portal.batch_update(
                self.kind.crm_object,
                [(crm_id, {**props, **clears.get(q, {})}) for q, crm_id, props, _ in plan.updates],
            )
            for qbo_id, crm_id, props, written in plan.updates:
                counts.updated += 1
                key = self.kind.key_of(qbo_id, MappedRecord(props, written)) or qbo_id
                new_links.append(_link(qbo_id, crm_id, key, props))
                events.append(
                    syncer._synced(
                        mset, qbo_id, crm_id, SyncAction.UPDATED, written, SyncTrigger.BACKFILL
                    )
                )
        fresh = [x for x in new_links if x.qbo_id not in plan.links]
        known = [x for x in new_links if x.qbo_id in plan.links]
        await self.deps.links.save(mset.realm_id, known, mset.version, new=fresh)
        await self._publish_all(mset, events)

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
