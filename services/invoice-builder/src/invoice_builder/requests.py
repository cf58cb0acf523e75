"""An invoice request, from the wizard's body to the QuickBooks draft.

The wizard's body becomes a `crm.invoice-requested` (`from_wizard`: its lines come from the
body, or from the quote's or deal's line items through the company's product links; its
customer from the body, or the one proposed for the deal's party). The request's handler
then reads as: decode, decide (`domain.validate_request`, the company's approval settings),
act (hold it for approval, or draft it in QuickBooks: `drafting.py`), persist and publish the
outcome in one write. What cannot succeed is rejected back to the person
(`on_request_refused`), with words from `rejection_for`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from dealbooks_contracts import (
    Envelope,
    InvoiceApprovalDecided,
    InvoiceLineRequest,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestOrigin,
    RejectionCode,
)
from dealbooks_http import AccountUnavailable
from dealbooks_kit import (
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Decision,
    Failed,
    Failure,
)
from dealbooks_qbo import AuthError, ValidationError
from pydantic import TypeAdapter

from invoice_builder import approval, domain
from invoice_builder.approvals import Approvals
from invoice_builder.crm_reads import CrmReads
from invoice_builder.customers import Customers
from invoice_builder.deps import Deps, refused
from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.drafting import Drafting
from invoice_builder.store import AWAITING_APPROVAL, FINAL, REQUESTS

_LINES = TypeAdapter(list[InvoiceLineRequest])


@dataclass
class Requests:
    deps: Deps
    crm_reads: CrmReads
    customers: Customers
    drafting: Drafting
    approvals: Approvals

    # ------------------------------------------------------------------ from the wizard

    async def from_wizard(
        self, account: AccountFacts, body: dict[str, Any]
    ) -> InvoiceRequested | Rejection:
        """The request a wizard body describes: explicit lines, or the quote's or deal's."""
        deal_id = str(body["deal_id"])
        quote_id = body.get("quote_id")
        if quote_id:
            # An expired or unpublished quote is the reason to give, whatever its lines hold.
            quote = await self.crm_reads.quote_facts(account.portal_id, str(quote_id))
            problem = domain.check_quote(quote, str(quote_id), self.deps.now())
            if problem is not None:
                return problem
        parent_type, parent_id = ("quotes", str(quote_id)) if quote_id else ("deals", deal_id)
        if body.get("lines"):
            lines = _LINES.validate_python(body["lines"])
        else:
            built = await self._crm_lines(account, parent_type, parent_id, body)
            if isinstance(built, Rejection):
                return built
            lines = built
        if body.get("customer"):
            customer = body["customer"]
        else:
            party = await self.crm_reads.party(account.portal_id, parent_type, parent_id)
            customer = await self.customers.choice(account.realm_id, party)
        return InvoiceRequested.model_validate(
            {
                "request_id": body.get("request_id") or uuid.uuid4(),
                "deal_id": deal_id,
                "quote_id": quote_id,
                "origin": InvoiceRequestOrigin.QUOTE if quote_id else InvoiceRequestOrigin.WIZARD,
                "customer": customer,
                "lines": lines,
                "terms_id": body.get("terms_id"),
                "invoice_date": body.get("invoice_date"),
                "due_date": body.get("due_date"),
                "customer_message": body.get("customer_message"),
                "requested_by": body.get("requested_by"),
            }
        )

    async def _crm_lines(
        self, account: AccountFacts, parent_type: str, parent_id: str, body: dict[str, Any]
    ) -> list[InvoiceLineRequest] | Rejection:
        """The lines of a deal or quote, each through its product's QuickBooks item (or the
        item the wizard chose for it)."""
        items = await self.crm_reads.lines(
            account.portal_id, parent_type, parent_id, account.home_currency
        )
        links = await self.deps.store.product_links(account.portal_id, account.realm_id)
        return domain.lines_from_crm(
            items,
            links,
            body.get("chosen_items") or {},
            body.get("tax_codes") or {},
            body.get("default_tax_code"),
        )

    async def problem_of(
        self, account: AccountFacts, request: InvoiceRequested
    ) -> Rejection | None:
        """What would refuse a request before QuickBooks is asked (for the wizard's preview)."""
        quote = None
        if request.quote_id:
            quote = await self.crm_reads.quote_facts(account.portal_id, request.quote_id)
        return domain.validate_request(
            request, account, today=self.deps.today(), now=self.deps.now(), quote=quote
        ) or domain.check_currency(request.lines[0].unit_price.currency, None, account)

    # ------------------------------------------------------------------ the request's handler

    async def on_invoice_requested(self, event: Envelope[InvoiceRequested]) -> None:
        """`crm.invoice-requested` -> a draft QBO invoice and `invoice.drafted` (or, when its
        company approves invoices first, an approval and `invoice.approval-requested`)."""
        request = event.data
        store = self.deps.store
        existing = await store.request(str(request.request_id))
        if existing and existing.get("status") in (*FINAL, AWAITING_APPROVAL):
            await store.relay_left(REQUESTS, existing)
            return
        realm_id = event.tenant.require_account_id()
        await self.deps.record(
            f"request:{request.request_id}",
            event,
            "request.received",
            {"deal_id": request.deal_id, "quote_id": request.quote_id},
        )
        account = await store.account(realm_id)
        quote = None
        if request.quote_id and account is not None:
            quote = await self.crm_reads.quote_facts(event.tenant.portal_id, request.quote_id)
        rejection = domain.validate_request(
            request, account, today=self.deps.today(), now=self.deps.now(), quote=quote
        )
        if rejection:
            raise refused(rejection)
        assert account is not None
        settings = await store.approval_settings(realm_id)
        if approval.holds_for_approval(settings, account):
            assert settings is not None
            await self.approvals.hold(event, account, settings)
            return
        drafted = await self.drafting.draft(event, account, request)
        await self.drafting.finish(event, drafted)

    async def on_request_refused(
        self,
        event: Envelope[InvoiceRequested]
        | Envelope[InvoiceLinkRequested]
        | Envelope[InvoiceApprovalDecided],
        decision: Decision,
        error: BaseException,
    ) -> None:
        """The failure policy rejects a request (or dead-lettered it, retries outlasted): tell
        the person who made it why, instead of leaving it pending for ever. An approved
        request whose draft cannot be made is rejected the same way."""
        existing = await self.deps.store.request(str(event.data.request_id))
        if existing and existing.get("status") in FINAL:
            await self.deps.store.relay_left(REQUESTS, existing)
            return
        await self.drafting.reject(event, rejection_for(decision, error, event.tenant.portal_id))
        if isinstance(event.data, InvoiceApprovalDecided):
            await self.approvals.close_tasks_quietly(
                event.tenant.portal_id, str(event.data.request_id)
            )


def rejection_for(decision: Decision, error: BaseException, portal_id: str) -> Rejection:
    """What the person hears when the failure policy rejects their request (what to do about
    the failure is the policy's; only the words are invoice-builder's)."""
    if isinstance(error, Failed) and isinstance(error.detail, Rejection):
        return error.detail
    if isinstance(error, CrmPortalNotConfigured | CrmPortalNotInstalled):
        return domain.crm_not_connected_rejection(portal_id)
    if isinstance(error, AccountUnavailable) and not error.reauth_required:
        return domain.not_connected_rejection()
    if decision.failure is Failure.AUTHORISATION_LOST or isinstance(error, AuthError):
        return Rejection(
            RejectionCode.ACCOUNT_REAUTH_REQUIRED,
            "QuickBooks no longer accepts this connection; reconnect the company and retry.",
            field="account",
        )
    if isinstance(error, ValidationError):
        return Rejection(
            RejectionCode.QBO_VALIDATION,
            f"QuickBooks refused the invoice: {error.message}. {error.detail}".strip(),
            qbo_fault_code=error.code or None,
        )
    return domain.rejection_for_failure(
        permanent=decision.failure not in {Failure.TRANSIENT, Failure.RATE_LIMITED}
    )
