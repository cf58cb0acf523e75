"""The registry's own rules: versions, seeding, what a proposed change would write (dry run)
and how sync outcomes count towards each mapping's status.

Mapping validation and transforms are shared with the sync services in
`dealbooks_sync.domain`, so the registry refuses exactly what the sync could not apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from dealbooks_contracts import (
    ContactSynced,
    ContactSyncFailed,
    FieldMapping,
    MappingChanged,
    MappingTransform,
    ProductSynced,
    ProductSyncFailed,
    SyncAction,
    SyncObjectType,
    SyncSettings,
)
from dealbooks_sync.domain import (
    CrmProperty,
    MappingProblem,
    MappingRejected,
    ProblemCode,
    add_mapping,
    apply_mappings,
    default_mappings,
    default_settings,
    delete_mapping,
    edit_mapping,
    settings_changed,
)

__all__ = [
    "RECORD_STATUS_KEY",
    "CrmProperty",
    "MappingProblem",
    "MappingRejected",
    "MappingSetState",
    "ProblemCode",
    "Proposal",
    "StatusDelta",
    "dry_run",
    "propose",
    "seeded",
    "status_deltas",
]

RECORD_STATUS_KEY = "*"
"""Status entry for failures no single mapping caused (e.g. the CRM refused the record)."""


@dataclass(frozen=True)
class MappingSetState:
    """The mappings and settings of one account and object type, at a version."""

    object_type: SyncObjectType
    version: int
    settings: SyncSettings
    mappings: list[FieldMapping]

    def event(self) -> MappingChanged:
        """The `mapping.changed` payload announcing this version."""
        return MappingChanged(
            object_type=self.object_type,
            version=self.version,
            settings=self.settings,
            mappings=self.mappings,
        )

    def with_mappings(self, mappings: Sequence[FieldMapping]) -> MappingSetState:
        return MappingSetState(self.object_type, self.version + 1, self.settings, list(mappings))

    def with_settings(self, proposed: SyncSettings, now: datetime) -> MappingSetState:
        settings = settings_changed(self.settings, proposed, now)
        return MappingSetState(self.object_type, self.version + 1, settings, self.mappings)


def seeded(object_type: SyncObjectType) -> MappingSetState:
    """Version 1 for a newly connected account: the default mappings, sync switched off."""
    return MappingSetState(object_type, 1, default_settings(), default_mappings(object_type))


@dataclass(frozen=True)
class Proposal:
    """A mapping change a portal admin asks for: add, edit or delete."""

    op: str
    mapping_id: str | None = None
    crm_property: str | None = None
    qbo_field: str | None = None
    transform: MappingTransform | None = None
    changes: dict[str, Any] = field(default_factory=dict)


def propose(
    state: MappingSetState, proposal: Proposal, crm_properties: Mapping[str, CrmProperty]
) -> list[FieldMapping]:
    """The mapping set after `proposal`; raises `MappingRejected` with every reason."""
    kind = state.object_type
    if proposal.op == "add":
        if not proposal.crm_property or not proposal.qbo_field:
            raise MappingRejected(
                [
                    MappingProblem(
                        ProblemCode.UNKNOWN_CRM_PROPERTY,
                        "A new mapping needs both crm_property and qbo_field.",
                    )
                ]
            )
        return add_mapping(
            kind,
            state.mappings,
            proposal.crm_property,
            proposal.qbo_field,
            proposal.transform,
            crm_properties,
        )
    if proposal.op == "edit":
        return edit_mapping(
            kind, state.mappings, proposal.mapping_id or "", proposal.changes, crm_properties
        )
    if proposal.op == "delete":
        return delete_mapping(kind, state.mappings, proposal.mapping_id or "")
    raise MappingRejected(
        [MappingProblem(ProblemCode.UNKNOWN_MAPPING, f"Unknown change '{proposal.op}'.")]
    )


def dry_run(
    object_type: SyncObjectType,
    records: Sequence[Mapping[str, Any]],
    current: Sequence[FieldMapping],
    proposed: Sequence[FieldMapping],
) -> list[dict[str, Any]]:
    """For each QBO record, what the current and the proposed mappings write, and the
    properties whose value would change."""
    out = []
    for record in records:
        before = apply_mappings(object_type, record, current)
        after = apply_mappings(object_type, record, proposed)
        names = sorted(set(before.properties) | set(after.properties))
        changes = {
            n: {"from": before.properties.get(n), "to": after.properties.get(n)}
            for n in names
            if before.properties.get(n) != after.properties.get(n)
        }
        out.append(
            {
                "qbo_id": str(record.get("Id")),
                "name": record.get("DisplayName") or record.get("Name"),
                "before": before.properties,
                "after": after.properties,
                "changes": changes,
                "errors": after.errors,
            }
        )
    return out


@dataclass(frozen=True)
class StatusDelta:
    """One increment of one mapping's status (or of the record-level entry)."""

    mapping_id: str
    ok: int = 0
    failed: int = 0
    error: str | None = None


SyncOutcome: TypeAlias = ContactSynced | ProductSynced | ContactSyncFailed | ProductSyncFailed


def status_deltas(outcome: SyncOutcome) -> list[StatusDelta]:
    """How one sync outcome counts: each mapping that wrote a value succeeded; a failure counts
    against the mapping at fault, or against the record when no mapping is."""
    if isinstance(outcome, ContactSynced | ProductSynced):
        if outcome.action in (SyncAction.SKIPPED, SyncAction.ARCHIVED):
            return []
        return [StatusDelta(m, ok=1) for m in outcome.mapping_ids]
    return [StatusDelta(outcome.mapping_id or RECORD_STATUS_KEY, failed=1, error=outcome.message)]
