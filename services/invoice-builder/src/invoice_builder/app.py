"""Wiring only: settings -> runtime, clients, store, handlers, wizard API."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    CrmObjectChanged,
    InvoiceLinkRequested,
    InvoiceRequested,
    ProductSynced,
)
from dealbooks_http import StaticTokenProvider, TokenProvider
from dealbooks_kit import ServiceApp, ServiceRuntime
from dealbooks_qbo import QboClient

from invoice_builder.api import build_api
from invoice_builder.crm import CrmReader
from invoice_builder.handlers import InvoiceBuilder
from invoice_builder.settings import InvoiceBuilderSettings
from invoice_builder.store import INDEXES, Store


@dataclass
class Service:
    """One invoice-builder process: its runtime, handlers and HTTP clients."""

    settings: InvoiceBuilderSettings
    runtime: ServiceRuntime
    handlers: InvoiceBuilder
    store: Store
    http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self.handlers.qbo.aclose()
        await self.http.aclose()


def build_service(
    settings: InvoiceBuilderSettings,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> Service:
    """Everything the process needs; token providers are injected (connector-auth in production)."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    http = httpx.AsyncClient(timeout=30.0)
    store = Store(runtime.db, runtime.publisher)
    handlers = InvoiceBuilder(
        store=store,
        qbo=QboClient(
            settings.qbo_base_url, qbo_tokens or StaticTokenProvider(settings.qbo_tokens)
        ),
        crm=CrmReader(
            settings.crm_base_url, crm_tokens or StaticTokenProvider(settings.crm_tokens), http
        ),
        crash_after_qbo_create=settings.crash_after_qbo_create,
    )
    runtime.consume("account-connected", AccountConnected, handlers.on_account_connected)
    runtime.consume("account-disconnected", AccountDisconnected, handlers.on_account_disconnected)
    runtime.consume("product-links", ProductSynced, handlers.on_product_synced)
    runtime.consume("invoice-requests", InvoiceRequested, handlers.on_invoice_requested)
    runtime.consume("link-requests", InvoiceLinkRequested, handlers.on_link_requested)
    runtime.consume("auto-draft-rules", CrmObjectChanged, handlers.on_crm_object_changed)
    return Service(settings, runtime, handlers, store, http)


def build_app(settings: InvoiceBuilderSettings | None = None) -> ServiceApp:
    """The ASGI app `python -m invoice_builder` serves."""
    service = build_service(settings or InvoiceBuilderSettings())
    app = service.runtime.asgi(api=build_api(service), title="invoice-builder")
    app.on_shutdown(service.aclose)
    return app
