"""What a payment (now) applies to each tracked invoice: each change recorded once, on the
deal's timeline (an app event or a note, keyed by a deterministic id) and as an
`invoice.payment-recorded`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from dealbooks_contracts import (
    Envelope,
    InvoicePaymentRecorded,
    Money,
    PaymentChange,
    Tenant,
)
from dealbooks_qbo import Payment

from status_tracker import domain
from status_tracker.crm_entries import CrmEntries
from status_tracker.domain import InvoiceSnapshot
from status_tracker.invoices import Invoices
from status_tracker.store import Store, applied_in, deciding_anew
from status_tracker.trail import InvoiceTrail, envelope


@dataclass
class Payments:
    """The payments' flow over the tracked invoices."""

    store: Store
    invoices: Invoices
    timelines: CrmEntries
    trail: InvoiceTrail
    # The app event type of payments (its uid or fullyQualifiedName); empty: notes only.
    payment_event_type: str
    today: Callable[[], date]

    async def apply(
        self,
        tenant: Tenant,
        payment_id: str,
        payment: Payment | None,
        *,
        cause: Envelope[Any] | None = None,
    ) -> None:
        """Record what a payment (now) applies to each tracked invoice; each change goes on
        the deal's timeline once (an app event or a note, keyed by a deterministic id);
        `payment` None means it was deleted."""
        # Another run may record this payment meanwhile: then decide again.
        await deciding_anew(
            lambda _: self._apply(tenant, payment_id, payment, cause), f"payment {payment_id}"
        )

    async def _apply(
        self,
        tenant: Tenant,
        payment_id: str,
        payment: Payment | None,
        cause: Envelope[Any] | None,
    ) -> None:
        realm = tenant.require_account_id()
        recorded = await self.store.payment(realm, payment_id)
        before = applied_in(recorded)
        applied = payment.applied_to() if payment is not None and not _voided(payment) else {}
        first_seen = payment is not None and domain.payment_first_seen(
            recorded["version"], payment.SyncToken
        )
        refreshed: dict[str, tuple[dict[str, Any], InvoiceSnapshot] | None] = {}
        for invoice_id in sorted(set(before) | set(applied)):
            refreshed[invoice_id] = await self.invoices.refresh(
                tenant,
                invoice_id,
                cause=cause,
                linked=payment_id if first_seen and invoice_id in applied else None,
            )
        # Only invoices dealbooks tracks count (refreshed is None for the others).
        after = {i: amount for i, amount in applied.items() if refreshed.get(i) is not None}
        changes: dict[str, dict[str, Any]] = {}
        events: list[Envelope[Any]] = []
        for application in domain.payment_changes(before, after):
            found = refreshed.get(application.qbo_invoice_id)
            if found is None:
                continue
            doc, snap = found
            changes[application.qbo_invoice_id], event = await self._record(
                tenant, doc, snap, payment_id, payment, application, cause
            )
            events.append(event)
        if changes:
            await self.store.record_payment(recorded, changes, events)
        for invoice_id, fields in changes.items():
            found = refreshed.get(invoice_id)
            if found is not None:
                await self.trail.record(
                    found[0],
                    invoice_id,
                    cause,
                    "payment.recorded",
                    {"qbo_payment_id": payment_id, **fields},
                )

    async def _record(
        self,
        tenant: Tenant,
        doc: dict[str, Any],
        snap: InvoiceSnapshot,
        payment_id: str,
        payment: Payment | None,
        application: domain.PaymentApplication,
        cause: Envelope[Any] | None,
    ) -> tuple[dict[str, Any], Envelope[InvoicePaymentRecorded]]:
        """Put one application change on the deal's timeline; returns what to record of it
        and its `invoice.payment-recorded`."""
        realm = tenant.require_account_id()
        currency = (payment.CurrencyRef.value if payment and payment.CurrencyRef else None) or (
            snap.currency
        )
        paid_on = (payment.TxnDate if payment else None) or self.today()
        method = _method(payment)
        version = str(payment.SyncToken if payment else "deleted")
        deal_id = doc.get("deal_id")
        if deal_id:
            entry = domain.payment_entry(
                key=domain.timeline_event_id(
                    realm, payment_id, application.qbo_invoice_id, application.change, version
                ),
                deal_id=deal_id,
                event_type=self.payment_event_type or None,
                amount=application.amount,
                currency=currency,
                paid_on=paid_on,
                invoice_number=snap.doc_number,
                change=application.change,
                method=method,
                balance=snap.balance,
            )
            shown = await self.timelines.put(doc["portal_id"], entry)
            await self.trail.record(
                doc,
                application.qbo_invoice_id,
                cause,
                "payment.timeline-written",
                {"qbo_payment_id": payment_id, "deal_id": deal_id, "key": entry.key, "as": shown},
            )
        recorded = InvoicePaymentRecorded(
            qbo_payment_id=payment_id,
            qbo_invoice_id=application.qbo_invoice_id,
            doc_number=snap.doc_number,
            deal_id=deal_id,
            change=application.change,
            amount=Money(amount=application.amount, currency=currency),
            invoice_balance=Money(amount=snap.balance, currency=snap.currency or currency),
            payment_date=paid_on,
            payment_method=method,
        )
        fields = {
            "amount": format(application.amount, "f"),
            "removed": application.change is PaymentChange.REMOVED,
            "payment_sync_token": version,
            "date": paid_on.isoformat(),
        }
        return fields, envelope(recorded, doc, cause)


def _voided(payment: Payment) -> bool:
    return payment.TotalAmt == 0 and "voided" in (payment.PrivateNote or "").lower()


def _method(payment: Payment | None) -> str | None:
    if payment is None:
        return None
    ref = (payment.model_extra or {}).get("PaymentMethodRef")
    if isinstance(ref, dict):
        return str(ref.get("name") or ref.get("value") or "") or None
    return None
