"""invoice-builder's event handlers: decode, decide (domain), act on QuickBooks, persist, publish.

Every handler may run twice for one event. A draft is created with a QuickBooks requestid
derived from the request id, so a rerun after a timeout or a crash gets QuickBooks' first
answer back instead of a second invoice; outcomes go out through the store's outbox.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    ApprovalDecision,
    CrmChange,
    CrmObjectChanged,
    CrmObjectType,
    Envelope,
    ExistingCustomer,
    InvoiceApprovalDecided,
    InvoiceApprovalRequested,
    InvoiceDrafted,
    InvoiceLineRequest,
    InvoiceLinked,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestKind,
    InvoiceRequestOrigin,
    InvoiceRequestRejected,
    Money,
    NewCustomer,
    ProductSynced,
    QboCustomerRef,
    RejectionCode,
    Tenant,
)
from dealbooks_crm import (
    CrmClient,
    CrmNotFound,
    CrmObject,
    Filter,
    FilterGroup,
    SearchRequest,
)
from dealbooks_http import AccountUnavailable
from dealbooks_kit import (
    Audit,
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Decision,
    Failed,
    Failure,
    Origin,
    PermanentError,
    TenantPass,
    decide,
    each_tenant,
    external_call,
    get_logger,
    invoice_subject,
)
from dealbooks_qbo import (
    AuthError,
    Customer,
    DuplicateName,
    Invoice,
    NotFound,
    QboClient,
    QboCompany,
    ValidationError,
)

from invoice_builder import approval, domain
from invoice_builder.crm_tasks import CrmTasks
from invoice_builder.domain import AccountFacts, CrmLineItem, CrmParty, QuoteFacts, Rejection
from invoice_builder.search import QboSearch
from invoice_builder.search import candidate as as_candidate
from invoice_builder.store import (
    AUTO_DRAFTS,
    AWAITING_APPROVAL,
    DRAFTED,
    FINAL,
    LINKED,
    REJECTED,
    REQUESTS,
    Store,
)

SOURCE = "invoice-builder"
# How far back of its last pass the stage sweep searches (CRM search lags writes).
SWEEP_OVERLAP = timedelta(minutes=2)
log = get_logger(__name__)
T = TypeVar("T")


def _today() -> date:
    return datetime.now(UTC).date()


def _now() -> datetime:
    return datetime.now(UTC)


def _q(value: str) -> str:
    """A string literal for the QBO query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _refused(rejection: Rejection, failure: Failure = Failure.INVALID_INPUT) -> Failed:
    """A request cannot be fulfilled for a reason the person must hear, in their words: the
    failure policy rejects it back to them (`InvoiceBuilder.on_request_refused`)."""
    return Failed(rejection.message, failure=failure, detail=rejection)


class DecidedState(StrEnum):
    DECIDED = "decided"  # this call decided it
    ALREADY = "already"  # decided the same way before (a second click, a retry)
    CONFLICT = "conflict"  # decided the other way before
    INVALID = "invalid"  # what was sent cannot be approved or rejected as it is
    UNKNOWN = "unknown"  # no such approval in the portal


@dataclass
class Decided:
    """What a decision came to, with the approval as it now stands."""

    state: DecidedState
    approval: dict[str, Any] | None = None
    problem: Rejection | None = None


@dataclass
class ResolvedCustomer:
    customer: Customer
    created: bool


@dataclass
class InvoiceBuilder:
    """The handlers, with everything they use given to them (see app.py)."""

    store: Store
    qbo: QboClient
    crm: CrmClient
    today: Callable[[], date] = _today
    now: Callable[[], datetime] = _now
    crash_after_qbo_create: bool = False
    # The audit trail of requests and the invoices they made (none: not recorded).
    audit: Audit | None = None
    # The console's address, for the link an approval's CRM task carries ("": no link).
    console_url: str = ""

    def __post_init__(self) -> None:
        self.tasks = CrmTasks(self.store, self.crm)

    async def _audit(
        self,
        subject: str,
        event: Envelope[Any],
        action: str,
        detail: dict[str, Any],
        result: str = "ok",
        related: list[str] | None = None,
    ) -> None:
        if self.audit is not None:
            kind, _, subject_id = subject.partition(":")
            # The deal a request or its invoice belongs to has it in its own trail too.
            deal_id = getattr(event.data, "deal_id", None)
            if related is None:
                related = [f"deal:{event.tenant.portal_id}:{deal_id}"] if deal_id else []
            await self.audit.record(
                kind, subject_id, event.tenant, event, action, detail, result, related=related
            )

    # ------------------------------------------------------------------ account facts

    async def on_account_connected(self, event: Envelope[AccountConnected]) -> None:
        """Keep our own copy of the company facts (custom numbers, country, currency)."""
        await self.store.save_account(event)

    async def on_account_disconnected(self, event: Envelope[AccountDisconnected]) -> None:
        await self.store.disconnect_account(event.tenant.require_account_id())

    async def on_product_synced(self, event: Envelope[ProductSynced]) -> None:
        """Remember which QuickBooks item a CRM product stands for (quotes map through it)."""
        if event.data.crm_product_id:
            await self.store.link_product(
                event.tenant.portal_id,
                event.tenant.require_account_id(),
                event.data.crm_product_id,
                event.data.qbo_item_id,
            )

    # ------------------------------------------------------------------ draft requests

    async def on_invoice_requested(self, event: Envelope[InvoiceRequested]) -> None:
        """`crm.invoice-requested` -> a draft QBO invoice and `invoice.drafted`. What cannot
        succeed comes back as a rejection through the failure policy (`on_request_refused`)."""
        request = event.data
        request_id = str(request.request_id)
        existing = await self.store.request(request_id)
        if existing and existing.get("status") in (*FINAL, AWAITING_APPROVAL):
            await self.store.relay_left(REQUESTS, existing)
            return
        realm_id = event.tenant.require_account_id()
        await self._audit(
            f"request:{request_id}",
            event,
            "request.received",
            {"deal_id": request.deal_id, "quote_id": request.quote_id},
        )
        account = await self.store.account(realm_id)
        quote = None
        if request.quote_id and account is not None:
            quote = await self.quote_facts(event.tenant.portal_id, request.quote_id)
        rejection = domain.validate_request(
            request, account, today=self.today(), now=self.now(), quote=quote
        )
        if rejection:
            raise _refused(rejection)
        assert account is not None
        settings = await self.store.approval_settings(realm_id)
        if approval.holds_for_approval(settings, account):
            assert settings is not None
            await self._hold_for_approval(event, account, settings)
            return
        drafted = await self._draft(event, account, request)
        await self._finish_draft(event, drafted)

    async def _finish_draft(self, event: Envelope[Any], drafted: InvoiceDrafted) -> None:
        """The request's outcome and `invoice.drafted`, in one write."""
        await self.store.finish(
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

    async def _draft(
        self, event: Envelope[Any], account: AccountFacts, request: InvoiceRequested
    ) -> InvoiceDrafted:
        """Create the draft of `request` in QuickBooks (`event` caused it: the request itself,
        or its approval), keyed by the request id so a rerun never makes a second one."""
        company = self.qbo.company(account.realm_id)
        resolved = await self._customer(request, company, event.tenant.portal_id)
        await self._audit(
            f"request:{request.request_id}",
            event,
            "customer.created" if resolved.created else "customer.found",
            {"qbo_customer_id": resolved.customer.Id},
            related=[
                f"deal:{event.tenant.portal_id}:{request.deal_id}",
                f"customer:{account.realm_id}:{resolved.customer.Id}",
            ],
        )
        currency = request.lines[0].unit_price.currency
        customer_currency = (
            resolved.customer.CurrencyRef.value if resolved.customer.CurrencyRef else None
        )
        mismatch = domain.check_currency(currency, customer_currency, account)
        if mismatch:
            raise _refused(mismatch)
        body = domain.invoice_body(request, str(resolved.customer.Id), account, today=self.today())
        if resolved.customer.PrimaryEmailAddr and resolved.customer.PrimaryEmailAddr.Address:
            body["BillEmail"] = {"Address": resolved.customer.PrimaryEmailAddr.Address}
        qbo_request_id = domain.qbo_request_id(request.request_id, "invoice")
        invoice = await company.create(Invoice, body, idempotency_key=qbo_request_id)
        if self.crash_after_qbo_create:
            # Failpoint: die between QuickBooks' create and our own write, as a crash would.
            os._exit(17)
        assert invoice.Id is not None
        await self.store.save_invoice(
            account.realm_id,
            invoice.Id,
            {
                "portal_id": event.tenant.portal_id,
                "deal_id": request.deal_id,
                "quote_id": request.quote_id,
                "request_id": str(request.request_id),
                "origin": "drafted",
                "qbo_customer_id": resolved.customer.Id,
            },
        )
        await self._audit(
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
                    request_id=qbo_request_id,
                    status=200,
                ),
            },
        )
        return InvoiceDrafted(
            request_id=request.request_id,
            deal_id=request.deal_id,
            quote_id=request.quote_id,
            qbo_invoice_id=invoice.Id,
            doc_number=invoice.DocNumber,
            customer=QboCustomerRef(
                qbo_customer_id=str(resolved.customer.Id),
                display_name=resolved.customer.DisplayName,
                email=resolved.customer.PrimaryEmailAddr.Address
                if resolved.customer.PrimaryEmailAddr
                else None,
            ),
            customer_created=resolved.created,
            total=Money(
                amount=invoice.TotalAmt if invoice.TotalAmt is not None else Decimal("0"),
                currency=invoice.CurrencyRef.value if invoice.CurrencyRef else currency,
            ),
            invoice_date=invoice.TxnDate or request.invoice_date or self.today(),
            due_date=invoice.DueDate,
        )

    async def _customer(
        self, request: InvoiceRequested, company: QboCompany, portal_id: str
    ) -> ResolvedCustomer:
        choice = request.customer
        if isinstance(choice, ExistingCustomer):
            return ResolvedCustomer(await self._existing(company, choice.qbo_customer_id), False)
        return await self._new_customer(request, company, portal_id, choice)

    async def _existing(self, company: QboCompany, customer_id: str) -> Customer:
        customer: Customer | None
        try:
            customer = await company.read(Customer, customer_id)
        except NotFound:
            customer = None
        if customer is None or customer.Active is False:
            raise _refused(
                Rejection(
                    RejectionCode.CUSTOMER_NOT_FOUND,
                    f"QuickBooks customer {customer_id} does not exist or is inactive; "
                    "choose another customer.",
                    field="customer",
                ),
                Failure.TARGET_GONE,
            )
        return customer

    async def _new_customer(
        self, request: InvoiceRequested, company: QboCompany, portal_id: str, new: NewCustomer
    ) -> ResolvedCustomer:
        """Create the customer once; reuse it for later invoices of the same CRM record."""
        crm_key = (
            f"contact:{new.crm_contact_id}"
            if new.crm_contact_id
            else (f"company:{new.crm_company_id}" if new.crm_company_id else None)
        )
        if crm_key:
            linked = await self.store.customer_link(portal_id, company.realm_id, crm_key)
            if linked:
                return ResolvedCustomer(await self._existing(company, linked), False)
        base = new.display_name.strip()
        like = base.replace("%", "")[:90]
        taken = await company.query_all(
            f"SELECT * FROM Customer WHERE DisplayName LIKE {_q(like + '%')}"  # noqa: S608
        )
        for candidate in taken:
            if isinstance(candidate, Customer) and domain.same_person(new, as_candidate(candidate)):
                await self._remember(portal_id, company.realm_id, crm_key, candidate)
                return ResolvedCustomer(candidate, False)
        # Try the names in a fixed order, each with its own requestid: a rerun replays the
        # very answers of the first run, so it settles on the same customer.
        for name in domain.display_name_candidates(new):
            try:
                created = await company.create(
                    Customer,
                    domain.customer_body(new, name),
                    idempotency_key=domain.qbo_request_id(request.request_id, f"customer:{name}"),
                )
            except DuplicateName:
                continue
            await self._remember(portal_id, company.realm_id, crm_key, created)
            return ResolvedCustomer(created, True)
        raise _refused(
            Rejection(
                RejectionCode.QBO_VALIDATION,
                f"Every name tried for the new customer {base!r} is taken in QuickBooks; "
                "choose an existing customer instead.",
                field="customer",
                qbo_fault_code="6240",
            )
        )

    async def _remember(
        self, portal_id: str, realm_id: str, crm_key: str | None, customer: Customer
    ) -> None:
        if crm_key and customer.Id:
            await self.store.link_customer(portal_id, realm_id, crm_key, customer.Id)

    async def _reject(self, event: Envelope[Any], rejection: Rejection) -> None:
        data = event.data
        # A link names the record it was asked from (deal, contact or company): the rejection
        # goes back to that record.
        if isinstance(data, InvoiceLinkRequested):
            kind, target = InvoiceRequestKind.LINK, data.target
            deal_id = target.object_id if target.object_type is CrmObjectType.DEAL else None
        else:
            kind, target, deal_id = InvoiceRequestKind.DRAFT, None, data.deal_id
        rejected = InvoiceRequestRejected(
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
        log.info("request rejected", code=rejection.code.value, request_id=str(data.request_id))
        await self.store.finish(
            REQUESTS,
            str(data.request_id),
            {
                "status": REJECTED,
                "portal_id": event.tenant.portal_id,
                "realm_id": event.tenant.account_id,
                "deal_id": deal_id,
                "code": rejection.code.value,
                "message": rejection.message,
                "field": rejection.field,
                "line_index": rejection.line_index,
            },
            [Envelope.build(rejected, source=SOURCE, caused_by=event)],
        )
        await self._audit(
            f"request:{data.request_id}",
            event,
            "request.rejected",
            {"code": rejection.code.value, "message": rejection.message, "field": rejection.field},
            result="rejected",
        )

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
        existing = await self.store.request(str(event.data.request_id))
        if existing and existing.get("status") in FINAL:
            await self.store.relay_left(REQUESTS, existing)
            return
        await self._reject(event, rejection_for(decision, error, event.tenant.portal_id))
        if isinstance(event.data, InvoiceApprovalDecided):
            await self._close_tasks_quietly(event.tenant.portal_id, str(event.data.request_id))

    async def _close_tasks_quietly(self, portal_id: str, request_id: str) -> None:
        """An approved request whose draft was refused: its tasks are done with too. The
        refusal is what matters; a CRM that fails here only leaves the tasks open."""
        doc = await self.store.approval(request_id)
        try:
            await self.tasks.complete(portal_id, _task_ids(doc or {}))
        except Exception as exc:
            log.warning("approval tasks left open", request_id=request_id, error=repr(exc))

    # ------------------------------------------------------------------ approvals (Advanced)

    async def _hold_for_approval(
        self,
        event: Envelope[InvoiceRequested],
        account: AccountFacts,
        settings: approval.ApprovalSettings,
    ) -> None:
        """A valid request of a company with approval on waits for a person's decision
        instead of going to QuickBooks: the approval keeps the invoice as it would be made, a
        task on the deal (made once) asks the approver, and `invoice.approval-requested` says
        so. A rerun after a crash finds the approval and only finishes what is left."""
        request = event.data
        request_id = str(request.request_id)
        portal_id = event.tenant.portal_id
        known = await self.store.approval(request_id)
        if known is None:
            customer_name = await self._customer_name(request, account)
            approver = settings.approver_owner_id or await self._deal_owner(
                portal_id, request.deal_id
            )
            currency = request.lines[0].unit_price.currency
            url = self.approval_url(portal_id, request_id)
            task_id = await self.tasks.ensure(
                portal_id,
                approval.task_key(request_id),
                approval.approval_task(request, customer_name, currency, url),
                deal_id=request.deal_id,
                owner_id=approver,
                due=self.now() + timedelta(hours=settings.remind_after_hours or 24),
            )
            known = await self.store.open_approval(
                request_id,
                {
                    "portal_id": portal_id,
                    "realm_id": account.realm_id,
                    "company_name": account.company_name,
                    "deal_id": request.deal_id,
                    "request": request.model_dump(mode="json"),
                    "customer_name": customer_name,
                    "currency": currency,
                    "subtotal": format(approval.total_of(request), "f"),
                    "line_count": len(request.lines),
                    "requested_by": request.requested_by,
                    "origin": request.origin.value,
                    "approver_id": approver,
                    "task_id": task_id,
                },
            )
        requested = InvoiceApprovalRequested(
            request_id=request.request_id,
            deal_id=request.deal_id,
            requested_by=request.requested_by,
            approver_id=known.get("approver_id"),
            total=Money(amount=Decimal(known["subtotal"]), currency=known["currency"]),
            line_count=known["line_count"],
            crm_task_id=known.get("task_id"),
            requested_at=_aware(known["requested_at"]),
        )
        held = await self.store.await_approval(
            request_id,
            {
                "portal_id": portal_id,
                "realm_id": account.realm_id,
                "deal_id": request.deal_id,
                "total": known["subtotal"],
                "currency": known["currency"],
            },
            [Envelope.build(requested, source=SOURCE, caused_by=event)],
        )
        if held:
            await self._audit(
                f"request:{request_id}",
                event,
                "approval.requested",
                {
                    "approver_id": known.get("approver_id"),
                    "crm_task_id": known.get("task_id"),
                    "subtotal": known["subtotal"],
                    "currency": known["currency"],
                    "call": external_call("crm", "POST", "/crm/v3/objects/tasks"),
                },
            )

    async def _customer_name(self, request: InvoiceRequested, account: AccountFacts) -> str:
        """Who the invoice is for, as the approver reads it (an existing customer is read,
        which also refuses one that is gone or inactive before anyone is asked)."""
        choice = request.customer
        if isinstance(choice, ExistingCustomer):
            company = self.qbo.company(account.realm_id)
            return (await self._existing(company, choice.qbo_customer_id)).DisplayName or ""
        return choice.display_name

    async def _deal_owner(self, portal_id: str, deal_id: str) -> str | None:
        """The deal's owner (its `hubspot_owner_id`), who approves when no approver is set."""
        try:
            deal = await self.crm.portal(portal_id).get(
                "deals", deal_id, properties=["hubspot_owner_id"]
            )
        except CrmNotFound:
            raise _refused(
                Rejection(
                    RejectionCode.DEAL_NOT_FOUND,
                    f"Deal {deal_id} does not exist in the CRM.",
                    field="deal_id",
                ),
                Failure.TARGET_GONE,
            ) from None
        return deal.get("hubspot_owner_id") or None

    def approval_url(self, portal_id: str, request_id: str) -> str | None:
        """The console's page of an approval (None when the console's address is not set)."""
        if not self.console_url:
            return None
        return f"{self.console_url.rstrip('/')}/portals/{portal_id}/approvals/{request_id}"

    async def on_approval_decided(self, event: Envelope[InvoiceApprovalDecided]) -> None:
        """An approver decided. The approval's tasks are completed; an approved request is
        drafted through the same path as any other, keyed by its request id, so it is made
        once however often this runs; a rejected one goes back to the deal with the reason.
        What cannot succeed is rejected through the failure policy (`on_request_refused`)."""
        decided = event.data
        request_id = str(decided.request_id)
        doc = await self.store.approval(request_id)
        if doc is None:
            raise PermanentError(f"approval {request_id} is not known")
        existing = await self.store.request(request_id)
        if existing and existing.get("status") in FINAL:
            await self.store.relay_left(REQUESTS, existing)
            if existing.get("qbo_invoice_id") and not doc.get("qbo_invoice_id"):
                await self._note_draft(request_id, existing)
        elif decided.decision is ApprovalDecision.REJECTED:
            reason = decided.reason or "no reason given"
            await self._reject(event, approval.rejected(reason, doc.get("decided_by_name")))
        else:
            await self._draft_approved(event, doc)
        # After the outcome: a CRM that fails here is retried with the outcome already kept,
        # so it can never turn an approved request into a rejected one.
        await self.tasks.complete(event.tenant.portal_id, _task_ids(doc))

    async def _draft_approved(
        self, event: Envelope[InvoiceApprovalDecided], doc: dict[str, Any]
    ) -> None:
        request_id = str(event.data.request_id)
        request = InvoiceRequested.model_validate(doc["approved_request"])
        account = await self.store.account(event.tenant.require_account_id())
        problem = approval.validate_approval(request, account, today=self.today())
        if problem:
            raise _refused(problem)
        assert account is not None
        drafted = await self._draft(event, account, request)
        await self._finish_draft(event, drafted)
        await self._note_draft(request_id, drafted.model_dump())

    async def _note_draft(self, request_id: str, drafted: dict[str, Any]) -> None:
        """The approval shows the draft it became."""
        await self.store.note_approval(
            request_id,
            {
                "qbo_invoice_id": drafted.get("qbo_invoice_id"),
                "doc_number": drafted.get("doc_number"),
            },
        )

    async def decide(
        self,
        portal_id: str,
        request_id: str,
        decision: ApprovalDecision,
        *,
        by: str | None,
        by_name: str | None = None,
        lines: list[InvoiceLineRequest] | None = None,
        reason: str | None = None,
    ) -> Decided:
        """A person approves (optionally with edited lines, checked as a request's are) or
        rejects (with a reason) a pending approval of their portal. The decision and
        `invoice.approval-decided` are one conditional write of the approval (pending ->
        decided): of any number of clicks at once, one decides; the others hear it is
        decided already. The draft or the rejection follows from the event."""
        doc = await self.store.approval(request_id)
        if doc is None or doc.get("portal_id") != portal_id:
            return Decided(DecidedState.UNKNOWN)
        if doc["status"] != approval.PENDING:
            same = doc["status"] == decision.value
            return Decided(DecidedState.ALREADY if same else DecidedState.CONFLICT, doc)
        request = InvoiceRequested.model_validate(doc["request"])
        fields: dict[str, Any] = {"decided_by": by, "decided_by_name": by_name or by}
        if decision is ApprovalDecision.APPROVED:
            if lines is not None:
                request = approval.with_lines(request, lines)
            account = await self.store.account(str(doc["realm_id"]))
            problem = approval.validate_approval(request, account, today=self.today())
            if problem is not None:
                return Decided(DecidedState.INVALID, doc, problem)
            fields |= {
                "approved_request": request.model_dump(mode="json"),
                "edited": lines is not None,
                "approved_subtotal": format(approval.total_of(request), "f"),
            }
        else:
            reason = approval.clean_reason(reason)
            if reason is None:
                problem = Rejection(
                    RejectionCode.APPROVAL_REJECTED, "Say why the invoice is rejected.", "reason"
                )
                return Decided(DecidedState.INVALID, doc, problem)
            fields["reason"] = reason
        decided = InvoiceApprovalDecided(
            request_id=request.request_id,
            deal_id=request.deal_id,
            decision=decision,
            decided_by=by,
            reason=fields.get("reason"),
            edited=bool(fields.get("edited")),
            decided_at=self.now(),
        )
        tenant = Tenant(portal_id=portal_id, account_id=str(doc["realm_id"]))
        event = Envelope.build(decided, source=SOURCE, tenant=tenant, correlation_id=request_id)
        if not await self.store.decide_approval(request_id, decision.value, fields, [event]):
            now = await self.store.approval(request_id) or doc
            same = now.get("status") == decision.value
            return Decided(DecidedState.ALREADY if same else DecidedState.CONFLICT, now)
        await self._audit(
            f"request:{request_id}",
            event,
            f"approval.{decision.value}",
            {
                "decided_by": by,
                "decided_by_name": by_name or by,
                "reason": fields.get("reason"),
                "edited": bool(fields.get("edited")),
                "subtotal": fields.get("approved_subtotal", doc["subtotal"]),
            },
            result="ok" if decision is ApprovalDecision.APPROVED else "rejected",
        )
        return Decided(DecidedState.DECIDED, await self.store.approval(request_id) or doc)

    async def remind_waiting_approvals(self) -> TenantPass:
        """Remind the approver of each approval pending past its company's time, once: a
        second task on the deal. Portal by portal (a failing one is reported, the others go
        on)."""
        portals = await self.store.portals_with_unreminded_approvals()
        return await each_tenant("approval-reminders", portals, self._remind_portal, kind="portal")

    async def _remind_portal(self, portal_id: str) -> int:
        reminded = 0
        settings_of: dict[str, approval.ApprovalSettings | None] = {}
        for doc in await self.store.unreminded_approvals(portal_id):
            realm_id = str(doc["realm_id"])
            if realm_id not in settings_of:
                settings_of[realm_id] = await self.store.approval_settings(realm_id)
            settings = settings_of[realm_id]
            hours = settings.remind_after_hours if settings else None
            if approval.reminder_due(_aware(doc["requested_at"]), hours, self.now()):
                await self._remind(portal_id, doc)
                reminded += 1
        return reminded

    async def _remind(self, portal_id: str, doc: dict[str, Any]) -> None:
        request_id = str(doc["_id"])
        request = InvoiceRequested.model_validate(doc["request"])
        text = approval.reminder_task(
            request,
            doc["customer_name"],
            doc["currency"],
            _aware(doc["requested_at"]),
            self.approval_url(portal_id, request_id),
        )
        task_id = await self.tasks.ensure(
            portal_id,
            approval.task_key(request_id, "reminder"),
            text,
            deal_id=doc["deal_id"],
            owner_id=doc.get("approver_id"),
            due=self.now(),
        )
        noted = {"reminded_at": self.now(), "reminder_task_id": task_id}
        if not await self.store.note_approval(request_id, noted, pending=True):
            # Decided meanwhile: its decision completed the tasks it knew of, not this one.
            await self.tasks.complete(portal_id, [task_id])
        if self.audit is not None:
            await self.audit.record(
                "request",
                request_id,
                Tenant(portal_id=portal_id, account_id=doc["realm_id"]),
                None,
                "approval.reminded",
                {"crm_task_id": task_id, "approver_id": doc.get("approver_id")},
                related=[f"deal:{portal_id}:{doc['deal_id']}"],
            )

    # ------------------------------------------------------------------ link requests

    async def on_link_requested(self, event: Envelope[InvoiceLinkRequested]) -> None:
        """Attach an existing QBO invoice to a CRM record, so status-tracker follows it. What
        cannot succeed comes back as a rejection through the failure policy."""
        request = event.data
        request_id = str(request.request_id)
        existing = await self.store.request(request_id)
        if existing and existing.get("status") in FINAL:
            await self.store.relay_left(REQUESTS, existing)
            return
        realm_id = event.tenant.require_account_id()
        account = await self.store.account(realm_id)
        if account is None or not account.connected:
            raise _refused(
                Rejection(
                    RejectionCode.ACCOUNT_NOT_CONNECTED,
                    "This QuickBooks company is not connected to the portal.",
                    field="account",
                ),
                Failure.NOT_CONNECTED,
            )
        linked = await self._link(event, account)
        await self.store.finish(
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
        await self._audit(
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
        company = self.qbo.company(account.realm_id)
        try:
            invoice = await company.read(Invoice, request.qbo_invoice_id)
        except NotFound:
            raise _refused(
                Rejection(
                    RejectionCode.INVOICE_NOT_FOUND,
                    f"QuickBooks invoice {request.qbo_invoice_id} does not exist in "
                    f"{account.company_name}.",
                    field="qbo_invoice_id",
                ),
                Failure.TARGET_GONE,
            ) from None
        known = await self.store.invoice(account.realm_id, request.qbo_invoice_id)
        target = request.target.model_dump(mode="json")
        if known and known.get("target", target) != target:
            raise _refused(
                Rejection(
                    RejectionCode.INVOICE_ALREADY_LINKED,
                    f"Invoice {invoice.DocNumber or invoice.Id} is already tracked on another "
                    "CRM record.",
                    field="qbo_invoice_id",
                )
            )
        customer = await company.read(Customer, invoice.CustomerRef.value)
        currency = invoice.CurrencyRef.value if invoice.CurrencyRef else account.home_currency
        await self.store.save_invoice(
            account.realm_id,
            request.qbo_invoice_id,
            {
                "portal_id": event.tenant.portal_id,
                "deal_id": request.target.object_id
                if request.target.object_type is CrmObjectType.DEAL
                else None,
                "target": target,
                "request_id": str(request.request_id),
                "origin": "linked",
            },
        )
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
            invoice_date=invoice.TxnDate or self.today(),
            due_date=invoice.DueDate,
        )

    # ------------------------------------------------------------------ auto-draft rules

    async def on_crm_object_changed(self, event: Envelope[CrmObjectChanged]) -> None:
        """A deal entering a rule's stage requests one draft; never two for the same deal."""
        change = event.data
        portal_id = event.tenant.portal_id
        for rule in await self.store.rules_of(portal_id):
            if not domain.rule_fires(rule, change):
                continue
            claim = await self.store.claim_auto_draft(portal_id, change.object_id, rule.rule_id)
            if claim.get("status") != "pending":
                await self.store.relay_left(AUTO_DRAFTS, claim)
                return
            requested = await self.auto_draft_request(rule, change.object_id)
            await self._audit(
                f"deal:{portal_id}:{change.object_id}",
                event,
                "auto-draft.requested",
                {"rule_id": rule.rule_id, "request_id": str(requested.request_id)},
                related=[f"request:{requested.request_id}"],
            )
            await self.store.finish(
                AUTO_DRAFTS,
                claim["_id"],
                {"status": "requested", "request_id": str(requested.request_id)},
                [
                    Envelope.build(
                        requested,
                        source=SOURCE,
                        tenant=Tenant(portal_id=portal_id, account_id=rule.realm_id),
                        caused_by=None,
                        correlation_id=event.correlation_id,
                    )
                ],
            )
            return

    async def sweep_rule_stages(self) -> TenantPass:
        """The auto-draft rules' safety net: HubSpot does not send a lost webhook again, so a
        deal whose move into a rule's stage the gateway never heard of would never be drafted.
        Per portal (a failing one is skipped and reported), each rule's stage is searched for
        deals changed since the last pass; one that entered the stage while the rule was on and
        has no auto-draft yet goes through the webhook's own path, so whichever comes first
        drafts it, once."""
        portals = await self.store.portals_with_rules()
        return await each_tenant("auto-draft-sweep", portals, self._sweep_portal, kind="portal")

    async def _sweep_portal(self, portal_id: str) -> int:
        found = 0
        for rule in await self.store.rules_of(portal_id):
            if not rule.enabled or rule.active_since is None:
                continue
            started = self.now()
            since = await self.store.swept_until(portal_id, rule.rule_id) or rule.active_since
            since -= SWEEP_OVERLAP  # search lags writes by a few seconds
            for deal_id in await self._deals_in_stage(portal_id, rule.deal_stage, since):
                if await self.store.auto_draft_of(portal_id, deal_id) is not None:
                    continue
                entered = await self._entered(portal_id, deal_id, rule.deal_stage)
                if entered is None or entered < rule.active_since:
                    continue
                change = CrmObjectChanged(
                    crm_event_id=f"stage-sweep:{rule.rule_id}:{deal_id}",
                    object_type=CrmObjectType.DEAL,
                    object_id=deal_id,
                    change=CrmChange.PROPERTY_CHANGED,
                    changed_at=entered,
                    property_name="dealstage",
                    property_value=rule.deal_stage,
                    change_source="dealbooks-stage-sweep",
                )
                cause = Envelope.build(
                    change,
                    source=SOURCE,
                    tenant=Tenant(portal_id=portal_id),
                    correlation_id=f"stage-sweep:{portal_id}:{deal_id}",
                )
                log.info("deal found in a rule's stage without its webhook", deal_id=deal_id)
                try:
                    await self.on_crm_object_changed(cause)
                except Exception as exc:
                    # As the webhook's consumer would: this deal fails, the others go on.
                    failed = decide(exc, Origin.SYSTEM)
                    log.warning(
                        "stage sweep could not draft a deal",
                        deal_id=deal_id,
                        failure=failed.failure.value,
                        reason=failed.reason,
                    )
                    continue
                found += 1
            await self.store.mark_swept(portal_id, rule.rule_id, started)
        return found

    async def _deals_in_stage(self, portal_id: str, stage: str, since: datetime) -> list[str]:
        request = SearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(property_name="dealstage", operator="EQ", value=stage),
                        Filter(
                            property_name="hs_lastmodifieddate",
                            operator="GTE",
                            value=str(int(since.timestamp() * 1000)),
                        ),
                    ]
                )
            ],
            properties=["dealstage"],
            limit=100,
        )
        return [deal.id async for deal in self.crm.portal(portal_id).search_all("deals", request)]

    async def _entered(self, portal_id: str, deal_id: str, stage: str) -> datetime | None:
        """When the deal last entered `stage`, from the stage's history (None: it is not there)."""
        deal = await self.crm.portal(portal_id).get(
            "deals", deal_id, properties=["dealstage"], properties_with_history=["dealstage"]
        )
        if deal.get("dealstage") != stage:
            return None
        history = (deal.properties_with_history or {}).get("dealstage") or []
        moments = [h.timestamp for h in history if h.value == stage and h.timestamp]
        return max(moments) if moments else None

    async def auto_draft_request(
        self, rule: domain.AutoDraftRule, deal_id: str
    ) -> InvoiceRequested:
        """The request an auto-draft rule makes: the deal's line items, its party as customer."""
        account = await self.store.account(rule.realm_id)
        if account is None:
            raise PermanentError(f"auto-draft rule {rule.rule_id}: account {rule.realm_id} unknown")
        currency = account.home_currency
        items = await self.crm_lines(rule.portal_id, "deals", deal_id, currency)
        links = await self.store.product_links(rule.portal_id, rule.realm_id)
        lines = domain.lines_from_crm(
            items, links, rule.chosen_items, default_tax_code=rule.default_tax_code
        )
        if isinstance(lines, Rejection):
            raise PermanentError(f"auto-draft rule {rule.rule_id}, deal {deal_id}: {lines.message}")
        party = await self.crm_party(rule.portal_id, "deals", deal_id)
        customer = await self.customer_choice(rule.portal_id, rule.realm_id, party)
        return InvoiceRequested(
            request_id=domain.auto_draft_request_id(rule.portal_id, deal_id),
            deal_id=deal_id,
            origin=InvoiceRequestOrigin.AUTO_DRAFT_RULE,
            customer=customer,
            lines=lines,
            terms_id=rule.terms_id,
            rule_id=rule.rule_id,
        )

    # ------------------------------------------------------------------ CRM reads

    async def quote_facts(self, portal_id: str, quote_id: str) -> QuoteFacts | None:
        """A quote's status and expiry, or None when it does not exist."""
        try:
            quote = await self.crm.portal(portal_id).get(
                "quotes", quote_id, properties=_QUOTE_FACTS
            )
        except CrmNotFound:
            return None
        return QuoteFacts(
            quote_id=quote_id,
            status=quote.get("hs_status"),
            expires_at=_crm_datetime(quote.get("hs_expiration_date")),
            title=quote.get("hs_title"),
            currency=quote.get("hs_currency"),
        )  # fmt: skip

    async def _crm_parts(
        self, portal_id: str, parent_type: str, parent_id: str
    ) -> tuple[list[CrmObject], list[CrmObject], list[CrmObject]]:
        """Line items, contacts and companies of a deal or quote (empty when it is gone)."""
        crm = self.crm.portal(portal_id)
        try:
            if parent_type == "quotes":
                quote = await crm.read_quote(parent_id)
                return quote.line_items, quote.contacts, quote.companies
            deal = await crm.read_deal(parent_id)
        except CrmNotFound:
            return [], [], []
        return deal.line_items, deal.contacts, deal.companies

    async def crm_lines(
        self, portal_id: str, parent_type: str, parent_id: str, currency: str
    ) -> list[CrmLineItem]:
        """The line items of a deal or a quote, in id order."""
        items, _, _ = await self._crm_parts(portal_id, parent_type, parent_id)
        ordered = sorted(items, key=lambda li: li.id.rjust(20, "0"))
        return [_line_item(li, currency) for li in ordered]

    async def crm_party(self, portal_id: str, parent_type: str, parent_id: str) -> CrmParty:
        """The contact and company of a deal or quote (the first associated of each)."""
        _, contacts, companies = await self._crm_parts(portal_id, parent_type, parent_id)
        contact = contacts[0] if contacts else None
        company = companies[0] if companies else None
        return CrmParty(
            email=contact.get("email") if contact else None,
            first_name=contact.get("firstname") if contact else None,
            last_name=contact.get("lastname") if contact else None,
            company_name=company.get("name") if company else None,
            crm_contact_id=contact.id if contact else None,
            crm_company_id=company.id if company else None,
        )

    async def customer_choice(
        self, portal_id: str, realm_id: str, party: CrmParty
    ) -> ExistingCustomer | NewCustomer:
        """The matched QBO customer of a CRM party, or a new one built from it."""
        candidates = await self.search(realm_id).match_candidates(party)
        match = domain.match_customer(party, candidates)
        if match is not None:
            return ExistingCustomer(qbo_customer_id=match.customer.qbo_customer_id)
        person = " ".join(p for p in (party.first_name, party.last_name) if p)
        return NewCustomer(
            display_name=party.company_name or person or party.email or "CRM customer",
            company_name=party.company_name,
            given_name=party.first_name,
            family_name=party.last_name,
            email=party.email,
            crm_contact_id=party.crm_contact_id,
            crm_company_id=party.crm_company_id,
        )

    def search(self, realm_id: str) -> QboSearch:
        """The wizard's searches over one company (bounded QuickBooks queries)."""
        return QboSearch(self.qbo.company(realm_id))


_QUOTE_FACTS = ["hs_status", "hs_expiration_date", "hs_title", "hs_currency"]


def _aware(value: datetime) -> datetime:
    """A datetime read back from the MongoDB-wire server (naive UTC) made aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _task_ids(doc: dict[str, Any]) -> list[str]:
    """The CRM tasks an approval made: its own and its reminder."""
    return [str(doc[k]) for k in ("task_id", "reminder_task_id") if doc.get(k)]


def _crm_datetime(raw: str | None) -> datetime | None:
    """CRM datetimes come as ISO-8601 or epoch milliseconds."""
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _line_item(item: CrmObject, currency: str) -> CrmLineItem:
    quantity, price = item.decimal("quantity"), item.decimal("price")
    return CrmLineItem(
        line_item_id=item.id,
        name=item.get("name"),
        quantity=Decimal("1") if quantity is None else quantity,
        price=Decimal("0") if price is None else price,
        currency=item.get("hs_line_item_currency_code") or currency,
        crm_product_id=item.get("hs_product_id"),
        description=item.get("description"),
    )


def rejection_for(decision: Decision, error: BaseException, portal_id: str) -> Rejection:
    """What the person hears when the failure policy rejects their request (what to do about
    the failure is the policy's; only the words are invoice-builder's)."""
    if isinstance(error, Failed) and isinstance(error.detail, Rejection):
        return error.detail
    if isinstance(error, CrmPortalNotConfigured | CrmPortalNotInstalled):
        return domain.crm_not_connected_rejection(portal_id)
    if isinstance(error, AccountUnavailable) and not error.reauth_required:
        return Rejection(
            RejectionCode.ACCOUNT_NOT_CONNECTED,
            "This QuickBooks company is not connected to the portal.",
            field="account",
        )
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


def new_request_id() -> uuid.UUID:
    """A fresh request id for a submission (the idempotency key end to end)."""
    return uuid.uuid4()
