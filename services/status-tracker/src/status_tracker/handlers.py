"""status-tracker's handlers: each decodes what it is given and hands it to its flow
(invoices.py, payments.py, deals.py), which fetches what QuickBooks says now, derives the
stage (domain), persists with the events it causes, and brings the deal and its timeline in
line (payments as app events, or notes where the portal's app events are not approved).

Every path reads the current entity instead of trusting event order, so duplicates and
out-of-order deliveries converge on the same picture; the CDC pass replays the same flows
for whatever webhooks were lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from dealbooks_contracts import (
    OPERATOR_SOURCE,
    Envelope,
    InvoiceDrafted,
    InvoiceLinked,
    InvoiceRequestRejected,
    QboEntity,
    QboEntityChanged,
    QboOperation,
)
from dealbooks_contracts.crm_app import PAYMENT_EVENT_TYPE
from dealbooks_crm import CrmClient
from dealbooks_kit import Audit, get_logger
from dealbooks_kit.periodic import utc_today
from dealbooks_qbo import NotFound, Payment, QboClient

from status_tracker import domain
from status_tracker.crm_entries import CrmEntries
from status_tracker.deals import Deals
from status_tracker.invoices import Invoices
from status_tracker.payments import Payments
from status_tracker.store import Store
from status_tracker.trail import InvoiceTrail

log = get_logger(__name__)


@dataclass
class StatusTracker:
    """The handlers, over the flows they hand to, with everything given to them (app.py)."""

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
    today: Callable[[], date] = utc_today
    # Tells the CRM token provider that a portal installed the app (again).
    installed: Callable[[str], None] = lambda portal_id: None
    # The audit trail of tracked invoices (none: not recorded).
    audit: Audit | None = None
    deals: Deals = field(init=False)
    invoices: Invoices = field(init=False)
    payments: Payments = field(init=False)

    def __post_init__(self) -> None:
        if self.entries is None:
            self.entries = CrmEntries(self.store, self.crm)
        trail = InvoiceTrail(self.audit)

        def today() -> date:
            return self.today()  # read at each call: tests move the tracker's day

        self.deals = Deals(self.store, self.crm, trail)
        self.invoices = Invoices(self.store, self.qbo, self.deals, trail, today)
        self.payments = Payments(
            self.store, self.invoices, self.entries, trail, self.payment_event_type, today
        )

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
        await self.invoices.refresh(event.tenant, data.qbo_invoice_id, cause=event, doc=doc)

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
        refreshed = await self.invoices.refresh(
            event.tenant, data.qbo_invoice_id, cause=event, doc=doc
        )
        record_type = domain.RECORD_TYPES.get(data.target.object_type)
        if refreshed is None or record_type not in {"contacts", "companies"}:
            return
        _, snap = refreshed
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
        """Whether a QuickBooks change is this service's business and may tell something new
        (`Invoices.wants`); asked before the dedupe look-up. An operator's replay of a record
        is always read again."""
        return self.invoices.wants(event.data, reread=event.source == OPERATOR_SOURCE)

    async def on_entity_changed(self, event: Envelope[QboEntityChanged]) -> None:
        """Invoice and Payment changes; the event carries ids only, so fetch the entity."""
        change = event.data
        tenant = event.tenant
        if change.entity == QboEntity.INVOICE:
            doc = await self.store.tracked(change.realm_id, change.entity_id)
            reread = event.source == OPERATOR_SOURCE
            if doc is None or (not reread and self.invoices.already_seen(change, doc)):
                return  # not tracked, or nothing new
            await self.invoices.refresh(
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
            await self.payments.apply(tenant, change.entity_id, payment, cause=event)
