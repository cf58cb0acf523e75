"""Events of invoice-builder and status-tracker: invoices drafted, linked, progressing, paid."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from uuid import UUID

from pydantic import Field

from .._types import ContractModel, EventPayload, Money, NonEmptyStr
from .crm import CrmRecordRef

__all__ = [
    "InvoiceDrafted",
    "InvoiceLinked",
    "InvoicePaymentRecorded",
    "InvoiceRequestKind",
    "InvoiceRequestRejected",
    "InvoiceStage",
    "InvoiceStatusChanged",
    "PaymentChange",
    "QboCustomerRef",
    "RejectionCode",
]


class QboCustomerRef(ContractModel):
    """A QBO customer as an invoice names it."""

    qbo_customer_id: NonEmptyStr
    display_name: str | None = None
    email: str | None = None


class InvoiceDrafted(EventPayload):
    """invoice-builder created a draft (not yet sent) QBO invoice for a request."""

    request_id: UUID
    deal_id: NonEmptyStr
    quote_id: str | None = None
    qbo_invoice_id: NonEmptyStr
    doc_number: str | None = Field(default=None, description="The invoice number QBO assigned.")
    customer: QboCustomerRef
    customer_created: bool = Field(description="True when the request created the customer.")
    total: Money
    invoice_date: date
    due_date: date | None = None


class InvoiceRequestKind(StrEnum):
    """Which kind of request was rejected."""

    DRAFT = "draft"
    LINK = "link"


class RejectionCode(StrEnum):
    """Machine-readable reason an invoice or link request was refused."""

    ACCOUNT_NOT_CONNECTED = "ACCOUNT_NOT_CONNECTED"
    ACCOUNT_REAUTH_REQUIRED = "ACCOUNT_REAUTH_REQUIRED"
    CUSTOM_TXN_NUMBERS_ENABLED = "CUSTOM_TXN_NUMBERS_ENABLED"
    DEAL_NOT_FOUND = "DEAL_NOT_FOUND"
    QUOTE_NOT_FOUND = "QUOTE_NOT_FOUND"
    QUOTE_NOT_PUBLISHED = "QUOTE_NOT_PUBLISHED"
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    ITEM_NOT_FOUND = "ITEM_NOT_FOUND"
    NO_LINES = "NO_LINES"
    TAX_CODE_REQUIRED = "TAX_CODE_REQUIRED"
    TAX_CODE_NOT_ALLOWED = "TAX_CODE_NOT_ALLOWED"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    DUE_BEFORE_INVOICE_DATE = "DUE_BEFORE_INVOICE_DATE"
    INVOICE_NOT_FOUND = "INVOICE_NOT_FOUND"
    INVOICE_ALREADY_LINKED = "INVOICE_ALREADY_LINKED"
    AUTO_DRAFT_ALREADY_EXISTS = "AUTO_DRAFT_ALREADY_EXISTS"
    QBO_VALIDATION = "QBO_VALIDATION"
    # dealbooks has no access to the portal's CRM (no token configured for it).
    CRM_NOT_CONNECTED = "CRM_NOT_CONNECTED"
    # QuickBooks (or another service the request needs) kept failing until retries ran out.
    QBO_UNAVAILABLE = "QBO_UNAVAILABLE"
    # The request could not be processed for a reason retrying cannot fix.
    REQUEST_FAILED = "REQUEST_FAILED"
    # The company's invoice approver rejected the request (QuickBooks Online Advanced);
    # the message carries their reason.
    APPROVAL_REJECTED = "APPROVAL_REJECTED"


class InvoiceRequestRejected(EventPayload):
    """A draft or link request was refused; ``message`` tells the user what to do."""

    request_id: UUID
    request_kind: InvoiceRequestKind
    deal_id: str | None = None
    code: RejectionCode
    message: NonEmptyStr = Field(description="A sentence for the user, saying how to fix it.")
    field: str | None = Field(default=None, description="The request field at fault, if one is.")
    line_index: int | None = Field(default=None, ge=0, description="The line at fault, if one is.")
    qbo_fault_code: str | None = Field(default=None, description="QBO Fault code, if QBO refused.")
    target: CrmRecordRef | None = Field(
        default=None,
        description="The CRM record the request was made from (a link request's target), "
        "where it is not the deal.",
    )


class InvoiceLinked(EventPayload):
    """An existing QBO invoice was attached to a CRM record and is now tracked."""

    request_id: UUID
    qbo_invoice_id: NonEmptyStr
    doc_number: str | None = None
    target: CrmRecordRef
    customer: QboCustomerRef
    total: Money
    balance: Money
    invoice_date: date
    due_date: date | None = None


class InvoiceStage(StrEnum):
    """Where a tracked invoice stands, as shown on the deal."""

    AWAITING_SEND = "awaiting_send"
    SENT = "sent"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    OVERDUE = "overdue"
    VOIDED = "voided"
    DELETED = "deleted"


class InvoiceStatusChanged(EventPayload):
    """A tracked invoice moved to another stage."""

    qbo_invoice_id: NonEmptyStr
    doc_number: str | None = None
    deal_id: str | None = Field(
        default=None, description="The deal the invoice belongs to, if any."
    )
    previous_stage: InvoiceStage | None = Field(default=None, description="None when first seen.")
    stage: InvoiceStage
    total: Money
    balance: Money
    due_date: date | None = None
    recipient_email: str | None = None


class PaymentChange(StrEnum):
    """What happened to a payment applied to a tracked invoice."""

    APPLIED = "applied"
    UPDATED = "updated"
    REMOVED = "removed"


class InvoicePaymentRecorded(EventPayload):
    """A payment was applied to (or changed on, or removed from) a tracked invoice."""

    qbo_payment_id: NonEmptyStr
    qbo_invoice_id: NonEmptyStr
    doc_number: str | None = None
    deal_id: str | None = None
    change: PaymentChange
    amount: Money = Field(description="The amount applied to this invoice (not the whole payment).")
    invoice_balance: Money = Field(description="The invoice balance after this change.")
    payment_date: date
    payment_method: str | None = None
