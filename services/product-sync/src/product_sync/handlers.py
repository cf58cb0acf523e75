"""Subscribers of product-sync. Items changed in QuickBooks arrive as `qbo.entity-changed`
(Item); each goes through the record pipeline over PRODUCTS (re-read, decide, write the
product found by its dealbooks item-id property, link) and ends in `product.synced` or
`product.sync-failed`. `mapping.changed` for products and `portal.installed` keep it current."""

from __future__ import annotations

from dealbooks_contracts import SyncObjectType
from dealbooks_kit import ServiceRuntime
from dealbooks_qbo import Item
from dealbooks_sync.domain import PRODUCT_ID_PROPERTY
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.parts import SyncParts, subscribe_records

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


def subscribe(runtime: ServiceRuntime, sync: SyncParts) -> None:
    subscribe_records(runtime, sync, changes="items")
