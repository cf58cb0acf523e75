"""The rules of status-tracker, with no I/O: where an invoice stands, which invoice speaks for
a deal, what the deal shows, what a payment change, a refused request or a linked invoice puts
on a CRM record's timeline, and how a record's invoices are listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from html import escape

from dealbooks_contracts import (
    CrmObjectType,
    CrmRecordRef,
    InvoiceRequestKind,
    InvoiceStage,
    PaymentChange,
    QboOperation,
)
from dealbooks_contracts.crm_app import (
    AMOUNT_BILLED,
    DUE_DATE,
    INVOICE_NUMBER,
    RECIPIENT,
    STAGE_LABELS,
    STATUS,
)

ZERO = Decimal("0")
VOIDED_NOTE = "voided"

# The CRM deal properties dealbooks writes; defined once for connector-auth and this service.
DEAL_PROPERTIES = (AMOUNT_BILLED, RECIPIENT, INVOICE_NUMBER, STATUS, DUE_DATE)


@dataclass(frozen=True)
class InvoiceSnapshot:
    """A QuickBooks invoice as far as its stage and the deal are concerned."""

    qbo_invoice_id: str
    total: Decimal
    balance: Decimal
    currency: str
    due_date: date | None = None
    doc_number: str | None = None
    email_status: str | None = None
    delivery_type: str | None = None
    private_note: str | None = None
    recipient_email: str | None = None
    customer_name: str | None = None
    sync_token: int = 0
    last_updated: datetime | None = None
    deleted: bool = False
    void_seen: bool = False
    payments: tuple[str, ...] = ()  # the payments QuickBooks links to it, sorted
    txn_date: date | None = None  # the invoice date


def is_voided(invoice: InvoiceSnapshot) -> bool:
    """QuickBooks zeroes a voided invoice and notes "Voided"; a Void webhook also tells us."""
    if invoice.void_seen:
        return True
    return (
        invoice.total == ZERO
        and invoice.balance == ZERO
        and VOIDED_NOTE in (invoice.private_note or "").lower()
    )


def is_sent(invoice: InvoiceSnapshot) -> bool:
    """E-mailed to the customer (DeliveryInfo is the stronger signal, EmailStatus the usual)."""
    return invoice.email_status == "EmailSent" or invoice.delivery_type == "Email"


def stage_of(invoice: InvoiceSnapshot, today: date) -> InvoiceStage:
    """Where an invoice stands on `today` (the first rule that holds wins).

    Deleted, then voided: neither is ever "paid" although both show a zero balance. Paid in
    full needs something to have been owed. A past-due balance is overdue even when part of
    it was paid, since that is what a follow-up must act on.
    """
    if invoice.deleted:
        return InvoiceStage.DELETED
    if is_voided(invoice):
        return InvoiceStage.VOIDED
    if invoice.total > ZERO and invoice.balance <= ZERO:
        return InvoiceStage.PAID
    if invoice.balance > ZERO and invoice.due_date is not None and invoice.due_date < today:
        return InvoiceStage.OVERDUE
    if ZERO < invoice.balance < invoice.total:
        return InvoiceStage.PARTIALLY_PAID
    if is_sent(invoice):
        return InvoiceStage.SENT
    return InvoiceStage.AWAITING_SEND


def is_stale(incoming_sync_token: int, known_sync_token: int | None) -> bool:
    """An older version of an invoice than the one already applied (out-of-order reads)."""
    return known_sync_token is not None and incoming_sync_token < known_sync_token


# ---------------------------------------------------------------------------------- the deal


@dataclass(frozen=True)
class DealInvoice:
    """One tracked invoice of a deal, with its current stage."""

    snapshot: InvoiceSnapshot
    stage: InvoiceStage


def projection_for_deal(invoices: Iterable[DealInvoice]) -> DealInvoice | None:
    """The invoice the deal shows: the most recently updated one (ties: the higher id)."""

    def key(item: DealInvoice) -> tuple[float, int, str]:
        updated = item.snapshot.last_updated
        return (
            updated.timestamp() if updated else 0.0,
            item.snapshot.sync_token,
            item.snapshot.qbo_invoice_id.rjust(20, "0"),
        )

    ordered = sorted(invoices, key=key)
    return ordered[-1] if ordered else None


def currency_skip_reason(invoice_currency: str, portal_currency: str | None) -> str | None:
    """Why the deal's amount properties must not be written, or None when they may be.

    A deal's amounts are in the portal's company currency; another currency would show a
    wrong figure with the wrong symbol.
    """
    if portal_currency is None or invoice_currency == portal_currency:
        return None
    return (
        f"invoice currency {invoice_currency} differs from the portal's company currency "
        f"{portal_currency}; deal properties are not written"
    )


def deal_properties(item: DealInvoice) -> dict[str, str]:
    """The CRM deal properties showing one invoice (every value a string, as the CRM wants)."""
    snap = item.snapshot
    return {
        AMOUNT_BILLED: format(snap.total, "f"),
        RECIPIENT: snap.recipient_email or snap.customer_name or "",
        INVOICE_NUMBER: snap.doc_number or "",
        STATUS: item.stage.value,
        DUE_DATE: snap.due_date.isoformat() if snap.due_date else "",
    }


# ---------------------------------------------------------------------------------- payments


@dataclass(frozen=True)
class PaymentApplication:
    """What one payment applies to one invoice, as one change to record."""

    qbo_invoice_id: str
    change: PaymentChange
    amount: Decimal


def payment_changes(
    before: Mapping[str, Decimal], after: Mapping[str, Decimal]
) -> list[PaymentApplication]:
    """Compare what a payment applied to each invoice before and after an edit.

    `before` is what was recorded, `after` what QuickBooks shows now (empty when the payment
    was deleted or voided). Unchanged applications produce nothing, so redelivery is silent.
    """
    changes: list[PaymentApplication] = []
    for invoice_id in sorted(set(before) | set(after)):
        old, new = before.get(invoice_id), after.get(invoice_id)
        if new is not None and new > ZERO and old is None:
            changes.append(PaymentApplication(invoice_id, PaymentChange.APPLIED, new))
        elif old is not None and (new is None or new <= ZERO):
            changes.append(PaymentApplication(invoice_id, PaymentChange.REMOVED, old))
        elif old is not None and new is not None and new != old:
            changes.append(PaymentApplication(invoice_id, PaymentChange.UPDATED, new))
    return changes


def timeline_event_id(
    realm_id: str, payment_id: str, invoice_id: str, change: PaymentChange, version: str
) -> str:
    """The CRM timeline event id of one payment change; the same change always gets the same
    id, so a redelivered webhook cannot put a second event on the deal.

    `version` is the payment's SyncToken: a later edit of the same payment is a new event.
    """
    if change is PaymentChange.APPLIED:
        return f"qbo-pay-{realm_id}-{payment_id}-{invoice_id}"
    return f"qbo-pay-{realm_id}-{payment_id}-{invoice_id}-{change.value}-v{version}"


# ---------------------------------------------------------------------------- CRM timelines


@dataclass(frozen=True)
class TimelineEntry:
    """One fact for a CRM record's timeline, to be put there once: an occurrence of
    `event_type` (an app event, timeline v4) where the portal's app events are approved,
    otherwise a note. `key` makes it once: it is the occurrence's id and the reference the
    note carries. No `event_type`: always a note."""

    key: str
    object_type: str  # deals | contacts | companies
    object_id: str
    note_html: str
    event_type: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


CHANGE_WORDS = {
    PaymentChange.APPLIED: "applied",
    PaymentChange.UPDATED: "changed",
    PaymentChange.REMOVED: "removed",
}


def _money(amount: Decimal, currency: str) -> str:
    return f"{format(amount, 'f')} {currency}".strip()


def _reference(key: str) -> str:
    return f"<p>Reference: {escape(key)}</p>"


def carries_reference(note_body: str, key: str) -> bool:
    """Whether a note is the one made for `key` (a key may begin another: `...-13` and
    `...-130`; the CRM may rewrite the HTML around the text)."""
    return re.search(rf"Reference: {re.escape(escape(key))}(?![\w-])", note_body) is not None


def payment_entry(
    *,
    key: str,
    deal_id: str,
    event_type: str | None,
    amount: Decimal,
    currency: str,
    paid_on: date,
    invoice_number: str | None,
    change: PaymentChange,
    method: str | None,
    balance: Decimal,
) -> TimelineEntry:
    """A payment change on the deal's timeline: the payment event's properties, and the note
    that says the same where app events cannot be sent."""
    number = invoice_number or "(no number)"
    note = (
        f"<p><strong>QuickBooks payment {CHANGE_WORDS[change]}</strong>: "
        f"{escape(_money(amount, currency))} on invoice {escape(number)}.</p>"
        f"<p>Paid on {paid_on.isoformat()} by {escape(method or 'an unknown method')}. "
        f"Balance after this change: {escape(_money(balance, currency))}.</p>" + _reference(key)
    )
    properties = {
        "invoiceNumber": invoice_number or "",
        "amount": format(amount, "f"),
        "currency": currency,
        "change": change.value,
        "paidOn": paid_on.isoformat(),
        "method": method or "unknown",
        "invoiceBalance": format(balance, "f"),
    }
    return TimelineEntry(key, "deals", deal_id, note, event_type, properties)


# The CRM records dealbooks puts entries on, as the CRM's API names their types.
RECORD_TYPES = {
    CrmObjectType.DEAL: "deals",
    CrmObjectType.CONTACT: "contacts",
    CrmObjectType.COMPANY: "companies",
}


def rejection_record(deal_id: str | None, target: CrmRecordRef | None) -> tuple[str, str] | None:
    """The record a refused request is shown on, as (type, id): the one it was made from (a
    link's contact or company), else its deal; None when it names neither."""
    if target is not None and target.object_type in RECORD_TYPES:
        return RECORD_TYPES[target.object_type], target.object_id
    return ("deals", deal_id) if deal_id else None


def rejection_key(request_id: str) -> str:
    """One entry per refused request, however often its rejection is delivered."""
    return f"dealbooks-rejected-{request_id}"


REQUEST_TITLES = {
    InvoiceRequestKind.DRAFT: "QuickBooks invoice not created",
    InvoiceRequestKind.LINK: "QuickBooks invoice not linked",
}


def rejection_entry(
    *,
    request_id: str,
    kind: InvoiceRequestKind,
    code: str,
    message: str,
    field_name: str | None,
    line_index: int | None,
    object_type: str,
    object_id: str,
    event_type: str | None,
) -> TimelineEntry:
    """A refused invoice request on the record it was made from: the reason and how to fix
    it (the rejection's message says both), with the code and the field at fault."""
    key = rejection_key(request_id)
    at_fault = []
    if field_name:
        at_fault.append(f"field {escape(field_name)}")
    if line_index is not None:
        at_fault.append(f"line {line_index + 1}")
    detail = f" ({', '.join(at_fault)})" if at_fault else ""
    note = (
        f"<p><strong>{REQUEST_TITLES[kind]}</strong>: the request was refused, "
        f"{escape(code)}{detail}.</p><p>{escape(message)}</p>" + _reference(key)
    )
    properties = {
        "requestKind": kind.value,
        "code": code,
        "message": message,
        "field": field_name or "",
    }
    return TimelineEntry(key, object_type, object_id, note, event_type, properties)


def qbo_invoice_url(app_url: str, invoice_id: str) -> str:
    """The invoice in QuickBooks' web app (the base differs for sandbox companies)."""
    return f"{app_url.rstrip('/')}/app/invoice?txnId={invoice_id}"


def link_entry(
    *,
    realm_id: str,
    object_type: str,
    object_id: str,
    snapshot: InvoiceSnapshot,
    stage: InvoiceStage,
    url: str,
) -> TimelineEntry:
    """An existing invoice linked to a contact or company, noted on that record once per
    link: its number, amount, stage and where it is in QuickBooks."""
    key = f"dealbooks-linked-{realm_id}-{snapshot.qbo_invoice_id}-{object_type}-{object_id}"
    number = snapshot.doc_number or snapshot.qbo_invoice_id
    due = f" · due {snapshot.due_date.isoformat()}" if snapshot.due_date else ""
    note = (
        f"<p><strong>QuickBooks invoice {escape(number)} linked</strong>"
        f"{' for ' + escape(snapshot.customer_name) if snapshot.customer_name else ''}.</p>"
        f"<p>Amount {escape(_money(snapshot.total, snapshot.currency))} · balance "
        f"{escape(_money(snapshot.balance, snapshot.currency))} · {STAGE_LABELS[stage]}{due}"
        f'</p><p><a href="{escape(url)}">Open invoice {escape(number)} in QuickBooks</a></p>'
        + _reference(key)
    )
    return TimelineEntry(key, object_type, object_id, note)


# ---------------------------------------------------------------------------- a record's invoices

# Deleted invoices are gone from QuickBooks; a record does not list them.
LISTED_STAGES = frozenset(InvoiceStage) - {InvoiceStage.DELETED}


def newest_first_key(
    txn_date: date | None, updated: datetime | None, invoice_id: str
) -> tuple[str, float, str]:
    """How a record's invoices are ordered, newest first (sort descending by this): the
    invoice date, then the latest change in QuickBooks, then the id."""
    if updated is not None and updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)  # stored in UTC, read back naive
    when = updated.timestamp() if updated else 0.0
    return (txn_date.isoformat() if txn_date else "", when, invoice_id.rjust(20, "0"))


@dataclass(frozen=True)
class PaymentSeen:
    """A payment as recorded against one invoice: how much and on which date."""

    amount: Decimal
    paid_on: date


def last_payment(payments: Iterable[PaymentSeen]) -> PaymentSeen | None:
    """The payment an invoice shows as its last: the latest date (on one date, the larger)."""
    ordered = sorted(payments, key=lambda p: (p.paid_on, p.amount))
    return ordered[-1] if ordered else None


def tells_nothing_new(operation: QboOperation, changed_at: datetime, read: datetime | None) -> bool:
    """Whether a QuickBooks notification of an invoice already read (last changed at `read`,
    None when unknown) can tell nothing new, so QuickBooks need not be asked: its Create (later
    changes come as Updates of their own), or an Update no newer than what was read (the
    invoice update every payment causes, after the payment's own handling read the invoice).
    A Delete, Void or Merge always tells something."""
    if operation is QboOperation.CREATE:
        return True
    if operation is not QboOperation.UPDATE:
        return False
    return read is not None and changed_at <= read


def payment_first_seen(recorded_version: object, sync_token: str | None) -> bool:
    """Whether a payment is as it was made: never recorded here (`recorded_version` empty)
    and never changed in QuickBooks (an edit or a void moves its SyncToken past "0"). An
    invoice read that links such a payment shows its effect as it still is, so the invoice
    need not be read again for it."""
    return not recorded_version and str(sync_token) == "0"


# ---------------------------------------------------------------- what a record is called

# The CRM properties a record's name is read from, by record type (as the route names them).
NAME_PROPERTIES: dict[str, tuple[str, ...]] = {
    "deals": ("dealname",),
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
}


def record_name(object_type: str, properties: Mapping[str, str | None]) -> str | None:
    """What a person calls a CRM record, as the CRM shows it: a deal's name; a contact's full
    name, else its e-mail; a company's name, else its domain. None when it has none of them."""

    def said(key: str) -> str:
        return " ".join((properties.get(key) or "").split())

    if object_type == "contacts":
        full = " ".join(part for part in (said("firstname"), said("lastname")) if part)
        return full or said("email") or None
    return next((said(key) for key in NAME_PROPERTIES[object_type] if said(key)), None)
