"""How a record sync writes the CRM: the dealbooks-owned properties a portal needs first, and
each CRM call's failure sorted into retry-later or tell-the-user (`RecordFailed`)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from dealbooks_contracts import SyncFailureCode
from dealbooks_crm import CrmClient, CrmError, CrmNotFound
from dealbooks_kit import CrmPortalNotConfigured, Failure, classify

from dealbooks_sync.domain import DEALBOOKS_PROPERTY_GROUP
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.mapping_sets import MappingSet, MappingSets
from dealbooks_sync.outcomes import RecordFailed

T = TypeVar("T")


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


def refused(exc: BaseException) -> bool:
    """Whether the kit's failure policy calls `exc` invalid input: such a record fails, and
    says so in its sync status; every other failure goes to the consumer's policy as it is
    (retried, the tenant paused, settled)."""
    return classify(exc) is Failure.INVALID_INPUT


def emptied(cleared: dict[str, str]) -> dict[str, str]:
    """The CRM clears a property given an empty string."""
    return dict.fromkeys(cleared, "")


async def crm_call(call: Awaitable[T]) -> T:
    """Run a CRM call, sorting its failure into retry-later or tell-the-user."""
    try:
        return await call
    except CrmNotFound:
        raise
    except CrmError as exc:
        if not refused(exc):
            raise
        raise RecordFailed(SyncFailureCode.CRM_REJECTED, f"the CRM refused it: {exc}") from exc


async def crm_configured(call: Awaitable[T]) -> T:
    """Run `call`; a portal dealbooks has no CRM token for fails the record, permanently."""
    try:
        return await call
    except CrmPortalNotConfigured as exc:
        raise RecordFailed(SyncFailureCode.CRM_NOT_CONNECTED, exc.reason) from exc
