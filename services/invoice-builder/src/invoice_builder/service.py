"""The service object the HTTP routes work over: one invoice-builder process's runtime,
store, handlers and API clients (built by app.py)."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_kit.composition import ServiceParts

from invoice_builder.handlers import InvoiceBuilder
from invoice_builder.search import QboSearch
from invoice_builder.settings import InvoiceBuilderSettings
from invoice_builder.store import Store


@dataclass
class Service(ServiceParts):
    """One invoice-builder process: its runtime, API clients, handlers and store."""

    settings: InvoiceBuilderSettings
    handlers: InvoiceBuilder
    store: Store

    def search(self, realm_id: str) -> QboSearch:
        """The wizard's searches over one company (bounded QuickBooks queries)."""
        return QboSearch(self.clients.qbo.company(realm_id))
