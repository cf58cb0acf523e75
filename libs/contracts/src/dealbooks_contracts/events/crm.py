"""Events from the CRM side: record changes and the requests a user makes in the CRM."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field

from .._types import (
    Address,
    ContractModel,
    CurrencyCode,
    DecimalString,
    EventPayload,
    Money,
    NonEmptyStr,
)

__all__ = [
    "CrmChange",
    "CrmObjectChanged",
    "CrmObjectType",
    "CrmRecordRef",
    "CustomerChoice",
    "ExistingCustomer",
    "InvoiceLineRequest",
    "InvoiceLinkRequested",
    "InvoiceRequestOrigin",
    "InvoiceRequested",
    "NewCustomer",
]


class CrmObjectType(StrEnum):
    """CRM object types dealbooks subscribes to or links to."""

    CONTACT = "contact"
    COMPANY = "company"
    DEAL = "deal"
    QUOTE = "quote"
    PRODUCT = "product"
    LINE_ITEM = "line_item"


class CrmChange(StrEnum):
    """What happened to a CRM record."""

    CREATED = "created"
    PROPERTY_CHANGED = "property_changed"
    DELETED = "deleted"
    MERGED = "merged"
    RESTORED = "restored"
    ASSOCIATION_CHANGED = "association_changed"


class CrmRecordRef(ContractModel):
    """A pointer to one CRM record."""

    object_type: CrmObjectType
    object_id: NonEmptyStr


class CrmObjectChanged(EventPayload):
    """One CRM record changed (one event per CRM webhook event).

    Portal-scoped: a CRM change does not name a QuickBooks company, so the envelope's tenant
    has no account id and the Kafka key is the portal id. Changes made by dealbooks itself are
    dropped by the gateway and never appear here.
    """

    crm_event_id: NonEmptyStr = Field(description="The CRM's own event id, for deduplication.")
    object_type: CrmObjectType
    object_id: NonEmptyStr
    change: CrmChange
    changed_at: AwareDatetime
    property_name: str | None = None
    property_value: str | None = None
    change_source: str | None = Field(
        default=None, description="The CRM's change source, e.g. 'CRM_UI', 'IMPORT', 'API'."
    )
    merged_object_ids: list[NonEmptyStr] | None = Field(
        default=None, description="On merge: the ids that were merged into object_id."
    )


def _kind_is_required(schema: dict[str, Any]) -> None:
    # The default only spares Python callers from spelling it; on the wire it picks the variant.
    schema["required"] = ["kind", *schema.get("required", [])]


class ExistingCustomer(ContractModel):
    """Invoice an existing QBO customer."""

    model_config = ConfigDict(json_schema_extra=_kind_is_required)

    kind: Literal["existing"] = "existing"
    qbo_customer_id: NonEmptyStr


class NewCustomer(ContractModel):
    """Create a QBO customer from the CRM contact/company, then invoice it."""

    model_config = ConfigDict(json_schema_extra=_kind_is_required)

    kind: Literal["new"] = "new"
    display_name: NonEmptyStr
    company_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    phone: str | None = None
    billing_address: Address | None = None
    currency: CurrencyCode | None = Field(
        default=None, description="Customer currency (multicurrency companies); home if None."
    )
    crm_contact_id: str | None = None
    crm_company_id: str | None = None


CustomerChoice = Annotated[ExistingCustomer | NewCustomer, Field(discriminator="kind")]
"""Who the invoice is for: an existing QBO customer, or one to create."""


class InvoiceLineRequest(ContractModel):
    """One requested invoice line: a QBO item with quantity and unit price."""

    qbo_item_id: NonEmptyStr
    quantity: DecimalString
    unit_price: Money
    description: str | None = None
    tax_code_id: str | None = Field(
        default=None, description="QBO TaxCode id; required for non-US companies, absent for US."
    )
    crm_line_item_id: str | None = None
    crm_product_id: str | None = None


class InvoiceRequestOrigin(StrEnum):
    """Where an invoice request came from."""

    WIZARD = "wizard"
    QUOTE = "quote"
    AUTO_DRAFT_RULE = "auto_draft_rule"


class InvoiceRequested(EventPayload):
    """A user (or an auto-draft rule) asks for a draft QBO invoice for a deal.

    The request id is the idempotency key end to end: the QBO ``requestid`` is derived from it.
    """

    request_id: UUID
    deal_id: NonEmptyStr
    quote_id: str | None = None
    origin: InvoiceRequestOrigin
    customer: CustomerChoice
    lines: list[InvoiceLineRequest] = Field(min_length=1)
    terms_id: str | None = Field(default=None, description="QBO Term id.")
    invoice_date: date | None = Field(default=None, description="Today in the company if None.")
    due_date: date | None = Field(default=None, description="From the terms if None.")
    customer_message: str | None = None
    requested_by: str | None = Field(default=None, description="CRM user id, if a person asked.")
    rule_id: str | None = Field(default=None, description="The auto-draft rule that fired, if any.")


class InvoiceLinkRequested(EventPayload):
    """A user asks to attach an existing QBO invoice to a CRM record so it is tracked."""

    request_id: UUID
    qbo_invoice_id: NonEmptyStr
    target: CrmRecordRef
    requested_by: str | None = None
