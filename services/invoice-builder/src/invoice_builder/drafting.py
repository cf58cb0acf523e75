"""The QuickBooks end of a request: the draft invoice is created (keyed by the request id, so
a rerun after a timeout or a crash gets QuickBooks' first answer back, never a second
invoice), and a request's outcome, drafted or rejected, is written with the event that says
so in one write (the store's outbox publishes it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dealbooks_contracts import (
    CrmObjectType,
    Envelope,
    InvoiceDrafted,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestKind,
    InvoiceRequestRejected,
    Money,
    QboCustomerRef,
)
from dealbooks_kit import external_call, get_logger, invoice_subject
from dealbooks_qbo import Invoice

from invoice_builder import domain
from invoice_builder.customers import Customers, ResolvedCustomer
from invoice_builder.deps import SOURCE, Deps, refused
from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.store import DRAFTED, REJECTED, REQUESTS

log = get_logger(__name__)


@dataclass
class Drafting:
    deps: Deps
    customers: Customers
    # Failpoint for crash tests: die between QuickBooks' create and our own write.
    crash_after_qbo_create: bool = False

    async def draft(
        self, event: Envelope[Any], account: AccountFacts, request: InvoiceRequested
    ) -> InvoiceDrafted:
        """Create the draft of a valid `request` in QuickBooks (`event` caused it: the request
        itself, or its approval): its customer first, then the invoice."""
        portal_id = event.tenant.portal_id
        company = self.deps.qbo.company(account.realm_id)
        resolved = await self.customers.resolve(request, company, portal_id)
        customer = resolved.customer
        await self.deps.record(
            f"request:{request.request_id}",
            event,
            "customer.created" if resolved.created else "customer.found",
            {"qbo_customer_id": customer.Id},
            related=[
                f"deal:{portal_id}:{request.deal_id}",
                f"customer:{account.realm_id}:{customer.Id}",
            ],
        )
        draft = domain.draft_of(request, resolved.facts, account, today=self.deps.today())
        if isinstance(draft, Rejection):
            raise refused(draft)
        invoice = await company.create(Invoice, draft.body, idempotency_key=draft.request_id)
        if self.crash_after_qbo_create:
            os._exit(17)
        assert invoice.Id is not None
        await self.deps.store.save_invoice(
            account.realm_id, invoice.Id, _drafted_invoice(portal_id, request, resolved)
        )
        await self.deps.record(
            f"invoice:{invoice_subject(account.realm_id, invoice.Id)}",
            event,
            "invoice.created",
            {
                "request_id": str(request.request_id),
                "qbo_invoice_id": invoice.Id,
                "doc_number": invoice.DocNumber,
                "call": external_call(
                    "qbo",
                    "POST",
                    f"/v3/company/{account.realm_id}/invoice",
                    request_id=draft.request_id,
                    status=200,
                ),
            },
        )
        return self._drafted(request, invoice, resolved)

    def _drafted(
        self, request: InvoiceRequested, invoice: Invoice, resolved: ResolvedCustomer
    ) -> InvoiceDrafted:
        customer = resolved.customer
        currency = request.lines[0].unit_price.currency
        assert invoice.Id is not None
        return InvoiceDrafted(
            request_id=request.request_id,
            deal_id=request.deal_id,
            quote_id=request.quote_id,
            qbo_invoice_id=invoice.Id,
            doc_number=invoice.DocNumber,
            customer=QboCustomerRef(
                qbo_customer_id=str(customer.Id),
                display_name=customer.DisplayName,
                email=customer.PrimaryEmailAddr.Address if customer.PrimaryEmailAddr else None,
            ),
            customer_created=resolved.created,
            total=Money(
                amount=invoice.TotalAmt if invoice.TotalAmt is not None else Decimal("0"),
                currency=invoice.CurrencyRef.value if invoice.CurrencyRef else currency,
            ),
            invoice_date=invoice.TxnDate or request.invoice_date or self.deps.today(),
            due_date=invoice.DueDate,
        )

    async def finish(self, event: Envelope[Any], drafted: InvoiceDrafted) -> None:
        """The request's outcome and `invoice.drafted`, in one write."""
        await self.deps.store.finish(
            REQUESTS,
            str(drafted.request_id),
            {
                "status": DRAFTED,
                "portal_id": event.tenant.portal_id,
                "realm_id": event.tenant.require_account_id(),
                "deal_id": drafted.deal_id,
                "qbo_invoice_id": drafted.qbo_invoice_id,
                "doc_number": drafted.doc_number,
                "total": format(drafted.total.amount, "f"),
                "currency": drafted.total.currency,
            },
            [Envelope.build(drafted, source=SOURCE, caused_by=event)],
        )

    async def reject(self, event: Envelope[Any], rejection: Rejection) -> None:
        """The request's outcome and `invoice.request-rejected`, in one write."""
        rejected = _rejected(event.data, rejection)
        log.info("request rejected", code=rejection.code.value, request_id=str(rejected.request_id))
        await self.deps.store.finish(
            REQUESTS,
            str(rejected.request_id),
            {
                "status": REJECTED,
                "portal_id": event.tenant.portal_id,
                "realm_id": event.tenant.account_id,
                "deal_id": rejected.deal_id,
                "code": rejection.code.value,
                "message": rejection.message,
                "field": rejection.field,
                "line_index": rejection.line_index,
            },
            [Envelope.build(rejected, source=SOURCE, caused_by=event)],
        )
        await self.deps.record(
            f"request:{rejected.request_id}",
            event,
            "request.rejected",
            {"code": rejection.code.value, "message": rejection.message, "field": rejection.field},
            result="rejected",
        )


def _drafted_invoice(
    portal_id: str, request: InvoiceRequested, resolved: ResolvedCustomer
) -> dict[str, Any]:
    """What invoice-builder keeps of an invoice it drafted."""
    return {
        "portal_id": portal_id,
        "deal_id": request.deal_id,
        "quote_id": request.quote_id,
        "request_id": str(request.request_id),
        "origin": "drafted",
        "qbo_customer_id": resolved.customer.Id,
    }


def _rejected(data: Any, rejection: Rejection) -> InvoiceRequestRejected:
    """The rejection of a draft or link request (or of an approval's request): a link names
    the record it was asked from (deal, contact or company), and its rejection goes back there."""
    if isinstance(data, InvoiceLinkRequested):
        kind, target = InvoiceRequestKind.LINK, data.target
        deal_id = target.object_id if target.object_type is CrmObjectType.DEAL else None
    else:
        kind, target, deal_id = InvoiceRequestKind.DRAFT, None, data.deal_id
    return InvoiceRequestRejected(
        request_id=data.request_id,
        request_kind=kind,
        deal_id=deal_id,
        code=rejection.code,
        message=rejection.message,
        field=rejection.field,
        line_index=rejection.line_index,
        qbo_fault_code=rejection.qbo_fault_code,
        target=target,
    )
