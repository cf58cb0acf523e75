"""status-tracker's handlers and sweeps: fetch what QuickBooks says now, derive the stage
(domain), persist with the events it causes, then bring the deal and its timeline in line
(payments as app events, or notes where the portal's app events are not approved).

Every path reads the current entity instead of trusting event order, so duplicates and
out-of-order deliveries converge on the same picture; the CDC pass replays the same logic
for whatever webhooks were lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from dealbooks_contracts import (
    Envelope,
    InvoiceDrafted,
    InvoiceLinked,
    InvoicePaymentRecorded,
    InvoiceRequestRejected,
    InvoiceStage,
    InvoiceStatusChanged,
    Money,
    PaymentChange,
    QboEntity,
    QboEntityChanged,
    QboOperation,
    Tenant,
)
from dealbooks_contracts.crm_app import PAYMENT_EVENT_TYPE
from dealbooks_crm import CrmClient
from dealbooks_crm.invoicing import ensure_invoice_properties
from dealbooks_kit import (
    Audit,
    ConflictError,
    external_call,
    get_logger,
    invoice_subject,
)
from dealbooks_qbo import (
    Invoice,
    NotFound,
    Payment,
    QboClient,
)

from status_tracker import domain
from status_tracker.crm_entries import CrmEntries
from status_tracker.domain import DealInvoice, InvoiceSnapshot
from status_tracker.memory import RecentInvoices, ShownDeals
from status_tracker.store import (
    ConcurrentUpdate,
    Store,
    applied_in,
    snapshot_fields,
    snapshot_of,
    stage_in,
)

SOURCE = "status-tracker"
# How often one projection of a deal re-checks that no newer invoice came meanwhile.
PROJECTION_ROUNDS = 3
log = get_logger(__name__)


def _today() -> date:
    return datetime.now(UTC).date()


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
class StatusTracker:
    """The handlers and sweeps, with everything they use given to them (see app.py)."""

    store: Store
    qbo: QboClient
    crm: CrmClient
    # What goes on CRM timelines, once each (app events or notes); built from the store and
    # the CRM client unless given.
    entries: CrmEntries | None = None
    # The app event type of payments (its uid or fullyQualifiedName); empty: notes only.
    payment_event_type: str = PAYMENT_EVENT_TYPE
    # The app event type of refused requests on deals, if the app defines one: notes if not.
    rejection_event_type: str = ""
    # QuickBooks' web app, for the link to an invoice in a note.
    qbo_app_url: str = "https://app.qbo.intuit.com"
    today: Callable[[], date] = _today
    # Tells the CRM token provider that a portal installed the app (again).
    installed: Callable[[str], None] = lambda portal_id: None
    # The audit trail of tracked invoices (none: not recorded).
    audit: Audit | None = None
    # Per portal, fixed for the life of the process: the company currency, and whether the
    # invoicing deal properties exist.
    _currency: dict[str, str | None] = field(default_factory=dict)
    _prepared: set[str] = field(default_factory=set)
    _recent: RecentInvoices = field(default_factory=RecentInvoices)
    _shown: ShownDeals = field(default_factory=ShownDeals)

    def __post_init__(self) -> None:
        if self.entries is None:
            self.entries = CrmEntries(self.store, self.crm)

    async def _audit(
        self,
        doc: dict[str, Any],
        invoice_id: str,
        cause: Envelope[Any] | None,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        if self.audit is None:
            return
        tenant = Tenant(portal_id=doc["portal_id"], account_id=doc["realm_id"])
        subject = invoice_subject(doc["realm_id"], invoice_id)
        deal_id = doc.get("deal_id")
        related = [f"deal:{doc['portal_id']}:{deal_id}"] if deal_id else []
        await self.audit.record("invoice", subject, tenant, cause, action, detail, related=related)

    @property
    def timelines(self) -> CrmEntries:
        assert self.entries is not None  # set in __post_init__
        return self.entries

    # ------------------------------------------------------------------ start tracking

    async def on_drafted(self, event: Envelope[InvoiceDrafted]) -> None:
        """A draft invoice-builder made is tracked from now on."""
        data = event.data
        realm = event.tenant.require_account_id()
        doc = await self.store.track(
            realm,
            data.qbo_invoice_id,
            {"portal_id": event.tenant.portal_id, "deal_id": data.deal_id, "origin": "drafted"},
        )
        await self.refresh_invoice(event.tenant, data.qbo_invoice_id, cause=event, doc=doc)

    async def on_linked(self, event: Envelope[InvoiceLinked]) -> None:
        """An existing invoice a user attached is tracked from now on; on a contact or a
        company, a note on that record says so, once per link (the deal shows it in its
        properties)."""
        data = event.data
        realm = event.tenant.require_account_id()
        deal_id = data.target.object_id if data.target.object_type.value == "deal" else None
        doc = await self.store.track(
            realm,
            data.qbo_invoice_id,
            {
                "portal_id": event.tenant.portal_id,
                "deal_id": deal_id,
                "target": data.target.model_dump(mode="json"),
                "origin": "linked",
            },
        )
        snap = await self.refresh_invoice(event.tenant, data.qbo_invoice_id, cause=event, doc=doc)
        record_type = domain.RECORD_TYPES.get(data.target.object_type)
        if snap is None or record_type not in {"contacts", "companies"}:
            return
        entry = domain.link_entry(
            realm_id=realm,
            object_type=record_type,
            object_id=data.target.object_id,
            snapshot=snap,
            stage=domain.stage_of(snap, self.today()),
            url=domain.qbo_invoice_url(self.qbo_app_url, data.qbo_invoice_id),
        )
        await self.timelines.put(event.tenant.portal_id, entry)

    # ------------------------------------------------------------------ refused requests

    async def on_request_rejected(self, event: Envelope[InvoiceRequestRejected]) -> None:
        """A refused invoice request goes on the record it was made from, with the reason
        and how to fix it, once per request however often the rejection comes."""
        data = event.data
        record = domain.rejection_record(data.deal_id, data.target)
        if record is None:
            log.info("refused request names no CRM record", request_id=str(data.request_id))
            return
        object_type, object_id = record
        entry = domain.rejection_entry(
            request_id=str(data.request_id),
            kind=data.request_kind,
            code=data.code.value,
            message=data.message,
            field_name=data.field,
            line_index=data.line_index,
            object_type=object_type,
            object_id=object_id,
            # An event type names one object type; the rejection type, if any, is on deals.
            event_type=(self.rejection_event_type or None) if object_type == "deals" else None,
        )
        await self.timelines.put(event.tenant.portal_id, entry)

    # ------------------------------------------------------------------ QBO changes

    def wants(self, event: Envelope[QboEntityChanged]) -> bool:
        """Whether a QuickBooks change is this service's business and may tell something new:
        Invoice and Payment changes, except an invoice notification this process already
        knows to be covered (the update a payment causes) and an invoice's Create. An invoice
        is read when it starts being tracked (drafted or linked), after its creation, so its
        Create (the echo of our own draft, often here before the draft's own event) can tell
        nothing. Asked before the dedupe look-up, so those cost no database call at all."""
        change = event.data
        if change.entity == QboEntity.PAYMENT:
            return True
        if change.entity != QboEntity.INVOICE or change.operation is QboOperation.CREATE:
            return False
        key = f"{change.realm_id}:{change.entity_id}"
        return not self._recent.covers(key, change.operation, change.last_updated)

    async def on_entity_changed(self, event: Envelope[QboEntityChanged]) -> None:
        """Invoice and Payment changes; the event carries ids only, so fetch the entity."""
        change = event.data
        tenant = event.tenant
        if change.entity == QboEntity.INVOICE:
            doc = await self.store.tracked(change.realm_id, change.entity_id)
            if doc is None or self._already_seen(change, doc):
                return  # not tracked, or nothing new
            await self.refresh_invoice(
                tenant,
                change.entity_id,
                deleted=change.operation is QboOperation.DELETE,
                void_seen=change.operation is QboOperation.VOID,
                cause=event,
                doc=doc,
            )
        elif change.entity == QboEntity.PAYMENT:
            payment = None
            if change.operation is not QboOperation.DELETE:
                try:
                    payment = await self.qbo.company(change.realm_id).read(
                        Payment, change.entity_id
                    )
                except NotFound:
                    payment = None
            await self.apply_payment(tenant, change.entity_id, payment, cause=event)

    def _already_seen(self, change: QboEntityChanged, doc: dict[str, Any]) -> bool:
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

    async def refresh_invoice(
        self,
        tenant: Tenant,
        invoice_id: str,
        *,
        invoice: Invoice | None = None,
        deleted: bool = False,
        void_seen: bool = False,
        cause: Envelope[Any] | None = None,
        doc: dict[str, Any] | None = None,
    ) -> InvoiceSnapshot | None:
        """Bring one tracked invoice up to date; None if dealbooks does not track it.
        `doc`: the tracked document, when the caller has just read it."""
        refreshed = await self._refresh(tenant, invoice_id, invoice, deleted, void_seen, cause, doc)
        return refreshed[1] if refreshed else None

    async def _refresh(
        self,
        tenant: Tenant,
        invoice_id: str,
        invoice: Invoice | None,
        deleted: bool,
        void_seen: bool,
        cause: Envelope[Any] | None,
        doc: dict[str, Any] | None = None,
        *,
        linked: str | None = None,
    ) -> tuple[dict[str, Any], InvoiceSnapshot] | None:
        """`refresh_invoice`, also giving the tracked document as read (its deal and portal).
        `doc`: the tracked document, when the caller has just read it. `linked`: a payment
        seen for the first time; if the invoice as recorded links it already, it was read
        after that payment applied (the invoice update it causes came first), so QuickBooks
        is not asked again."""
        realm = tenant.require_account_id()
        for _ in range(5):
            if doc is None:
                doc = await self.store.tracked(realm, invoice_id)
            if doc is None:
                return None
            if linked is not None and _links(doc, linked):
                snap = snapshot_of(doc)
            else:
                snap = await self._current(realm, invoice_id, doc, invoice, deleted, void_seen)
            if not _news(doc, snap, domain.stage_of(snap, self.today())):
                # QuickBooks echoes our own draft, or repeats itself: nothing to record. The
                # deal is still brought in line, in case an earlier run failed before that.
                self._recent.note(doc["_id"], doc.get("last_updated"))
                if doc.get("deal_id"):
                    await self.project_deal(
                        doc["portal_id"], doc["deal_id"], unchanged=doc, cause=cause
                    )
                return doc, snap
            try:
                saved = await self._save(doc, snap, cause)
            except ConcurrentUpdate:
                doc = None  # read again
                continue
            self._recent.note(saved["_id"], saved.get("last_updated"))
            if doc.get("deal_id"):
                await self.project_deal(doc["portal_id"], doc["deal_id"], known=saved, cause=cause)
            return doc, snap
        raise ConflictError(f"invoice {invoice_id} kept changing under us")

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

    async def _save(
        self, doc: dict[str, Any], snap: InvoiceSnapshot, cause: Envelope[Any] | None
    ) -> dict[str, Any]:
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
            events.append(self._envelope(changed, doc, cause))
        saved = await self.store.save_state(doc, snap, stage, events)
        if stage is not previous:
            await self._audit(
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

    def _envelope(
        self, data: Any, doc: dict[str, Any], cause: Envelope[Any] | None
    ) -> Envelope[Any]:
        tenant = Tenant(portal_id=doc["portal_id"], account_id=doc["realm_id"])
        if cause is not None:
            return Envelope.build(data, source=SOURCE, tenant=tenant, caused_by=cause)
        return Envelope.build(data, source=SOURCE, tenant=tenant)

    # ------------------------------------------------------------------ the deal

    async def project_deal(
        self,
        portal_id: str,
        deal_id: str,
        known: dict[str, Any] | None = None,
        unchanged: dict[str, Any] | None = None,
        cause: Envelope[Any] | None = None,
    ) -> None:
        """Write the deal's invoice properties from its most recently updated invoice,
        unless that invoice is in another currency than the portal's (recorded, not written).
        `known`: one of the deal's invoices as the caller just saved it. `unchanged`: one as
        the caller read it and found nothing new in QuickBooks; if the deal was last projected
        from that very version, it is in line already (an earlier run got that far)."""
        deal_key = f"{portal_id}:{deal_id}"
        if unchanged is not None:
            source_now = unchanged["_id"], unchanged.get("version")
            if self._shown.shows(deal_key, *source_now):
                return
            shown = await self.store.projection(portal_id, deal_id)
            if ((shown or {}).get("invoice"), (shown or {}).get("invoice_version")) == source_now:
                self._shown.note(deal_key, *source_now)
                return
            # Otherwise read again: another writer may have moved the invoice since.
        for _ in range(PROJECTION_ROUNDS):
            projected, invoices = await self._project_once(portal_id, deal_id, known, cause)
            if projected is None or invoices < 2:
                return
            # A handler of another invoice of this deal (a draft, a payment, an e-mail) may
            # have saved it while this one read: whoever finishes last checks again, so the
            # deal ends on its most recently updated invoice.
            _, docs = await self.store.deal(portal_id, deal_id)
            newest = _chosen(docs)
            if newest is None or (newest[1]["_id"], newest[1].get("version")) == projected:
                return
            known = None
        log.warning("deal projection kept moving; the reconciliation pass settles it",
                    deal_id=deal_id)  # fmt: skip

    async def _project_once(
        self,
        portal_id: str,
        deal_id: str,
        known: dict[str, Any] | None,
        cause: Envelope[Any] | None,
    ) -> tuple[tuple[Any, Any] | None, int]:
        """Project the deal once from its invoices as read now: the (invoice, version) it now
        shows (None when it has no invoice to show), and how many invoices it has."""
        deal_key = f"{portal_id}:{deal_id}"
        previous, docs = await self.store.deal(portal_id, deal_id, known)
        found = _chosen(docs)
        if found is None:
            return None, 0
        chosen, source = found
        projected_from = {"invoice": source["_id"], "invoice_version": source.get("version")}
        portal_currency = await self._company_currency(portal_id)
        reason = domain.currency_skip_reason(chosen.snapshot.currency, portal_currency)
        properties = domain.deal_properties(chosen)
        record = {
            "qbo_invoice_id": chosen.snapshot.qbo_invoice_id,
            "stage": chosen.stage.value,
            "properties": properties,
            "written": reason is None,
            "skipped_reason": reason,
        }
        shown = (source["_id"], source.get("version"))
        if _holds(previous, {**record, **projected_from}):
            self._shown.note(deal_key, *shown)
            return shown, len(docs)  # the deal shows this already, from this very version
        if not _holds(previous, record):  # else shown already: only the version is new
            if reason is None:
                await self._prepare_deal_properties(portal_id)
                await self.crm.portal(portal_id).set_deal_properties(deal_id, properties)
            else:
                log.info("deal properties not written", deal_id=deal_id, reason=reason)
            await self._audit(
                source,
                chosen.snapshot.qbo_invoice_id,
                cause,
                "deal.properties-written" if reason is None else "deal.properties-skipped",
                {
                    "deal_id": deal_id,
                    "stage": chosen.stage.value,
                    "skipped_reason": reason,
                    "call": external_call("crm", "PATCH", f"/crm/v3/objects/deals/{deal_id}")
                    if reason is None
                    else None,
                },
            )
        await self.store.save_projection(portal_id, deal_id, {**record, **projected_from})
        self._shown.note(deal_key, *shown)
        return shown, len(docs)

    async def _company_currency(self, portal_id: str) -> str | None:
        if portal_id not in self._currency:
            details = await self.crm.portal(portal_id).account_details()
            self._currency[portal_id] = details.company_currency
        return self._currency[portal_id]

    async def _prepare_deal_properties(self, portal_id: str) -> None:
        """Create the invoicing group and deal properties once per portal (idempotent)."""
        if portal_id in self._prepared:
            return
        await ensure_invoice_properties(self.crm.portal(portal_id))
        self._prepared.add(portal_id)

    # ------------------------------------------------------------------ payments

    async def apply_payment(
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
        for _ in range(5):
            try:
                return await self._apply_payment(tenant, payment_id, payment, cause)
            except ConcurrentUpdate:
                continue  # another run recorded this payment meanwhile: decide again
        raise ConflictError(f"payment {payment_id} kept changing under us")

    async def _apply_payment(
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
        # Never recorded here and never changed in QuickBooks (an edit or a void moves its
        # SyncToken): an invoice read that links it shows its effect as it still is.
        first_seen = (
            payment is not None and not recorded["version"] and str(payment.SyncToken) == "0"
        )
        refreshed: dict[str, tuple[dict[str, Any], InvoiceSnapshot] | None] = {}
        for invoice_id in sorted(set(before) | set(applied)):
            refreshed[invoice_id] = await self._refresh(
                tenant,
                invoice_id,
                None,
                False,
                False,
                cause,
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
                await self._audit(
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
            await self._audit(
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
        return fields, self._envelope(recorded, doc, cause)

    async def restage(self, doc: dict[str, Any], today: date) -> bool:
        """Re-derive a tracked invoice's stage for `today` (no webhook fires on a due date),
        and bring its deal in line; False when the stage holds, or a handler is on it now."""
        snap = snapshot_of(doc)
        if domain.stage_of(snap, today) is stage_in(doc):
            return False
        try:
            await self._save(doc, snap, None)
        except ConcurrentUpdate:
            return False  # a handler is on it right now
        if doc.get("deal_id"):
            await self.project_deal(doc["portal_id"], doc["deal_id"])
        return True


def _holds(stored: dict[str, Any] | None, fields: dict[str, Any]) -> bool:
    """Whether a stored record has every one of `fields` with the same value."""
    return stored is not None and all(stored.get(k) == v for k, v in fields.items())


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


def _voided(payment: Payment) -> bool:
    return payment.TotalAmt == 0 and "voided" in (payment.PrivateNote or "").lower()


def _method(payment: Payment | None) -> str | None:
    if payment is None:
        return None
    ref = (payment.model_extra or {}).get("PaymentMethodRef")
    if isinstance(ref, dict):
        return str(ref.get("name") or ref.get("value") or "") or None
    return None


def _chosen(docs: list[dict[str, Any]]) -> tuple[DealInvoice, dict[str, Any]] | None:
    """The invoice a deal shows (`domain.projection_for_deal`), with its tracked document."""
    candidates = [
        (DealInvoice(snapshot_of(d), stage_in(d) or InvoiceStage.AWAITING_SEND), d) for d in docs
    ]
    chosen = domain.projection_for_deal(invoice for invoice, _ in candidates)
    if chosen is None:
        return None
    return chosen, next(d for invoice, d in candidates if invoice is chosen)
