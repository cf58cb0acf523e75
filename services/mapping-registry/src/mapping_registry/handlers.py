"""The registry's use cases: seed on connection, change mappings or settings (and announce the
new version), and count sync outcomes into each mapping's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dealbooks_contracts import (
    AccountConnected,
    ContactSynced,
    ContactSyncFailed,
    Envelope,
    ProductSynced,
    ProductSyncFailed,
    SyncObjectType,
    SyncSettings,
    Tenant,
)
from dealbooks_kit import Outbox, get_logger

from mapping_registry.domain import (
    CrmProperty,
    MappingSetState,
    Proposal,
    propose,
    seeded,
    status_deltas,
)
from mapping_registry.store import (
    MAPPING_VERSIONS,
    Accounts,
    MappingSets,
    MappingStatus,
    VersionConflict,
)

_OBJECT_OF = {
    ContactSynced: SyncObjectType.CONTACTS,
    ContactSyncFailed: SyncObjectType.CONTACTS,
    ProductSynced: SyncObjectType.PRODUCTS,
    ProductSyncFailed: SyncObjectType.PRODUCTS,
}

log = get_logger(__name__)


class UnknownAccount(Exception):
    """No QBO company with this realm id is connected."""


@dataclass
class Registry:
    """Mapping sets per account and object type, and the events announcing them."""

    accounts: Accounts
    sets: MappingSets
    status: MappingStatus
    outbox: Outbox
    source: str = "mapping-registry"

    async def on_account_connected(self, event: Envelope[AccountConnected]) -> None:
        """Seed default mappings for both object types; a reconnection keeps the portal's own."""
        realm = event.tenant.require_account_id()
        await self.accounts.upsert(realm, event.tenant.portal_id, event.data.company_name)
        for object_type in SyncObjectType:
            state = seeded(object_type)
            announced = Envelope.build(state.event(), source=self.source, caused_by=event)
            try:
                doc_id = await self.sets.insert(realm, state, announced)
            except VersionConflict:
                continue  # a reconnection: version 1 exists and the portal's own follow it
            await self.outbox.relay(MAPPING_VERSIONS, doc_id)

    async def on_outcome(
        self,
        event: Envelope[ContactSynced]
        | Envelope[ContactSyncFailed]
        | Envelope[ProductSynced]
        | Envelope[ProductSyncFailed],
    ) -> None:
        """Count one sync outcome into the status of the mappings it concerns, once per event
        however often it is delivered."""
        outcome = event.data
        deltas = status_deltas(outcome)
        if deltas:
            await self.status.record(
                event.tenant.require_account_id(),
                _OBJECT_OF[type(outcome)],
                str(event.id),
                deltas,
                event.occurred_at,
            )

    async def current(
        self, realm_id: str, object_type: SyncObjectType, expected_version: int | None = None
    ) -> MappingSetState:
        """The current version; `VersionConflict` if it is not `expected_version` (the one the
        caller's edit was based on)."""
        state = await self.sets.get(realm_id, object_type)
        if state is None:
            raise UnknownAccount(f"account {realm_id} is not connected")
        if expected_version is not None and state.version != expected_version:
            raise VersionConflict(
                f"the mappings changed meanwhile (version {state.version}, your edit was based "
                f"on version {expected_version}); reload them and try again"
            )
        return state

    async def change_mappings(
        self,
        realm_id: str,
        object_type: SyncObjectType,
        proposal: Proposal,
        crm_properties: dict[str, CrmProperty],
        expected_version: int | None = None,
    ) -> MappingSetState:
        """Validate and store a mapping change, then announce the new version."""
        state = await self.current(realm_id, object_type, expected_version)
        new_state = state.with_mappings(propose(state, proposal, crm_properties))
        await self._store(realm_id, new_state)
        return new_state

    async def change_settings(
        self,
        realm_id: str,
        object_type: SyncObjectType,
        proposed: SyncSettings,
        expected_version: int | None = None,
    ) -> MappingSetState:
        """Store new sync settings, then announce the new version."""
        state = await self.current(realm_id, object_type, expected_version)
        new_state = state.with_settings(proposed, datetime.now(UTC))
        await self._store(realm_id, new_state)
        return new_state

    async def _store(self, realm_id: str, state: MappingSetState) -> None:
        portal = await self.accounts.portal_of(realm_id)
        if portal is None:
            raise UnknownAccount(f"account {realm_id} is not connected")
        announced = Envelope.build(
            state.event(), source=self.source, tenant=Tenant(portal_id=portal, account_id=realm_id)
        )
        doc_id = await self.sets.insert(realm_id, state, announced)
        # Saved is what counts: if publishing fails now, the outbox's periodic pass retries.
        try:
            await self.outbox.relay(MAPPING_VERSIONS, doc_id)
        except Exception:
            log.warning("mapping.changed not published yet; the outbox pass retries", exc_info=True)
