"""Tracked invoices kept as QuickBooks has them now: read (unless nothing can be new), staged
(domain.stage_of), saved with the `invoice.status-changed` a new stage causes, and their deal
brought in line.

Every path reads the current invoice instead of trusting event order, so duplicates and
out-of-order deliveries converge on the same picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dealbooks_contracts import (
    Envelope,
    InvoiceStage,
    InvoiceStatusChanged,
    Money,
    QboEntity,
    QboEntityChanged,
    QboOperation,
    Tenant,
)
from dealbooks_qbo import Invoice, NotFound, QboClient

from status_tracker import domain
from status_tracker.deals import Deals
from status_tracker.domain import InvoiceSnapshot
from status_tracker.memory import RecentInvoices
from status_tracker.store import (
    ConcurrentUpdate,
    Store,
    deciding_anew,
    snapshot_fields,
    snapshot_of,
    stage_in,
)
from status_tracker.trail import InvoiceTrail, envelope


def snapshot_from_qbo(invoice: Invoice, *, void_seen: bool = False) -> InvoiceSnapshot:
    """The parts of a QuickBooks invoice that decide its stage and what the deal shows."""
    meta = invoice.MetaData
    return InvoiceSnapshot(
        qbo_invoice_id=str(invoice.Id),
        total=invoice.TotalAmt or Decimal("0"),
        balance=invoice.Balance or Decimal("0"),
        currency=invoice.CurrencyRef.value if invoice.CurrencyRef else "",
        due_date=invoice.DueDate,
        doc_number=invoice.DocNumber,
        email_status=invoice.EmailStatus,
        delivery_type=invoice.DeliveryInfo.DeliveryType if invoice.DeliveryInfo else None,
        private_note=invoice.PrivateNote,
        recipient_email=invoice.BillEmail.Address if invoice.BillEmail else None,
        customer_name=invoice.CustomerRef.name,
        sync_token=int(invoice.SyncToken or 0),
        last_updated=meta.LastUpdatedTime if meta else None,
        void_seen=void_seen,
        payments=tuple(sorted(invoice.payment_ids())),
        txn_date=invoice.TxnDate,
    )


@dataclass
class Invoices:
    """The tracked invoices' flow: when QuickBooks need not be asked, the refresh, the save."""

    store: Store
    qbo: QboClient
    deals: Deals
    trail: InvoiceTrail
    today: Callable[[], date]
    _recent: RecentInvoices = field(default_factory=RecentInvoices)

    def wants(self, change: QboEntityChanged, *, reread: bool = False) -> bool:
        """Whether a QuickBooks change is this service's business and may tell something new:
        Invoice and Payment changes, except an invoice notification this process already
        knows to be covered (the update a payment causes) and an invoice's Create. An invoice
        is read when it starts being tracked (drafted or linked), after its creation, so its
        Create (the echo of our own draft, often here before the draft's own event) can tell
        nothing. Asked before the dedupe look-up, so those cost no database call at all.
        `reread`: the change asks for a read whatever this process remembers (an operator's
        replay, stamped by a clock that need not agree with QuickBooks')."""
        if change.entity == QboEntity.PAYMENT:
            return True
        if change.entity != QboEntity.INVOICE or change.operation is QboOperation.CREATE:
            return False
        if reread:
            return True
        key = f"{change.realm_id}:{change.entity_id}"
        return not self._recent.covers(key, change.operation, change.last_updated)

    def already_seen(self, change: QboEntityChanged, doc: dict[str, Any]) -> bool:
        """Whether this invoice notification can tell nothing the tracked invoice does not
        show already, so QuickBooks need not be asked (its 500 requests/min are precious):
        the Create of an invoice already read (later changes come as Updates of their own;
        the consumer does not even take Creates, see `wants`), or a change no newer than the
        state read (the invoice update every payment causes, after the payment's own
        handling read the invoice).

        QuickBooks stamps changes in whole seconds, so two changes within one second share a
        stamp; read between them, the second would be taken for the first. The CDC pass
        compares SyncTokens and heals that within one pass, the bound every lost webhook has."""
        if change.operation not in {QboOperation.CREATE, QboOperation.UPDATE}:
            return False
        key = f"{change.realm_id}:{change.entity_id}"
        # What this process remembers was already asked (`wants`, before the dedupe look-up).
        if not doc.get("stage"):
            return False
        read = doc.get("last_updated")
        self._recent.note(key, read if isinstance(read, datetime) else None)
        return self._recent.covers(key, change.operation, change.last_updated)

    async def refresh(
        self,
        tenant: Tenant,
        invoice_id: str,
        *,
        invoice: Invoice | None = None,
        deleted: bool = False,
        void_seen: bool = False,
        cause: Envelope[Any] | None = None,
        doc: dict[str, Any] | None = None,
        linked: str | None = None,
    ) -> tuple[dict[str, Any], InvoiceSnapshot] | None:
        """Bring one tracked invoice up to date: the tracked document as read (its deal and
        portal) and the invoice as it is now; None if dealbooks does not track it. `invoice`:
        QuickBooks' invoice, when the caller has read it (a CDC pass); `deleted`,
        `void_seen`: what the change said. `doc`: the tracked document, when the caller has
        just read it. `linked`: a payment seen for the first time; if the invoice as recorded
        links it already, it was read after that payment applied (the invoice update it
        causes came first), so QuickBooks is not asked again."""
        realm = tenant.require_account_id()

        async def attempt(n: int) -> tuple[dict[str, Any], InvoiceSnapshot] | None:
            # The caller's document serves the first attempt; after a conflict, read again.
            found = (
                doc if n == 0 and doc is not None else await self.store.tracked(realm, invoice_id)
            )
            if found is None:
                return None
            if linked is not None and _links(found, linked):
                snap = snapshot_of(found)
            else:
                snap = await self._current(realm, invoice_id, found, invoice, deleted, void_seen)
            await self._keep(found, snap, cause)
            return found, snap

        return await deciding_anew(attempt, f"invoice {invoice_id}")

    async def _keep(
        self, doc: dict[str, Any], snap: InvoiceSnapshot, cause: Envelope[Any] | None
    ) -> None:
        """Save `snap` if it tells something new, then bring the invoice's deal in line
        (also when nothing was new: an earlier run may have failed before that)."""
        if not _news(doc, snap, domain.stage_of(snap, self.today())):
            # QuickBooks echoes our own draft, or repeats itself: nothing to record.
            self._recent.note(doc["_id"], doc.get("last_updated"))
            if doc.get("deal_id"):
                await self.deals.project(
                    doc["portal_id"], doc["deal_id"], unchanged=doc, cause=cause
                )
            return
        saved = await self.save(doc, snap, cause)
        self._recent.note(saved["_id"], saved.get("last_updated"))
        if doc.get("deal_id"):
            await self.deals.project(doc["portal_id"], doc["deal_id"], known=saved, cause=cause)

    async def _current(
        self,
        realm: str,
        invoice_id: str,
        doc: dict[str, Any],
        invoice: Invoice | None,
        deleted: bool,
        void_seen: bool,
    ) -> InvoiceSnapshot:
        known = snapshot_of(doc) if doc.get("stage") else None
        void_seen = void_seen or bool(doc.get("void_seen"))
        if deleted or doc.get("deleted"):
            base = known or InvoiceSnapshot(invoice_id, Decimal("0"), Decimal("0"), "")
            return replace(base, deleted=True)
        if invoice is None:
            try:
                invoice = await self.qbo.company(realm).read(Invoice, invoice_id)
            except NotFound:
                base = known or InvoiceSnapshot(invoice_id, Decimal("0"), Decimal("0"), "")
                return replace(base, deleted=True)
        assert invoice is not None
        snap = snapshot_from_qbo(invoice, void_seen=void_seen)
        if known and domain.is_stale(snap.sync_token, known.sync_token):
            return replace(known, void_seen=void_seen)
        return snap

    async def save(
        self, doc: dict[str, Any], snap: InvoiceSnapshot, cause: Envelope[Any] | None
    ) -> dict[str, Any]:
        """Record `snap` at the stage it is in today, with the `invoice.status-changed` a new
        stage causes; raises ConcurrentUpdate when another writer saved the invoice first."""
        previous = stage_in(doc)
        stage = domain.stage_of(snap, self.today())
        events: list[Envelope[Any]] = []
        if stage is not previous:
            changed = InvoiceStatusChanged(
                qbo_invoice_id=snap.qbo_invoice_id,
                doc_number=snap.doc_number,
                deal_id=doc.get("deal_id"),
                previous_stage=previous,
                stage=stage,
                total=Money(amount=snap.total, currency=snap.currency or "XXX"),
                balance=Money(amount=snap.balance, currency=snap.currency or "XXX"),
                due_date=snap.due_date,
                recipient_email=snap.recipient_email,
            )
            events.append(envelope(changed, doc, cause))
        saved = await self.store.save_state(doc, snap, stage, events)
        if stage is not previous:
            await self.trail.record(
                doc,
                snap.qbo_invoice_id,
                cause,
                "stage.changed",
                {
                    "previous_stage": previous.value if previous else None,
                    "stage": stage.value,
                    "balance": format(snap.balance, "f"),
                    "sync_token": snap.sync_token,
                },
            )
        return saved

    async def restage(self, doc: dict[str, Any], today: date) -> bool:
        """Re-derive a tracked invoice's stage for `today` (no webhook fires on a due date),
        and bring its deal in line; False when the stage holds, or a handler is on it now."""
        snap = snapshot_of(doc)
        if domain.stage_of(snap, today) is stage_in(doc):
            return False
        try:
            await self.save(doc, snap, None)
        except ConcurrentUpdate:
            return False  # a handler is on it right now
        if doc.get("deal_id"):
            await self.deals.project(doc["portal_id"], doc["deal_id"])
        return True


def _news(doc: dict[str, Any], snap: InvoiceSnapshot, stage: InvoiceStage) -> bool:
    """Whether `snap` (at `stage`) differs from what the tracked invoice records."""
    if stage_in(doc) is not stage:
        return True
    stored = snapshot_fields(snapshot_of(doc))
    # LastUpdatedTime moves with SyncToken; compared as stored it would differ in precision.
    return any(stored[k] != v for k, v in snapshot_fields(snap).items() if k != "last_updated")


def _links(doc: dict[str, Any], payment_id: str) -> bool:
    """Whether a tracked invoice, as recorded, has QuickBooks linking `payment_id` to it."""
    return (
        bool(doc.get("stage"))
        and not doc.get("deleted")
        and payment_id in (doc.get("payments") or ())
    )
