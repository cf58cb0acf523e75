"""Subscribers: `qbo.entity-changed` (Customer) and `mapping.changed` (contacts)."""

from __future__ import annotations

from dealbooks_contracts import SyncObjectType
from dealbooks_qbo import Customer
from dealbooks_sync.domain import CONTACT_ID_PROPERTY
from dealbooks_sync.engine import RecordKind

from contact_sync.domain import CONTACT_OUTCOMES, contact_key

CONTACTS = RecordKind(
    object_type=SyncObjectType.CONTACTS,
    qbo_entity="Customer",
    qbo_model=Customer,
    crm_object="contacts",
    link_property=CONTACT_ID_PROPERTY,
    upsert_property="email",
    key_of=contact_key,
    outcomes=CONTACT_OUTCOMES,
)
"""QBO customers into CRM contacts, upserted by email."""
