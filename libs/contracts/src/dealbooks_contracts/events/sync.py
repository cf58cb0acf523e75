"""Outcomes of contact-sync and product-sync, one event per record processed."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .._types import EventPayload, NonEmptyStr

__all__ = [
    "ContactSyncFailed",
    "ContactSynced",
    "ProductSyncFailed",
    "ProductSynced",
    "SyncAction",
    "SyncFailureCode",
    "SyncTrigger",
]


class SyncAction(StrEnum):
    """What a sync did to the CRM record."""

    CREATED = "created"
    UPDATED = "updated"
    ARCHIVED = "archived"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


class SyncTrigger(StrEnum):
    """What started the sync of a record."""

    WEBHOOK = "webhook"
    BACKFILL = "backfill"
    RECONCILIATION = "reconciliation"


class SyncFailureCode(StrEnum):
    """Machine-readable reason a record could not be synced."""

    MISSING_KEY = "MISSING_KEY"
    INVALID_VALUE = "INVALID_VALUE"
    MAPPING_ERROR = "MAPPING_ERROR"
    QBO_ENTITY_NOT_FOUND = "QBO_ENTITY_NOT_FOUND"
    CRM_REJECTED = "CRM_REJECTED"
    # dealbooks has no access to the portal's CRM (no token configured for it).
    CRM_NOT_CONNECTED = "CRM_NOT_CONNECTED"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"


class _RecordSynced(EventPayload):
    action: SyncAction
    trigger: SyncTrigger
    mapping_version: int = Field(ge=1, description="The mapping.changed version applied.")
    mapping_ids: list[NonEmptyStr] = Field(
        default_factory=list, description="The mappings that wrote a value."
    )
    skipped_reason: str | None = Field(default=None, description="Why, when action is skipped.")


class _RecordSyncFailed(EventPayload):
    code: SyncFailureCode
    message: NonEmptyStr = Field(description="A sentence a person can act on.")
    trigger: SyncTrigger
    permanent: bool = Field(description="False when retries may still succeed.")
    attempts: int = Field(ge=1)
    mapping_version: int | None = Field(default=None, ge=1)
    mapping_id: str | None = Field(default=None, description="The mapping at fault, if one is.")
    crm_property: str | None = None


class ContactSynced(_RecordSynced):
    """A QBO customer was synced to a CRM contact."""

    qbo_customer_id: NonEmptyStr
    crm_contact_id: str | None = Field(default=None, description="None when nothing was written.")


class ContactSyncFailed(_RecordSyncFailed):
    """A QBO customer could not be synced to a CRM contact."""

    qbo_customer_id: NonEmptyStr
    crm_contact_id: str | None = None


class ProductSynced(_RecordSynced):
    """A QBO item was synced to a CRM product."""

    qbo_item_id: NonEmptyStr
    crm_product_id: str | None = Field(default=None, description="None when nothing was written.")


class ProductSyncFailed(_RecordSyncFailed):
    """A QBO item could not be synced to a CRM product."""

    qbo_item_id: NonEmptyStr
    crm_product_id: str | None = None
