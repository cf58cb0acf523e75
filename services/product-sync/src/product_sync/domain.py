"""What is particular to products: they are keyed by a dealbooks-owned unique property that
holds the QBO item id, so renaming an item never creates a second product.

The shared rules (policies, mappings, transforms, Decimal prices, outcome payloads) live in
`dealbooks_sync.domain`.
"""

from __future__ import annotations

from dealbooks_contracts import (
    CreateUpdatePolicy,
    ProductSynced,
    ProductSyncFailed,
)
from dealbooks_sync.domain import MappedRecord, RecordOutcomes

ProductSyncPolicy = CreateUpdatePolicy
"""The create-and-update policy, in product words: `ProductSyncPolicy.UPDATE_EXISTING_ONLY`."""


def product_key(qbo_item_id: str, mapped: MappedRecord) -> str | None:
    """The QBO item id itself: always present, never reused."""
    return qbo_item_id


PRODUCT_OUTCOMES = RecordOutcomes(
    synced_event=ProductSynced,
    failed_event=ProductSyncFailed,
    qbo_entity="Item",
    qbo_id_field="qbo_item_id",
    crm_id_field="crm_product_id",
)
"""`product.synced` and `product.sync-failed`, keyed by the QBO item and CRM product ids."""
