"""A deal's invoice properties, written from its most recently updated tracked invoice
(domain.projection_for_deal), unless that invoice is in another currency than the portal's.

Handlers of different invoices of one deal run side by side; whoever finishes last checks
again, so the deal ends on its most recently updated invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dealbooks_contracts import Envelope, InvoiceStage
from dealbooks_crm import CrmClient
from dealbooks_crm.invoicing import ensure_invoice_properties
from dealbooks_kit import external_call, get_logger

from status_tracker import domain
from status_tracker.domain import DealInvoice
from status_tracker.memory import ShownDeals
from status_tracker.store import Store, snapshot_of, stage_in
from status_tracker.trail import InvoiceTrail

# How often one projection of a deal re-checks that no newer invoice came meanwhile.
PROJECTION_ROUNDS = 3
log = get_logger(__name__)


@dataclass
class Deals:
    """Brings a deal's invoice properties in line with its tracked invoices."""

    store: Store
    crm: CrmClient
    trail: InvoiceTrail
    # Per portal, fixed for the life of the process: the company currency, and whether the
    # invoicing deal properties exist.
    _currency: dict[str, str | None] = field(default_factory=dict)
    _prepared: set[str] = field(default_factory=set)
    _shown: ShownDeals = field(default_factory=ShownDeals)

    async def project(
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
            if projected is None or await self._still_newest(
                portal_id, deal_id, projected, invoices
            ):
                return
            known = None
        log.warning("deal projection kept moving; the reconciliation pass settles it",
                    deal_id=deal_id)  # fmt: skip

    async def _still_newest(
        self, portal_id: str, deal_id: str, projected: tuple[Any, Any], invoices: int
    ) -> bool:
        """Whether the deal, just written from `projected` (invoice, version), still shows its
        newest: another handler (a draft of another invoice, an e-mail or a payment of this
        one) may have saved while this one read, and whoever finishes last checks again. A
        deal of one invoice costs one look at its tracked invoices, not at the deal."""
        if invoices < 2:
            return await self.store.alone_at(portal_id, deal_id, *projected)
        _, docs = await self.store.deal(portal_id, deal_id)
        newest = _chosen(docs)
        return newest is None or (newest[1]["_id"], newest[1].get("version")) == projected

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
            await self.trail.record(
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


def _holds(stored: dict[str, Any] | None, fields: dict[str, Any]) -> bool:
    """Whether a stored record has every one of `fields` with the same value."""
    return stored is not None and all(stored.get(k) == v for k, v in fields.items())


def _chosen(docs: list[dict[str, Any]]) -> tuple[DealInvoice, dict[str, Any]] | None:
    """The invoice a deal shows (`domain.projection_for_deal`), with its tracked document."""
    candidates = [
        (DealInvoice(snapshot_of(d), stage_in(d) or InvoiceStage.AWAITING_SEND), d) for d in docs
    ]
    chosen = domain.projection_for_deal(invoice for invoice, _ in candidates)
    if chosen is None:
        return None
    return chosen, next(d for invoice, d in candidates if invoice is chosen)
