"""invoice-builder's handlers, one flow a module, wired together here (app.py subscribes them).

    requests.py     crm.invoice-requested: validate, hold for approval or draft, outcome
    drafting.py     the QuickBooks draft (keyed by the request id) and a request's outcome
    customers.py    the QuickBooks customer of a request: matched, read, or created once
    approvals.py    approval on QuickBooks Online Advanced: hold, decide, draft, remind
    links.py        crm.invoice-link-requested: an existing invoice onto a CRM record
    auto_drafts.py  crm.object-changed: a deal entering a rule's stage, and the stage sweep
    crm_reads.py    what the flows read from the CRM

Every handler may run twice for one event: QuickBooks writes carry a requestid derived from
the request id, so a rerun after a timeout or a crash gets QuickBooks' first answer back
instead of a second invoice; outcomes go out through the store's outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from dealbooks_contracts import AccountConnected, AccountDisconnected, Envelope, ProductSynced
from dealbooks_crm import CrmClient
from dealbooks_kit import Audit
from dealbooks_qbo import QboClient

from invoice_builder.approvals import Approvals
from invoice_builder.auto_drafts import AutoDrafts
from invoice_builder.crm_reads import CrmReads
from invoice_builder.crm_tasks import CrmTasks
from invoice_builder.customers import Customers
from invoice_builder.deps import Deps
from invoice_builder.drafting import Drafting
from invoice_builder.links import Links
from invoice_builder.requests import Requests
from invoice_builder.store import Store


class InvoiceBuilder:
    """The handlers, with everything they use given to them (see app.py)."""

    def __init__(
        self,
        store: Store,
        qbo: QboClient,
        crm: CrmClient,
        *,
        today: Callable[[], date] | None = None,
        now: Callable[[], datetime] | None = None,
        crash_after_qbo_create: bool = False,
        audit: Audit | None = None,
        console_url: str = "",
    ) -> None:
        self.deps = deps = Deps(store, qbo, crm, audit=audit)
        if today is not None:
            deps.today = today
        if now is not None:
            deps.now = now
        self.tasks = CrmTasks(store, crm)
        self.crm_reads = CrmReads(crm)
        self.customers = Customers(deps)
        self.drafting = Drafting(deps, self.customers, crash_after_qbo_create)
        self.approvals = Approvals(
            deps, self.crm_reads, self.customers, self.drafting, self.tasks, console_url
        )
        self.requests = Requests(
            deps, self.crm_reads, self.customers, self.drafting, self.approvals
        )
        self.links = Links(deps)
        self.auto_drafts = AutoDrafts(deps, self.crm_reads, self.customers)

    # ------------------------------------------------------------------ its own copies

    async def on_account_connected(self, event: Envelope[AccountConnected]) -> None:
        """Keep our own copy of the company facts (custom numbers, country, currency)."""
        await self.deps.store.save_account(event)

    async def on_account_disconnected(self, event: Envelope[AccountDisconnected]) -> None:
        await self.deps.store.disconnect_account(event.tenant.require_account_id())

    async def on_product_synced(self, event: Envelope[ProductSynced]) -> None:
        """Remember which QuickBooks item a CRM product stands for (quotes map through it)."""
        if event.data.crm_product_id:
            await self.deps.store.link_product(
                event.tenant.portal_id,
                event.tenant.require_account_id(),
                event.data.crm_product_id,
                event.data.qbo_item_id,
            )
