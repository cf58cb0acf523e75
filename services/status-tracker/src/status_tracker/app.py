"""Wiring only: settings -> runtime, clients, store, handlers, sweeps, read API."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import (
    InvoiceDrafted,
    InvoiceLinked,
    InvoicePaymentRecorded,
    InvoiceRequestRejected,
    InvoiceStatusChanged,
    PortalInstalled,
    QboEntityChanged,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, ServiceApp, ServiceRuntime, get_logger
from dealbooks_kit.composition import ServiceParts, service_app

from status_tracker.api import build_api
from status_tracker.crm_entries import AppEventsAccess, CrmEntries
from status_tracker.handlers import StatusTracker
from status_tracker.passes import OVERDUE_JOB, RECONCILE_JOB, Passes
from status_tracker.settings import StatusTrackerSettings
from status_tracker.store import INDEXES, LEGACY_OUTBOXES, PAYMENTS, TRACKED, Store
from status_tracker.views import RecordInvoices

log = get_logger(__name__)


@dataclass
class Service(ServiceParts):
    """One status-tracker process: its runtime, API clients, handlers, sweep tasks and the
    invoices of CRM records its API reads."""

    settings: StatusTrackerSettings
    handlers: StatusTracker
    passes: Passes
    store: Store
    records: RecordInvoices


def build_service(
    settings: StatusTrackerSettings,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> Service:
    """Everything the process needs. Tokens come from the settings (connector-auth for QBO);
    tests may inject providers instead."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    outbox = runtime.use_outbox(TRACKED, PAYMENTS, *LEGACY_OUTBOXES, reread=True)
    store = Store(runtime.db, outbox)
    clients = runtime.api_clients(
        store.portal_of_realm, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
    )
    entries = CrmEntries(store, clients.crm, AppEventsAccess(settings.app_events_recheck_seconds))
    handlers = StatusTracker(
        store=store,
        qbo=clients.qbo,
        crm=clients.crm,
        entries=entries,
        payment_event_type=settings.payment_event_type,
        rejection_event_type=settings.rejection_event_type,
        qbo_app_url=settings.qbo_app_url,
        installed=clients.tokens.portal_installed,
        audit=runtime.use_audit(),
    )
    runtime.publishes(InvoiceStatusChanged, InvoicePaymentRecorded)
    # Lanes (see dealbooks_kit.consumer). A new or linked invoice is its own lane: its first
    # read depends on nothing else. QuickBooks changes go in one lane per company: a payment
    # and the invoice update it causes arrive together, and in order the second one finds
    # nothing new instead of racing the first on the same invoice. Per company is no real
    # limit: QuickBooks answers each company 10 requests/s, and every change costs a read.
    runtime.consume(
        "drafted",
        InvoiceDrafted,
        handlers.on_drafted,
        ordering_key=lambda event: f"{event.tenant.account_id}:Invoice:{event.data.qbo_invoice_id}",
    )
    runtime.consume(
        "linked",
        InvoiceLinked,
        handlers.on_linked,
        ordering_key=lambda event: f"{event.tenant.account_id}:Invoice:{event.data.qbo_invoice_id}",
    )
    runtime.consume(
        "qbo-changes",
        QboEntityChanged,
        handlers.on_entity_changed,
        accepts=handlers.wants,
    )
    passes = Passes(handlers)
    runtime.consume("portal-installs", PortalInstalled, passes.on_portal_installed)
    runtime.consume("rejections", InvoiceRequestRejected, handlers.on_request_rejected)
    # No webhook fires when a due date passes, and webhooks can be lost: two timers.
    # Each runs in one replica at a time (the kit's lease), tenant by tenant.
    runtime.every(OVERDUE_JOB, settings.overdue_interval_seconds, passes.overdue_sweep)
    runtime.every(RECONCILE_JOB, settings.reconcile_interval_seconds, passes.reconcile_all)
    records = RecordInvoices(store, settings.qbo_app_url, clients.crm)
    return Service(runtime, clients, settings, handlers, passes, store, records)


def build_app(settings: StatusTrackerSettings | None = None) -> ServiceApp:
    """The ASGI app `python -m status_tracker` serves; in production it refuses to start
    without the grant keys and operator credentials its routes check."""
    return service_app(
        settings or StatusTrackerSettings(),
        build_service,
        build_api,
        title="status-tracker",
        requires=(Access.PORTAL, Access.OPERATOR, Access.CRM_SIGNED),
    )
