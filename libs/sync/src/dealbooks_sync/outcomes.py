"""What a record sync says about each record: the `*.synced` and `*.sync-failed` payloads (in
the kind's words, `RecordOutcomes`), why a record failed (`RecordFailed`), and the audit entry
of each outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dealbooks_contracts import (
    Envelope,
    EventPayload,
    SyncAction,
    SyncFailureCode,
    SyncTrigger,
)
from dealbooks_kit import Audit, external_call

from dealbooks_sync.domain import Skip
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.mapping_sets import MappingSet


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


@dataclass(frozen=True)
class Outcomes:
    """The outcome payloads of `kind`'s records under mapping set `mset`, saying `trigger`
    started them (a webhook, a reconciliation pass or a backfill)."""

    kind: RecordKind
    mset: MappingSet
    trigger: SyncTrigger

    def skipped(self, qbo_id: str, crm_id: str | None, skip: Skip) -> EventPayload:
        return self.kind.outcomes.synced(
            qbo_id=qbo_id,
            crm_id=crm_id,
            action=SyncAction.SKIPPED,
            trigger=self.trigger,
            mapping_version=self.mset.version,
            mapping_ids=[],
            skipped_reason=skip.reason,
        )

    def synced(
        self, qbo_id: str, crm_id: str | None, action: SyncAction, written: Sequence[str] = ()
    ) -> EventPayload:
        return self.kind.outcomes.synced(
            qbo_id=qbo_id,
            crm_id=crm_id,
            action=action,
            trigger=self.trigger,
            mapping_version=self.mset.version,
            mapping_ids=list(written),
            skipped_reason=None,
        )

    def failed(self, qbo_id: str, failed: RecordFailed) -> EventPayload:
        return self.kind.outcomes.failed(
            qbo_id=qbo_id,
            crm_id=None,
            code=failed.code,
            message=failed.message,
            trigger=self.trigger,
            permanent=True,
            mapping_version=self.mset.version,
            mapping_id=failed.mapping_id,
            crm_property=failed.crm_property,
        )


# The CRM call a created or archived record was written with, as its audit entry names it (an
# update is a PATCH by id or an upsert by key, whichever found the record).
_CALLS = {
    "created": ("POST", "/crm/v3/objects/{object}/batch/upsert"),
    "archived": ("DELETE", "/crm/v3/objects/{object}/{id}"),
}


async def audit_outcome(
    audit: Audit,
    kind: RecordKind,
    cause: Envelope[Any],
    mset: MappingSet,
    qbo_id: str,
    outcome: EventPayload,
) -> None:
    """One entry per record and causing change: what the sync did (or why it did not), the CRM
    record it wrote, and under which mapping version."""
    facts = outcome.model_dump(mode="json")
    crm_kind = kind.crm_object.rstrip("s")  # contact, product
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
            "crm", method, path.format(object=kind.crm_object, id=crm_id)
        )
    related = [f"{crm_kind}:{mset.portal_id}:{crm_id}"] if crm_id else []
    await audit.record(
        kind.qbo_entity.lower(),
        f"{mset.realm_id}:{qbo_id}",
        cause.tenant,
        cause,
        f"{crm_kind}.{done}",
        detail,
        result="failed" if code else "ok",
        related=related,
    )
