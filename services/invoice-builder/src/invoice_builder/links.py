"""A link request: an existing QuickBooks invoice is attached to a CRM record (a deal, contact
or company), so status-tracker follows it. What cannot succeed is rejected back to the person
through the failure policy (`Requests.on_request_refused`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dealbooks_contracts import (
    CrmObjectType,
    Envelope,
    InvoiceLinked,
    InvoiceLinkRequested,
    Money,
    QboCustomerRef,
    RejectionCode,
)
from dealbooks_kit import Failure, external_call, invoice_subject
from dealbooks_qbo import Customer, Invoice, NotFound

from invoice_builder import domain
from invoice_builder.deps import SOURCE, Deps, refused
from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.store import FINAL, LINKED, REQUESTS


@dataclass
class Links:
    deps: Deps

    async def on_link_requested(self, event: Envelope[InvoiceLinkRequested]) -> None:
        """`crm.invoice-link-requested` -> the invoice kept as the record's, and
        `invoice.linked`."""
        request = event.data
        request_id = str(request.request_id)
        store = self.deps.store
        existing = await store.request(request_id)
        if existing and existing.get("status") in FINAL:
            await store.relay_left(REQUESTS, existing)
            return
        realm_id = event.tenant.require_account_id()
        account = await store.account(realm_id)
        if account is None or not account.connected:
            raise refused(domain.not_connected_rejection(), Failure.NOT_CONNECTED)
        linked = await self._link(event, account)
        await store.finish(
            REQUESTS,
            request_id,
            {
                "status": LINKED,
                "portal_id": event.tenant.portal_id,
                "realm_id": realm_id,
                "qbo_invoice_id": request.qbo_invoice_id,
                "target": request.target.model_dump(mode="json"),
            },
            [Envelope.build(linked, source=SOURCE, caused_by=event)],
        )
        target = request.target
        await self.deps.record(
            f"invoice:{invoice_subject(realm_id, request.qbo_invoice_id)}",
            event,
            "invoice.linked",
            {
                "request_id": request_id,
                "target": f"{target.object_type.value}:{target.object_id}",
                "call": external_call(
                    "qbo", "GET", f"/v3/company/{realm_id}/invoice/{request.qbo_invoice_id}"
                ),
            },
            related=[f"{target.object_type.value}:{event.tenant.portal_id}:{target.object_id}"],
        )

    async def _link(
        self, event: Envelope[InvoiceLinkRequested], account: AccountFacts
    ) -> InvoiceLinked:
        request = event.data
        company = self.deps.qbo.company(account.realm_id)
        try:
            invoice = await company.read(Invoice, request.qbo_invoice_id)
        except NotFound:
            raise refused(
                Rejection(
                    RejectionCode.INVOICE_NOT_FOUND,
                    f"QuickBooks invoice {request.qbo_invoice_id} does not exist in "
                    f"{account.company_name}.",
                    field="qbo_invoice_id",
                ),
                Failure.TARGET_GONE,
            ) from None
        known = await self.deps.store.invoice(account.realm_id, request.qbo_invoice_id)
        target = request.target.model_dump(mode="json")
        if known and known.get("target", target) != target:
            raise refused(
                Rejection(
                    RejectionCode.INVOICE_ALREADY_LINKED,
                    f"Invoice {invoice.DocNumber or invoice.Id} is already tracked on another "
                    "CRM record.",
                    field="qbo_invoice_id",
                )
            )
        customer = await company.read(Customer, invoice.CustomerRef.value)
        await self.deps.store.save_invoice(
            account.realm_id, request.qbo_invoice_id, _linked_invoice(event, target)
        )
        return self._linked(request, invoice, customer, account)

    def _linked(
        self,
        request: InvoiceLinkRequested,
        invoice: Invoice,
        customer: Customer,
        account: AccountFacts,
    ) -> InvoiceLinked:
        currency = invoice.CurrencyRef.value if invoice.CurrencyRef else account.home_currency
        return InvoiceLinked(
            request_id=request.request_id,
            qbo_invoice_id=request.qbo_invoice_id,
            doc_number=invoice.DocNumber,
            target=request.target,
            customer=QboCustomerRef(
                qbo_customer_id=invoice.CustomerRef.value,
                display_name=customer.DisplayName,
                email=customer.PrimaryEmailAddr.Address if customer.PrimaryEmailAddr else None,
            ),
            total=Money(amount=invoice.TotalAmt or Decimal("0"), currency=currency),
            balance=Money(amount=invoice.Balance or Decimal("0"), currency=currency),
            invoice_date=invoice.TxnDate or self.deps.today(),
            due_date=invoice.DueDate,
        )


def _linked_invoice(
    event: Envelope[InvoiceLinkRequested], target: dict[str, Any]
) -> dict[str, Any]:
    """What invoice-builder keeps of an invoice it linked."""
    request = event.data
    is_deal = request.target.object_type is CrmObjectType.DEAL
    return {
        "portal_id": event.tenant.portal_id,
        "deal_id": request.target.object_id if is_deal else None,
        "target": target,
        "request_id": str(request.request_id),
        "origin": "linked",
    }
