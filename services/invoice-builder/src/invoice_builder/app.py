"""Wiring only: settings -> runtime, clients, store, handlers, wizard API."""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    CrmObjectChanged,
    InvoiceApprovalDecided,
    InvoiceApprovalRequested,
    InvoiceDrafted,
    InvoiceLinked,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestRejected,
    ProductSynced,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, Origin, ServiceApp, ServiceRuntime
from dealbooks_kit.composition import service_app

from invoice_builder.api import build_api
from invoice_builder.handlers import InvoiceBuilder
from invoice_builder.service import Service
from invoice_builder.settings import InvoiceBuilderSettings
from invoice_builder.store import APPROVALS, AUTO_DRAFTS, INDEXES, REQUESTS, Store


def build_service(
    settings: InvoiceBuilderSettings,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> Service:
    """Everything the process needs. Tokens come from the settings (connector-auth for QBO);
    tests may inject providers instead."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    store = Store(runtime.db, runtime.use_outbox(REQUESTS, AUTO_DRAFTS, APPROVALS, reread=True))
    clients = runtime.api_clients(
        store.portal_of_realm, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
    )
    handlers = InvoiceBuilder(
        store=store,
        qbo=clients.qbo,
        crm=clients.crm,
        crash_after_qbo_create=settings.crash_after_qbo_create,
        audit=runtime.use_audit(),
        console_url=settings.console_url,
    )
    _subscribe(runtime, settings, handlers)
    return Service(runtime, clients, settings, handlers, store)


def _subscribe(
    runtime: ServiceRuntime, settings: InvoiceBuilderSettings, handlers: InvoiceBuilder
) -> None:
    """Which event each handler takes, and the periodic passes."""
    requests, approvals, auto_drafts = handlers.requests, handlers.approvals, handlers.auto_drafts
    # Outcomes through the requests' outbox; requests (the wizard's, the auto-drafts') too.
    runtime.publishes(
        InvoiceDrafted,
        InvoiceRequestRejected,
        InvoiceLinked,
        InvoiceRequested,
        InvoiceLinkRequested,
        InvoiceApprovalRequested,
        InvoiceApprovalDecided,
    )
    runtime.consume("account-connected", AccountConnected, handlers.on_account_connected)
    runtime.consume("account-disconnected", AccountDisconnected, handlers.on_account_disconnected)
    runtime.consume("product-links", ProductSynced, handlers.on_product_synced)

    # What a person asks for: they wait for the outcome, so what cannot succeed is told to
    # them. Requests dedupe on their request id: each handler reads the request's document
    # first and stops at a final outcome, so no record per event id is kept for them. (Each
    # consumer stays a literal call: the deployment reads its group from this source.)
    person: dict[str, Any] = {
        "origin": Origin.PERSON,
        "on_reject": requests.on_request_refused,
        "dedupe": False,
    }
    runtime.consume("invoice-requests", InvoiceRequested, requests.on_invoice_requested, **person)
    runtime.consume(
        "link-requests", InvoiceLinkRequested, handlers.links.on_link_requested, **person
    )
    # An approver's decision (the approvals API publishes it with the decision, in one write)
    # drafts or rejects the request; it dedupes on the request's outcome, as requests do.
    runtime.consume(
        "approval-decisions", InvoiceApprovalDecided, approvals.on_approval_decided, **person
    )
    runtime.consume("auto-draft-rules", CrmObjectChanged, auto_drafts.on_crm_object_changed)
    runtime.every(
        "auto-draft-sweep",
        settings.auto_draft_sweep_seconds,
        auto_drafts.sweep_rule_stages,
    )
    runtime.every(
        "approval-reminders",
        settings.approval_reminder_seconds,
        approvals.remind_waiting_approvals,
    )


def build_app(settings: InvoiceBuilderSettings | None = None) -> ServiceApp:
    """The ASGI app `python -m invoice_builder` serves; in production it refuses to start
    without the grant keys and operator credentials its routes check."""
    return service_app(
        settings or InvoiceBuilderSettings(),
        build_service,
        build_api,
        title="invoice-builder",
        requires=(Access.PORTAL, Access.OPERATOR),
    )
