"""What dealbooks owns inside a CRM portal for invoicing, as plain data: the deal properties
that show an invoice and the payment app event type.

It is a contract between dealbooks and each portal (connector-auth creates the properties at
install, the app project defines the event type, status-tracker writes into both), so it lives
here, once, free of any I/O.
"""

from __future__ import annotations

from typing import Any, Final

from dealbooks_contracts.events import InvoiceStage

INVOICE_GROUP: Final = "acct_invoicing"
INVOICE_GROUP_LABEL: Final = "Invoicing (QuickBooks)"

AMOUNT_BILLED: Final = "acct_amount_billed"
RECIPIENT: Final = "acct_invoice_recipient"
INVOICE_NUMBER: Final = "acct_invoice_number"
STATUS: Final = "acct_invoice_status"
DUE_DATE: Final = "acct_invoice_due_date"

STAGE_LABELS: Final[dict[InvoiceStage, str]] = {
    InvoiceStage.AWAITING_SEND: "Awaiting send",
    InvoiceStage.SENT: "Sent to customer",
    InvoiceStage.PARTIALLY_PAID: "Partially paid",
    InvoiceStage.PAID: "Paid in full",
    InvoiceStage.OVERDUE: "Overdue",
    InvoiceStage.VOIDED: "Voided",
    InvoiceStage.DELETED: "Deleted",
}


def _prop(name: str, label: str, type_: str, field_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "groupName": INVOICE_GROUP,
        **extra,
    }


INVOICE_DEAL_PROPERTIES: Final[tuple[dict[str, Any], ...]] = (
    _prop(
        AMOUNT_BILLED,
        "Amount billed",
        "number",
        "number",
        numberDisplayHint="currency",
        showCurrencySymbol=True,
    ),
    _prop(RECIPIENT, "Invoice recipient", "string", "text"),
    _prop(INVOICE_NUMBER, "Invoice number", "string", "text"),
    _prop(
        STATUS,
        "Invoice status",
        "enumeration",
        "select",
        options=[
            {"label": label, "value": stage.value, "displayOrder": i}
            for i, (stage, label) in enumerate(STAGE_LABELS.items())
        ],
    ),
    _prop(DUE_DATE, "Invoice due date", "date", "date"),
)
"""The deal properties, in the CRM properties API's create shape."""

PAYMENT_EVENT_TYPE: Final = "dealbooks_invoice_payment"
"""The uid of the app's payment app event type, defined in the app project
(`hubspot-app/src/app/app-events/invoice-payment-hsmeta.json`); an occurrence names its type by
it (or by the fullyQualifiedName HubSpot gives the type)."""

PAYMENT_EVENT_PROPERTIES: Final[tuple[str, ...]] = (
    "invoiceNumber",
    "amount",
    "currency",
    "change",
    "paidOn",
    "method",
    "invoiceBalance",
)
"""The properties of a payment occurrence, as the event type declares them."""
