"""The mapping-registry event: field mappings and sync settings of one account and object type."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from .._types import ContractModel, EventPayload, NonEmptyStr

__all__ = [
    "CreateUpdatePolicy",
    "DeletePolicy",
    "FieldMapping",
    "MappingChanged",
    "MappingDirection",
    "MappingTransform",
    "SyncObjectType",
    "SyncSettings",
]


class SyncObjectType(StrEnum):
    """The kinds of records synced from QuickBooks to the CRM."""

    CONTACTS = "contacts"
    PRODUCTS = "products"


class CreateUpdatePolicy(StrEnum):
    """Whether a sync may create CRM records, only update linked ones, or neither."""

    CREATE_AND_UPDATE = "create_and_update"
    UPDATE_EXISTING_ONLY = "update_existing_only"
    DO_NOTHING = "do_nothing"


class DeletePolicy(StrEnum):
    """What a sync does when the QBO record is made inactive, deleted or merged away."""

    ARCHIVE = "archive"
    DO_NOTHING = "do_nothing"


class MappingDirection(StrEnum):
    """Which way a mapping copies values."""

    QBO_TO_CRM = "qbo_to_crm"


class MappingTransform(StrEnum):
    """A conversion applied to the QBO value before it is written to the CRM."""

    JOIN_GIVEN_FAMILY_NAME = "join_given_family_name"
    DECIMAL_TO_STRING = "decimal_to_string"
    BOOLEAN_TO_STRING = "boolean_to_string"
    DATE_TO_STRING = "date_to_string"
    ADDRESS_TO_TEXT = "address_to_text"


class SyncSettings(ContractModel):
    """The portal's switches for one object type."""

    enabled: bool
    create_update_policy: CreateUpdatePolicy
    delete_policy: DeletePolicy
    enabled_since: AwareDatetime | None = Field(
        default=None,
        description=(
            "When sync was last switched on. Records created in QBO before it are left to an "
            "operator-started backfill."
        ),
    )


class FieldMapping(ContractModel):
    """One CRM property filled from one QBO field."""

    mapping_id: NonEmptyStr
    crm_property: NonEmptyStr
    qbo_field: NonEmptyStr = Field(description="Dotted QBO path, e.g. 'PrimaryEmailAddr.Address'.")
    direction: MappingDirection = MappingDirection.QBO_TO_CRM
    transform: MappingTransform | None = None
    required: bool = Field(default=False, description="Required mappings cannot be deleted.")


class MappingChanged(EventPayload):
    """The complete, versioned mappings and settings of one account and object type.

    Each event replaces the previous version; consumers apply the highest version they have seen.
    """

    object_type: SyncObjectType
    version: int = Field(ge=1)
    settings: SyncSettings
    mappings: list[FieldMapping]
