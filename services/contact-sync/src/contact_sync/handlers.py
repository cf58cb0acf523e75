"""What contact-sync listens to: the portal's contact mappings and settings (`mapping.changed`),
changes of QuickBooks customers (`qbo.entity-changed`, Customer) and app installs. For each
customer it publishes `contact.synced` or `contact.sync-failed`; the per-record path (decode,
decide with `dealbooks_sync.domain`, write and link the contact, publish) is the shared record
pipeline over CONTACTS, where contacts are matched by email."""

from __future__ import annotations

from dealbooks_contracts import SyncObjectType
from dealbooks_kit import ServiceRuntime
from dealbooks_qbo import Customer
from dealbooks_sync.domain import CONTACT_ID_PROPERTY
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.parts import SyncParts, subscribe_records

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


def subscribe(runtime: ServiceRuntime, sync: SyncParts) -> None:
    subscribe_records(runtime, sync, changes="customers")
