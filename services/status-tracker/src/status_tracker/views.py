"""What a CRM record shows of its invoices, for the console and the app card: every invoice
dealbooks tracks for a deal, contact or company, newest first, and for a deal the invoice its
properties show. Read-only; every read is by `_id`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from dealbooks_contracts import CrmObjectType
from dealbooks_crm import CrmClient, CrmError
from dealbooks_http import AccountUnavailable, PortalNotInstalled
from dealbooks_kit import Failed, get_logger

from status_tracker import domain
from status_tracker.store import Store, snapshot_of, stage_in

log = get_logger(__name__)

# The record types the route takes, as the CRM's API names them.
OBJECT_TYPES = {
    "deals": CrmObjectType.DEAL,
    "contacts": CrmObjectType.CONTACT,
    "companies": CrmObjectType.COMPANY,
}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _shown(projection: dict[str, Any] | None) -> dict[str, str] | None:
    """The invoice a deal's properties show: the one last projected, if it was written."""
    if not projection or not projection.get("written") or not projection.get("invoice"):
        return None
    realm_id, invoice_id = str(projection["invoice"]).split(":", 1)
    return {"realm_id": realm_id, "invoice_id": invoice_id}


@dataclass
class RecordInvoices:
    """The invoices of CRM records, as the route answers them."""

    store: Store
    qbo_app_url: str
    crm: CrmClient | None = None

    async def of(self, portal_id: str, object_type: str, object_id: str) -> dict[str, Any]:
        """`object_type` is one of `OBJECT_TYPES`. A record nothing is tracked for, or one of
        another portal, lists nothing."""
        shown = None
        if object_type == "deals":
            projection, docs = await self.store.deal(portal_id, object_id)
            shown = _shown(projection)
        else:
            target = {"object_type": OBJECT_TYPES[object_type].value, "object_id": object_id}
            docs = await self.store.record_invoices(portal_id, target)
        listed = [d for d in docs if stage_in(d) in domain.LISTED_STAGES]
        listed.sort(
            key=lambda d: domain.newest_first_key(
                snapshot_of(d).txn_date, d.get("last_updated"), str(d["qbo_invoice_id"])
            ),
            reverse=True,
        )
        return {
            "object_type": object_type,
            "object_id": object_id,
            "shown": shown,
            "invoices": [await self._invoice(doc) for doc in listed],
        }

    async def name_of(self, portal_id: str, object_type: str, object_id: str) -> str | None:
        """The record's name as the CRM shows it (one read); None when the CRM does not say:
        the record is gone, the portal's access is, or the id is not one the CRM gives."""
        return (await self.names_of(portal_id, object_type, [object_id]))[object_id]

    async def names_of(
        self, portal_id: str, object_type: str, object_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """Each record's name as the CRM shows it, in one batch read per hundred; None for
        one the CRM does not name (as `name_of`), and for all when the CRM cannot be read."""
        names: dict[str, str | None] = dict.fromkeys(object_ids)
        # Only ids the CRM gives (ASCII digits): one it refuses would fail the whole read.
        asked = [i for i in names if i.isascii() and i.isdigit()]
        if self.crm is None or not asked:
            return names
        try:
            found = await self.crm.portal(portal_id).batch_read(
                object_type, asked, properties=domain.NAME_PROPERTIES[object_type]
            )
        except (CrmError, AccountUnavailable, PortalNotInstalled, Failed) as exc:
            log.info("record names not read", object_type=object_type, error=type(exc).__name__)
            return names
        for record in found.results:
            if record.id in names:
                names[record.id] = domain.record_name(object_type, record.properties)
        return names

    async def _invoice(self, doc: dict[str, Any]) -> dict[str, Any]:
        snap = snapshot_of(doc)
        realm_id, invoice_id = str(doc["realm_id"]), str(doc["qbo_invoice_id"])
        recorded = await self.store.payments_seen(realm_id, invoice_id, snap.payments)
        last = domain.last_payment(
            domain.PaymentSeen(Decimal(p["amount"]), _paid_on(p)) for p in recorded
        )
        stage = stage_in(doc)
        assert stage is not None  # only invoices with a stage are listed
        return {
            "realm_id": realm_id,
            "invoice_id": invoice_id,
            "doc_number": snap.doc_number,
            "customer_name": snap.customer_name,
            "total": format(snap.total, "f"),
            "balance": format(snap.balance, "f"),
            "currency": snap.currency,
            "stage": stage.value,
            "due_date": snap.due_date.isoformat() if snap.due_date else None,
            "txn_date": snap.txn_date.isoformat() if snap.txn_date else None,
            "updated_at": _iso(snap.last_updated),
            "last_payment": (
                {"amount": format(last.amount, "f"), "date": last.paid_on.isoformat()}
                if last
                else None
            ),
            "qbo_url": domain.qbo_invoice_url(self.qbo_app_url, invoice_id),
        }


def _paid_on(recorded: dict[str, Any]) -> date:
    """A payment's date; payments recorded before dates were kept: the day it was recorded."""
    if recorded.get("date"):
        return date.fromisoformat(recorded["date"])
    moment = recorded.get("recorded_at")
    return moment.date() if isinstance(moment, datetime) else date.min
