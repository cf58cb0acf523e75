"""What is particular to contacts: they are keyed by email, and carry the QBO customer id.

The shared rules (policies, mappings, transforms) live in `dealbooks_sync.domain`.
"""

from __future__ import annotations

from dealbooks_contracts import (
    ContactSynced,
    ContactSyncFailed,
    CreateUpdatePolicy,
    SyncAction,
    SyncFailureCode,
    SyncTrigger,
)
from dealbooks_sync.domain import MappedRecord

ContactSyncPolicy = CreateUpdatePolicy
"""The create-and-update policy, in contact words: `ContactSyncPolicy.CREATE_AND_UPDATE`."""


def contact_key(qbo_customer_id: str, mapped: MappedRecord) -> str | None:
    """Contacts are unique by email in the CRM, so the mapped email is the upsert key."""
    email = mapped.properties.get("email", "").strip().lower()
    return email or None


def contact_synced(
    *,
    qbo_id: str,
    crm_id: str | None,
    action: SyncAction,
    trigger: SyncTrigger,
    mapping_version: int,
    mapping_ids: list[str],
    skipped_reason: str | None,
) -> ContactSynced:
    """The `contact.synced` payload of one outcome."""
    return ContactSynced(
        qbo_customer_id=qbo_id,
        crm_contact_id=crm_id,
        action=action,
        trigger=trigger,
        mapping_version=mapping_version,
        mapping_ids=mapping_ids,
        skipped_reason=skipped_reason,
    )


def contact_sync_failed(
    *,
    qbo_id: str,
    crm_id: str | None,
    code: SyncFailureCode,
    message: str,
    trigger: SyncTrigger,
    permanent: bool,
    mapping_version: int | None,
    mapping_id: str | None,
    crm_property: str | None,
    attempts: int = 1,
) -> ContactSyncFailed:
    """The `contact.sync-failed` payload of one failure."""
    return ContactSyncFailed(
        qbo_customer_id=qbo_id,
        crm_contact_id=crm_id,
        code=code,
        message=f"Customer {qbo_id} was not synced: {message}.",
        trigger=trigger,
        permanent=permanent,
        attempts=attempts,
        mapping_version=mapping_version,
        mapping_id=mapping_id,
        crm_property=crm_property,
    )
