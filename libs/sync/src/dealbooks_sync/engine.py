"""The QBO -> CRM record sync both contact-sync and product-sync run: the mapping sets they
received, the links they made, one record synced per `qbo.entity-changed`, and the batched
backfill. What differs per object type is a `RecordKind`; the rules live in `domain`."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
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
    CrmAuthError,
    CrmClient,
    CrmError,
    CrmNotFound,
    CrmObject,
    CrmRateLimited,
    CrmUnavailable,
    PortalCrm,
    PropertyDefinition,
)
from dealbooks_kit import (
    CrmPortalNotConfigured,
    EventPublisher,
    GaveUp,
    IndexSpec,
    PermanentError,
    TransientError,
    get_logger,
)
from dealbooks_qbo import AuthError, Entity, NotFound, QboClient, QboError, ServerError, Throttled
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

log = get_logger(__name__)
T = TypeVar("T")

QBO_PAGE_SIZE = 1000
INDEXES = (
    IndexSpec("links", [("realm_id", 1), ("crm_id", 1)]),
    IndexSpec("backfills", [("realm_id", 1), ("started_at", -1)]),
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


_TRANSIENT = (
    Throttled,
    ServerError,
    AuthError,
    CrmUnavailable,
    CrmRateLimited,
    CrmAuthError,
    httpx.TransportError,
)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, CrmRateLimited) and exc.policy_name == "DAILY":
        return False
    return isinstance(exc, _TRANSIENT)


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
                await _transient_on_failure(creating)
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
            await self._publish(event, self._failed(mset, qbo_id, failed))
            raise PermanentError(f"{self.kind.qbo_entity} {qbo_id}: {failed.message}") from failed
        await self._publish(event, outcome)

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
        await _transient_on_failure(self.deps.crm_properties.ensure(self.kind, mset))
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
            if _is_transient(exc):
                raise TransientError(f"QuickBooks: {exc}") from exc
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
        if _is_transient(exc):
            raise TransientError(f"CRM: {exc}") from exc
        raise RecordFailed(SyncFailureCode.CRM_REJECTED, f"the CRM refused it: {exc}") from exc


async def _crm_configured(call: Awaitable[T]) -> T:
    """Run `call`; a portal dealbooks has no CRM token for fails the record, permanently."""
    try:
        return await call
    except CrmPortalNotConfigured as exc:
        raise RecordFailed(SyncFailureCode.CRM_NOT_CONNECTED, exc.reason) from exc


async def _transient_on_failure(call: Awaitable[None]) -> None:
    try:
        await call
    except CrmError as exc:
        raise TransientError(f"CRM properties could not be prepared: {exc}") from exc


# ---- backfill ----------------------------------------------------------------------------------


class BackfillRefused(Exception):
    """The account's settings do not allow a backfill (a sentence for the operator)."""


@dataclass
class BackfillReport:
    """Progress and result of one backfill run."""

    run_id: str
    realm_id: str
    object_type: str
    state: str = "running"
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Backfill:
    """Operator-started sync of records that existed before sync was switched on.

    Reads QBO with paged queries (1,000 per call) and writes the CRM with batch upserts
    (100 per call); both clients keep inside their API's rate limits.
    """

    def __init__(self, deps: SyncDeps) -> None:
        self.deps = deps
        self.kind = deps.kind
        self._reports = deps.db["backfills"]
        self._tasks: set[asyncio.Task[None]] = set()

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

    async def dry_run(self, realm_id: str) -> dict[str, Any]:
        """How many QBO records a backfill would read (one COUNT query), writing nothing."""
        mset = await self._ready_set(realm_id)
        count = await self.deps.qbo.company(realm_id).count(self.kind.qbo_entity)
        linked = await self.deps.db["links"].count_documents(
            {"realm_id": realm_id, "archived": False}
        )
        return {
            "realm_id": realm_id,
            "object_type": self.kind.object_type.value,
            "records": count,
            "already_linked": linked,
            "qbo_calls": -(-(count + 1) // QBO_PAGE_SIZE),
            "crm_calls": -(-count // 100),
            "mapping_version": mset.version,
        }

    async def start(self, realm_id: str) -> BackfillReport:
        """Start a run in the background; poll `report(run_id)`."""
        mset = await self._ready_set(realm_id)
        report = BackfillReport(
            run_id=uuid.uuid4().hex,
            realm_id=realm_id,
            object_type=self.kind.object_type.value,
            started_at=datetime.now(UTC),
        )
        await self._save(report)
        task = asyncio.create_task(self._run(mset, report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return report

    async def catch_up(self, portal_id: str) -> list[BackfillReport]:
        """The app is back in a portal after an uninstall: what changed in QuickBooks
        meanwhile never reached its CRM, so every account whose sync would create and update
        records is backfilled again (in the background). Others are left as they are: their
        policy forbids what a backfill does; their next changes sync as usual."""
        started = []
        for realm_id in await self.deps.sets.realms_of_portal(portal_id, self.kind.object_type):
            try:
                started.append(await self.start(realm_id))
            except BackfillRefused as refused:
                log.info("not caught up after reinstall", realm_id=realm_id, reason=str(refused))
        return started

    async def run(self, realm_id: str) -> BackfillReport:
        """Run a backfill to the end (the benchmark and tests wait for it)."""
        mset = await self._ready_set(realm_id)
        report = BackfillReport(
            run_id=uuid.uuid4().hex,
            realm_id=realm_id,
            object_type=self.kind.object_type.value,
            started_at=datetime.now(UTC),
        )
        await self._run(mset, report)
        return report

    async def report(self, run_id: str) -> dict[str, Any] | None:
        doc = await self._reports.find_one({"_id": run_id})
        if doc is None:
            return None
        doc.pop("_id")
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in doc.items()}

    async def _save(self, report: BackfillReport) -> None:
        body = report.as_dict()
        await self._reports.update_one({"_id": report.run_id}, {"$set": body}, upsert=True)

    async def _run(self, mset: MappingSet, report: BackfillReport) -> None:
        try:
            await self.deps.crm_properties.ensure(self.kind, mset)
            company = self.deps.qbo.company(mset.realm_id)
            page: list[Entity] = []
            statement = f"SELECT * FROM {self.kind.qbo_entity}"  # noqa: S608 (QBO query, no input)
            async for row in company.query(statement, page_size=QBO_PAGE_SIZE):
                if isinstance(row, Entity):
                    page.append(row)
                if len(page) == QBO_PAGE_SIZE:
                    await self._page(mset, page, report)
                    page = []
            if page:
                await self._page(mset, page, report)
            report.state = "done"
        except Exception as exc:
            log.exception("backfill failed", run_id=report.run_id)
            report.state = "failed"
            report.error = f"{type(exc).__name__}: {exc}"
        report.finished_at = datetime.now(UTC)
        await self._save(report)

    async def _page(self, mset: MappingSet, rows: list[Entity], report: BackfillReport) -> None:
        """Sync one page of QBO records: map, batch-upsert new and moved keys, link, publish."""
        report.read += len(rows)
        ids = [str(r.Id) for r in rows]
        links = await self.deps.links.get_many(mset.realm_id, ids)
        events: list[EventPayload] = []
        pending: dict[str, tuple[str, dict[str, str], list[str]]] = {}
        updates: list[tuple[str, str, dict[str, str], list[str]]] = []
        clears: dict[str, dict[str, str]] = {}  # by QBO id: what QBO emptied since last time
        syncer = RecordSync(self.deps)
        for row in rows:
            qbo_id = str(row.Id)
            try:
                mapped, key, properties = syncer._mapped(mset, qbo_id, row.to_qbo())
            except RecordFailed as failed:
                report.failed += 1
                events.append(syncer._failed(mset, qbo_id, failed, SyncTrigger.BACKFILL))
                continue
            link = links.get(qbo_id)
            if (
                link is not None
                and not link.archived
                and link.fingerprint == fingerprint(properties)
            ):
                report.unchanged += 1
                events.append(
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
                clears[qbo_id] = _clear(cleared)
                written = [*written, *cleared.values()]
                if link.key.lower() != key.lower():
                    updates.append((qbo_id, link.crm_id, properties, written))
                    continue
            # Two QBO records with one key (a shared email) become one CRM record.
            pending[key.lower()] = (qbo_id, properties, written)
        portal = self.deps.crm.portal(mset.portal_id)
        new_links: list[Link] = []
        if pending:
            result = await portal.batch_upsert(
                self.kind.crm_object,
                self.kind.upsert_property,
                [(key, {**props, **clears.get(q, {})}) for key, (q, props, _) in pending.items()],
            )
            by_key = {
                str(o.properties.get(self.kind.upsert_property) or "").lower(): o
                for o in result.results
            }
            for key, (qbo_id, props, written) in pending.items():
                obj = by_key.get(key)
                if obj is None:
                    report.failed += 1
                    message = result.errors[0].message if result.errors else "no result"
                    rejected = RecordFailed(SyncFailureCode.CRM_REJECTED, message)
                    events.append(syncer._failed(mset, qbo_id, rejected, SyncTrigger.BACKFILL))
                    continue
                action = SyncAction.CREATED if obj.new else SyncAction.UPDATED
                report.created += action is SyncAction.CREATED
                report.updated += action is SyncAction.UPDATED
                new_links.append(_link(qbo_id, obj.id, key, props))
                events.append(
                    syncer._synced(mset, qbo_id, obj.id, action, written, SyncTrigger.BACKFILL)
                )
        if updates:
            await portal.batch_update(
                self.kind.crm_object,
                [(crm_id, {**props, **clears.get(q, {})}) for q, crm_id, props, _ in updates],
            )
            for qbo_id, crm_id, props, written in updates:
                report.updated += 1
                key = self.kind.key_of(qbo_id, MappedRecord(props, written)) or qbo_id
                new_links.append(_link(qbo_id, crm_id, key, props))
                events.append(
                    syncer._synced(
                        mset, qbo_id, crm_id, SyncAction.UPDATED, written, SyncTrigger.BACKFILL
                    )
                )
        fresh = [x for x in new_links if x.qbo_id not in links]
        known = [x for x in new_links if x.qbo_id in links]
        await self.deps.links.save(mset.realm_id, known, mset.version, new=fresh)
        await self._publish_all(mset, events)
        await self._save(report)

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
