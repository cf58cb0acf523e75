"""What status-tracker's flows write about a tracked invoice besides its state: its audit
trail, and the envelopes of the events it publishes (caused by what the flow handled)."""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import Envelope, Tenant
from dealbooks_kit import Audit, invoice_subject

SOURCE = "status-tracker"


def envelope(data: Any, doc: dict[str, Any], cause: Envelope[Any] | None) -> Envelope[Any]:
    """`data` as an event of the tracked invoice `doc`'s portal and company."""
    tenant = Tenant(portal_id=doc["portal_id"], account_id=doc["realm_id"])
    if cause is not None:
        return Envelope.build(data, source=SOURCE, tenant=tenant, caused_by=cause)
    return Envelope.build(data, source=SOURCE, tenant=tenant)


class InvoiceTrail:
    """The audit trail of tracked invoices, each entry related to the invoice's deal; records
    nothing when the service keeps no audit trail."""

    def __init__(self, audit: Audit | None) -> None:
        self._audit = audit

    async def record(
        self,
        doc: dict[str, Any],
        invoice_id: str,
        cause: Envelope[Any] | None,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        if self._audit is None:
            return
        tenant = Tenant(portal_id=doc["portal_id"], account_id=doc["realm_id"])
        subject = invoice_subject(doc["realm_id"], invoice_id)
        deal_id = doc.get("deal_id")
        related = [f"deal:{doc['portal_id']}:{deal_id}"] if deal_id else []
        await self._audit.record("invoice", subject, tenant, cause, action, detail, related=related)
