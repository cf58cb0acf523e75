"""What is particular to products: they are keyed by a dealbooks-owned unique property that
holds the QBO item id, so renaming an item never creates a second product.

The shared rules (policies, mappings, transforms, Decimal prices) live in
`dealbooks_sync.domain`.
"""

from __future__ import annotations

from dealbooks_contracts import (
    CreateUpdatePolicy,
    ProductSynced,
    ProductSyncFailed,
    SyncAction,
    SyncFailureCode,
    SyncTrigger,
)
from dealbooks_sync.domain import MappedRecord

ProductSyncPolicy = CreateUpdatePolicy
"""The create-and-update policy, in product words: `ProductSyncPolicy.UPDATE_EXISTING_ONLY`."""


def product_key(qbo_item_id: str, mapped: MappedRecord) -> str | None:
    """The QBO item id itself: always present, never reused."""
    return qbo_item_id


def product_synced(
    *,
    qbo_id: str,
    crm_id: str | None,
    action: SyncAction,
    trigger: SyncTrigger,
    mapping_version: int,
    mapping_ids: list[str],
    skipped_reason: str | None,
) -> ProductSynced:
    """The `product.synced` payload of one outcome."""
    return ProductSynced(
        qbo_item_id=qbo_id,
        crm_product_id=crm_id,
        action=action,
        trigger=trigger,
        mapping_version=mapping_version,
        mapping_ids=mapping_ids,
        skipped_reason=skipped_reason,
    )


def product_sync_failed(
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
) -> ProductSyncFailed:
    """The `product.sync-failed` payload of one failure."""
    return ProductSyncFailed(
        qbo_item_id=qbo_id,
        crm_product_id=crm_id,
        code=code,
        message=f"Item {qbo_id} was not synced: {message}.",
        trigger=trigger,
        permanent=permanent,
        attempts=attempts,
        mapping_version=mapping_version,
        mapping_id=mapping_id,
        crm_property=crm_property,
    )
