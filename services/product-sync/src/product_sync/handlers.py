"""Subscribers: `qbo.entity-changed` (Item) and `mapping.changed` (products)."""

from __future__ import annotations

from dealbooks_contracts import SyncObjectType
from dealbooks_qbo import Item
from dealbooks_sync.domain import PRODUCT_ID_PROPERTY
from dealbooks_sync.engine import RecordKind

from product_sync.domain import PRODUCT_OUTCOMES, product_key

PRODUCTS = RecordKind(
    object_type=SyncObjectType.PRODUCTS,
    qbo_entity="Item",
    qbo_model=Item,
    crm_object="products",
    link_property=PRODUCT_ID_PROPERTY,
    upsert_property=PRODUCT_ID_PROPERTY,
    key_of=product_key,
    outcomes=PRODUCT_OUTCOMES,
)
"""QBO items into CRM products, upserted by the unique dealbooks item-id property."""
