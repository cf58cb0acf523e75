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
from typing import Any, TypeVar

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    CrmChange,
    CrmObjectChanged,
    CrmObjectType,
    Envelope,
    ExistingCustomer,
    InvoiceDrafted,
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

from invoice_builder import domain
from invoice_builder.domain import AccountFacts, CrmLineItem, CrmParty, QuoteFacts, Rejection
from invoice_builder.search import QboSearch
from invoice_builder.search import candidate as as_candidate
from invoice_builder.store import AUTO_DRAFTS, DRAFTED, FINAL, LINKED, REJECTED, REQUESTS, Store

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
        if existing and existing.get("status") in FINAL:
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
        drafted = await self._draft(event, account)
        await self.store.finish(
            REQUESTS,
            request_id,
            {
                "status": DRAFTED,
                "portal_id": event.tenant.portal_id,
                "realm_id": realm_id,
                "deal_id": request.deal_id,
                "qbo_invoice_id": drafted.qbo_invoice_id,
                "doc_number": drafted.doc_number,
                "total": format(drafted.total.amount, "f"),
                "currency": drafted.total.currency,
            },
            [Envelope.build(drafted, source=SOURCE, caused_by=event)],
        )

    async def _draft(
        self, event: Envelope[InvoiceRequested], account: AccountFacts
    ) -> InvoiceDrafted:
        request = event.data
        company = self.qbo.company(account.realm_id)
        resolved = await self._customer(event, company)
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
        self, event: Envelope[InvoiceRequested], company: QboCompany
    ) -> ResolvedCustomer:
        choice = event.data.customer
        if isinstance(choice, ExistingCustomer):
            return ResolvedCustomer(await self._existing(company, choice.qbo_customer_id), False)
        return await self._new_customer(event, company, choice)

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
        self, event: Envelope[InvoiceRequested], company: QboCompany, new: NewCustomer
    ) -> ResolvedCustomer:
        """Create the customer once; reuse it for later invoices of the same CRM record."""
        portal_id = event.tenant.portal_id
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
                    idempotency_key=domain.qbo_request_id(
                        event.data.request_id, f"customer:{name}"
                    ),
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
        event: Envelope[InvoiceRequested] | Envelope[InvoiceLinkRequested],
        decision: Decision,
        error: BaseException,
    ) -> None:
        """The failure policy rejects a request (or dead-lettered it, retries outlasted): tell
        the person who made it why, instead of leaving it pending for ever."""
        existing = await self.store.request(str(event.data.request_id))
        if existing and existing.get("status") in FINAL:
            await self.store.relay_left(REQUESTS, existing)
            return
        await self._reject(event, rejection_for(decision, error, event.tenant.portal_id))

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
