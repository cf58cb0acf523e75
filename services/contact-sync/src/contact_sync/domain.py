"""What is particular to contacts: they are keyed by email, and carry the QBO customer id.

The shared rules (policies, mappings, transforms, outcome payloads) live in
`dealbooks_sync.domain`.
"""

from __future__ import annotations

from dealbooks_contracts import (
    ContactSynced,
    ContactSyncFailed,
    CreateUpdatePolicy,
)
from dealbooks_sync.domain import MappedRecord, RecordOutcomes

ContactSyncPolicy = CreateUpdatePolicy
"""The create-and-update policy, in contact words: `ContactSyncPolicy.CREATE_AND_UPDATE`."""


def contact_key(qbo_customer_id: str, mapped: MappedRecord) -> str | None:
    """Contacts are unique by email in the CRM, so the mapped email is the upsert key."""
    email = mapped.properties.get("email", "").strip().lower()
    return email or None


CONTACT_OUTCOMES = RecordOutcomes(
    synced_event=ContactSynced,
    failed_event=ContactSyncFailed,
    qbo_entity="Customer",
    qbo_id_field="qbo_customer_id",
    crm_id_field="crm_contact_id",
)
"""`contact.synced` and `contact.sync-failed`, keyed by the QBO customer and CRM contact ids."""
