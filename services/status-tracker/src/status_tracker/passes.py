"""status-tracker's passes: the overdue clock, the reconciliation (CDC) pass, and the catch-up
of a portal that installed the app again.

Each goes tenant by tenant (`dealbooks_kit.each_tenant`): one that fails is reported and the
others go on. Both run the handlers' own flows (`Invoices.refresh`, `Invoices.restage`,
`Payments.apply`), so a pass changes nothing a webhook would not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import Envelope, PortalInstalled, Tenant
from dealbooks_kit import TenantPass, each_tenant, get_logger
from dealbooks_qbo import Deleted, InvalidQuery, Invoice, NotFound, Payment

from status_tracker.handlers import StatusTracker

# The periodic jobs (app.py registers them under these names; metrics carry them).
OVERDUE_JOB = "overdue-clock"
RECONCILE_JOB = "reconciliation"
# QuickBooks' CDC answers changes of the last 30 days only; a day's margin for clock skew.
CDC_LOOKBACK = timedelta(days=29)
log = get_logger(__name__)


@dataclass
class Passes:
    """The periodic passes over the invoices `tracker` follows."""

    tracker: StatusTracker

    async def on_portal_installed(self, event: Envelope[PortalInstalled]) -> None:
        """The app is in the portal again: nothing reached its CRM while it was gone, so every
        invoice tracked for it is brought up to date (its deal and payments written). A first
        install has nothing tracked yet."""
        portal_id = event.tenant.portal_id
        self.tracker.installed(portal_id)
        if not event.data.reinstall:
            return
        read = 0
        for realm_id in await self.tracker.store.realms_of_portal(portal_id):
            read += await self.rescan(realm_id)
        log.info("portal installed again: its invoices caught up", invoices=read)

    async def overdue_sweep(self) -> TenantPass:
        """Re-derive the stage of open invoices for today: no webhook fires on a due date.

        Portal by portal (each deal is written in its portal's CRM): a portal that fails (the
        app uninstalled, its CRM down) is reported, and is swept again at the next pass; the
        others go on. Reports how many invoices moved."""
        today = self.tracker.today()
        by_portal: dict[str, list[dict[str, Any]]] = {}
        for doc in await self.tracker.store.open_invoices():
            by_portal.setdefault(str(doc["portal_id"]), []).append(doc)

        async def sweep(portal_id: str) -> int:
            return sum(
                [await self.tracker.invoices.restage(doc, today) for doc in by_portal[portal_id]]
            )

        return await each_tenant(OVERDUE_JOB, by_portal, sweep, kind="portal_id")

    async def reconcile_all(self) -> TenantPass:
        """A CDC pass for every realm that has tracked invoices. A realm that fails (its
        company disconnected, QuickBooks failing for it) is reported and keeps its watermark,
        so the next pass picks up where it stood; the others go on. Reports changes seen."""
        realms = await self.tracker.store.realms()
        return await each_tenant(RECONCILE_JOB, realms, self.reconcile, kind="realm_id")

    async def reconcile(self, realm_id: str, portal_id: str | None = None) -> int:
        """One CDC pass for a realm: apply every Invoice and Payment change since the last
        pass, so a lost webhook stays wrong for at most one pass. Returns changes seen."""
        store, tracker = self.tracker.store, self.tracker
        since = await store.watermark(realm_id)
        if since is None:
            return 0
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # stored as UTC; read back naive
        if since < datetime.now(UTC) - CDC_LOOKBACK:
            return await self.rescan(realm_id)
        try:
            result = await tracker.qbo.company(realm_id).cdc(["Invoice", "Payment"], since)
        except InvalidQuery as exc:
            if "changedSince" not in str(exc):
                raise
            return await self.rescan(realm_id)  # QuickBooks' clock says the window is past
        seen = 0
        for row in result.changes.get("Invoice", []):
            invoice_id = str(row.Id)
            doc = await store.tracked(realm_id, invoice_id)
            if doc is None:
                continue
            tenant = Tenant(portal_id=doc["portal_id"], account_id=realm_id)
            if isinstance(row, Deleted):
                await tracker.invoices.refresh(tenant, invoice_id, deleted=True)
            elif isinstance(row, Invoice):
                await tracker.invoices.refresh(tenant, invoice_id, invoice=row)
            seen += 1
        for row in result.changes.get("Payment", []):
            tenant = Tenant(portal_id=portal_id or "unknown", account_id=realm_id)
            payment = row if isinstance(row, Payment) else None
            tenant = await self._payment_tenant(realm_id, row, payment) or tenant
            await tracker.payments.apply(tenant, str(row.Id), payment)
            seen += 1
        await store.move_watermark(realm_id, result.time)
        return seen

    async def rescan(self, realm_id: str) -> int:
        """Catch up without CDC, when the last pass is older than its look-back (the service
        was stopped for weeks): re-read every tracked invoice of the realm and each payment
        QuickBooks links to it, and take back what payments no longer apply. Slower than a
        CDC pass (two reads per invoice), so only then. Returns the invoices read."""
        store, tracker = self.tracker.store, self.tracker
        started = datetime.now(UTC)
        company = tracker.qbo.company(realm_id)
        seen = 0
        for doc in await store.invoices_of_realm(realm_id):
            invoice_id = str(doc["qbo_invoice_id"])
            tenant = Tenant(portal_id=doc["portal_id"], account_id=realm_id)
            try:
                invoice = await company.read(Invoice, invoice_id)
            except NotFound:
                await tracker.invoices.refresh(tenant, invoice_id, deleted=True)
                seen += 1
                continue
            await tracker.invoices.refresh(tenant, invoice_id, invoice=invoice)
            linked = set(invoice.payment_ids())
            recorded = set(await store.payments_of_invoice(realm_id, invoice_id))
            for payment_id in sorted(linked | recorded):
                try:
                    payment = await company.read(Payment, payment_id)
                except NotFound:
                    payment = None
                await tracker.payments.apply(tenant, payment_id, payment)
            seen += 1
        await store.move_watermark(realm_id, started)
        log.info("realm rescanned: the last pass was beyond the CDC window", invoices=seen)
        return seen

    async def _payment_tenant(
        self, realm_id: str, row: Any, payment: Payment | None
    ) -> Tenant | None:
        """The tenant of a payment: that of a tracked invoice it is applied to (now, or as
        recorded)."""
        invoice_ids = list(payment.applied_to()) if payment else []
        invoice_ids += list(await self.tracker.store.applications(realm_id, str(row.Id)))
        for invoice_id in invoice_ids:
            doc = await self.tracker.store.tracked(realm_id, invoice_id)
            if doc is not None:
                return Tenant(portal_id=doc["portal_id"], account_id=realm_id)
        return None
