"""The wizard API a CRM card calls, per portal: accounts, customers (with a proposed match),
items, tax codes, terms, invoices to attach, a preview, submission and polling of requests,
links, auto-draft rules (list, read, save, delete).

Searches (customers, items, invoices) answer one page of at most 50 rows from a few bounded
QuickBooks queries (`invoice_builder.search` says which and why); tax codes and terms are
short lists and come whole. Submitting publishes `crm.invoice-requested` and answers 202 with
the request id; the outcome is polled at /portals/{portal}/invoice-requests/{id}. Every route
needs a portal grant naming the route's portal (`Access.PORTAL`); a company connected to
another portal, or another portal's rule, is a 404.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from dealbooks_contracts import (
    CrmRecordRef,
    CustomerChoice,
    Envelope,
    InvoiceLineRequest,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestOrigin,
    RejectionCode,
    Tenant,
)
from dealbooks_kit import (
    Access,
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Guard,
    audit_routes,
)
from dealbooks_kit.openapi import describe
from dealbooks_qbo import Invoice, TaxCode, Term
from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from invoice_builder import api_approvals, api_draft, domain
from invoice_builder.domain import AutoDraftRule, Rejection
from invoice_builder.search import MAX_PAGE

if TYPE_CHECKING:
    from invoice_builder.app import Service

SOURCE = "invoice-builder"
_LINES = TypeAdapter(list[InvoiceLineRequest])
# Longer than any name, number or address a search could be looking for.
MAX_QUERY_TEXT = 200


class WizardBody(BaseModel):
    """What the wizard sends for a preview or a request, checked for shape before anything
    is read or asked (the request's own rules are checked later, with reasons)."""

    model_config = ConfigDict(extra="ignore")

    deal_id: str | int
    quote_id: str | int | None = None
    lines: list[dict[str, Any]] | None = None
    customer: dict[str, Any] | None = None
    chosen_items: dict[str, str] | None = None
    tax_codes: dict[str, str] | None = None
    default_tax_code: str | None = None
    request_id: uuid.UUID | None = None
    terms_id: str | int | None = None
    invoice_date: date | None = None
    due_date: date | None = None
    customer_message: str | None = None
    requested_by: str | None = None


class RuleBody(BaseModel):
    """An auto-draft rule as the settings page sends it."""

    model_config = ConfigDict(extra="ignore")

    realm_id: str | int
    deal_stage: str
    enabled: bool = True
    terms_id: str | int | None = None
    default_tax_code: str | None = None
    chosen_items: dict[str, str] | None = None


class ErrorAnswer(BaseModel):
    """A refusal, in a sentence."""

    error: str


class RejectionAnswer(BaseModel):
    """Why a request cannot be drafted: a machine-readable code and a sentence for a person."""

    code: RejectionCode
    message: str
    field: str | None = None
    line_index: int | None = None


class ProblemAnswer(BaseModel):
    """A request the wizard must change before it can be submitted."""

    problem: RejectionAnswer


class PreviewLine(InvoiceLineRequest):
    """A line as the invoice would show it, with its amount (quantity x unit price)."""

    amount: str


class PreviewAnswer(BaseModel):
    """The invoice a request would draft, or only `problem` when it cannot be built."""

    customer: CustomerChoice | None = None
    lines: list[PreviewLine] | None = None
    subtotal: str | None = None
    currency: str | None = None
    tax: str | None = None
    invoice_date: date | None = None
    due_date: date | None = None
    problem: RejectionAnswer | None = None


class SubmittedAnswer(BaseModel):
    """A request accepted for drafting; poll its outcome by id."""

    request_id: str
    status: Literal["pending"]


class OutcomeAnswer(BaseModel):
    """Where a request stands: pending, awaiting approval (its company approves invoices
    first: the approval is `/approvals/{request_id}`), drafted (the invoice), rejected (why)
    or linked."""

    status: Literal["pending", "awaiting_approval", "drafted", "rejected", "linked"]
    portal_id: str
    realm_id: str | None = None
    deal_id: str | None = None
    qbo_invoice_id: str | None = None
    doc_number: str | None = None
    total: str | None = None
    currency: str | None = None
    code: RejectionCode | None = None
    message: str | None = None
    field: str | None = None
    line_index: int | None = None
    target: CrmRecordRef | None = None


class BadBody(Exception):
    """The body is not the JSON object this route takes; `message` says why."""


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise BadBody("the body must be JSON") from exc
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


NOT_CONNECTED = "account not connected to this portal"
NO_RULE = "no such auto-draft rule"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _rejection(rejection: Rejection) -> dict[str, Any]:
    return {
        "code": rejection.code.value,
        "message": rejection.message,
        "field": rejection.field,
        "line_index": rejection.line_index,
    }


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _account(request: Request, realm_id: str) -> domain.AccountFacts | None:
    """The company, if it is connected to the route's portal."""
    account = await _service(request).store.account(realm_id)
    if account is None or account.portal_id != request.path_params["portal_id"]:
        return None
    return account


# ------------------------------------------------------------------ lists


async def accounts(request: Request) -> Response:
    found = await _service(request).store.accounts_of(request.path_params["portal_id"])
    return JSONResponse(
        {
            "accounts": [
                {
                    "realm_id": a.realm_id,
                    "company_name": a.company_name,
                    "country": a.country,
                    "is_us": a.is_us,
                    "home_currency": a.home_currency,
                    "custom_transaction_numbers": a.custom_transaction_numbers,
                }
                for a in found
            ]
        }
    )


def _text(request: Request) -> str:
    """The `q` of a search; BadBody (400) when it is longer than anything searchable."""
    text = request.query_params.get("q", "")
    if len(text) > MAX_QUERY_TEXT:
        raise BadBody(f"q is longer than {MAX_QUERY_TEXT} characters")
    return text


async def _proposal(
    service: Service, account: domain.AccountFacts, deal_id: str
) -> dict[str, Any] | None:
    """The best QuickBooks customer for the deal's contact and company, if any is fair."""
    party = await service.handlers.crm_party(account.portal_id, "deals", deal_id)
    candidates = await service.handlers.search(account.realm_id).match_candidates(party)
    match = domain.match_customer(party, candidates)
    if match is None:
        return None
    return {
        "qbo_customer_id": match.customer.qbo_customer_id,
        "display_name": match.customer.display_name,
        "score": match.score,
        "reason": match.reason,
    }


async def _no_proposal() -> None:
    return None


async def customers(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    service = _service(request)
    text = _text(request)
    deal_id = request.query_params.get("deal_id")

    async def read() -> dict[str, Any]:
        hits = await service.handlers.search(account.realm_id).customers(text)
        return {
            "customers": [
                {"qbo_customer_id": c.qbo_customer_id, "display_name": c.display_name,
                 "email": c.email, "currency": c.currency}
                for c in hits
            ]
        }  # fmt: skip

    # The first page (no search text) is a short list like the items'; a search is asked.
    listed = read() if text else _lists(request).get(account.realm_id, "customers", read)
    found, proposal = await asyncio.gather(
        listed, _proposal(service, account, deal_id) if deal_id else _no_proposal()
    )
    return JSONResponse({**found, "proposal": proposal})


class ShortLists:
    """A company's short lists (terms, tax codes, the first page of items) kept for a minute
    per process: the wizard asks for them on every step, and each ask would otherwise spend
    the company's QuickBooks budget. A change in QuickBooks shows within `seconds`."""

    def __init__(self, seconds: float = 60.0, limit: int = 5000) -> None:
        self.seconds, self.limit = seconds, limit
        self._kept: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    async def get(
        self, realm_id: str, kind: str, read: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        now = time.monotonic()
        kept = self._kept.get((realm_id, kind))
        if kept is not None and kept[0] > now:
            return kept[1]
        answer = await read()
        if len(self._kept) >= self.limit:
            self._kept.clear()
        self._kept[(realm_id, kind)] = (now + self.seconds, answer)
        return answer


def _lists(request: Request) -> ShortLists:
    lists: ShortLists = request.app.state.lists
    return lists


async def items(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    text = _text(request)

    async def read() -> dict[str, Any]:
        found, more = await _service(request).handlers.search(account.realm_id).items(text)
        return {
            "items": [
                {"id": r.Id, "name": r.Name, "unit_price": str(r.UnitPrice or 0),
                 "type": r.Type, "taxable": bool(r.Taxable)}
                for r in found
            ],
            "more": more,
        }  # fmt: skip

    if text:
        return JSONResponse(await read())
    return JSONResponse(await _lists(request).get(account.realm_id, "items", read))


async def tax_codes(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    if account.is_us:
        return JSONResponse({"tax-codes": [], "note": "US companies send no tax codes"})
    company = _service(request).handlers.qbo.company(account.realm_id)

    async def read() -> dict[str, Any]:
        rows = await company.query_all("SELECT * FROM TaxCode")
        return {"tax-codes": [{"id": r.Id, "name": r.Name, "description": r.Description}
                              for r in rows if isinstance(r, TaxCode)]}  # fmt: skip

    return JSONResponse(await _lists(request).get(account.realm_id, "tax-codes", read))


async def terms(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    company = _service(request).handlers.qbo.company(account.realm_id)

    async def read() -> dict[str, Any]:
        rows = await company.query_all("SELECT * FROM Term")
        return {"terms": [{"id": r.Id, "name": r.Name, "due_days": r.DueDays}
                          for r in rows if isinstance(r, Term)]}  # fmt: skip

    return JSONResponse(await _lists(request).get(account.realm_id, "terms", read))


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadBody(f"page must be a number from 1 to {MAX_PAGE}")
    return int(raw)


async def invoices(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    customer_id = request.query_params.get("customer_id") or None
    if customer_id is not None and not customer_id.isdigit():
        raise BadBody("customer_id must be a QuickBooks customer id")
    search = _service(request).handlers.search(account.realm_id)
    found, more = await search.invoices(_text(request), customer_id, _page(request))
    home = account.home_currency
    return JSONResponse({"invoices": [_invoice_row(r, home) for r in found], "more": more})


def _invoice_row(invoice: Invoice, home_currency: str) -> dict[str, Any]:
    return {
        "id": invoice.Id,
        "doc_number": invoice.DocNumber,
        "customer": invoice.CustomerRef.name,
        "customer_id": invoice.CustomerRef.value,
        "total": str(invoice.TotalAmt if invoice.TotalAmt is not None else 0),
        "balance": str(invoice.Balance if invoice.Balance is not None else 0),
        "currency": invoice.CurrencyRef.value if invoice.CurrencyRef else home_currency,
        "txn_date": invoice.TxnDate.isoformat() if invoice.TxnDate else None,
        "due_date": invoice.DueDate.isoformat() if invoice.DueDate else None,
        "email_status": invoice.EmailStatus,
    }


# ------------------------------------------------------------------ requests


async def _draft_from(
    service: Service, account: domain.AccountFacts, body: dict[str, Any]
) -> InvoiceRequested | Rejection:
    """The request a wizard body describes: explicit lines, or the quote's or deal's."""
    handlers = service.handlers
    deal_id = str(body["deal_id"])
    quote_id = body.get("quote_id")
    if quote_id:
        # An expired or unpublished quote is the reason to give, whatever its lines hold.
        quote = await handlers.quote_facts(account.portal_id, str(quote_id))
        problem = domain.check_quote(quote, str(quote_id), handlers.now())
        if problem is not None:
            return problem
    parent_type, parent_id = ("quotes", str(quote_id)) if quote_id else ("deals", deal_id)
    if body.get("lines"):
        lines = _LINES.validate_python(body["lines"])
    else:
        items = await handlers.crm_lines(
            account.portal_id, parent_type, parent_id, account.home_currency
        )
        links = await service.store.product_links(account.portal_id, account.realm_id)
        built = domain.lines_from_crm(
            items,
            links,
            body.get("chosen_items") or {},
            body.get("tax_codes") or {},
            body.get("default_tax_code"),
        )
        if isinstance(built, Rejection):
            return built
        lines = built
    if body.get("customer"):
        customer = body["customer"]
    else:
        party = await handlers.crm_party(account.portal_id, parent_type, parent_id)
        customer = await handlers.customer_choice(account.portal_id, account.realm_id, party)
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


async def _requested(
    request: Request,
) -> tuple[domain.AccountFacts, InvoiceRequested | Rejection] | Response:
    """The account and the request a wizard body describes, or the error to answer."""
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    try:
        body = WizardBody.model_validate(await _json_object(request))
        shaped = body.model_dump(exclude_none=True)
        shaped["deal_id"] = str(body.deal_id)
        if body.quote_id is not None:
            shaped["quote_id"] = str(body.quote_id)
        return account, await _draft_from(_service(request), account, shaped)
    except (KeyError, PydanticValidationError) as exc:
        return _error(400, f"invalid request: {exc}")


@describe(
    body=WizardBody,
    answers={200: PreviewAnswer, 400: ErrorAnswer, 404: ErrorAnswer},
    summary="What the invoice of a wizard body would be, and any problem with it.",
)
async def preview(request: Request) -> Response:
    found = await _requested(request)
    if isinstance(found, Response):
        return found
    account, built = found
    if isinstance(built, Rejection):
        return JSONResponse({"problem": _rejection(built)})
    handlers = _service(request).handlers
    quote = None
    if built.quote_id:
        quote = await handlers.quote_facts(account.portal_id, built.quote_id)
    problem = domain.validate_request(
        built, account, today=handlers.today(), now=handlers.now(), quote=quote
    ) or domain.check_currency(built.lines[0].unit_price.currency, None, account)
    invoice_date = built.invoice_date or handlers.today()
    return JSONResponse(
        {
            "customer": built.customer.model_dump(mode="json"),
            "lines": [
                {**line.model_dump(mode="json"),
                 "amount": str(domain.line_amount(line.quantity, line.unit_price.amount))}
                for line in built.lines
            ],
            "subtotal": str(domain.subtotal(built.lines)),
            "currency": built.lines[0].unit_price.currency,
            "tax": "computed by QuickBooks" if account.is_us else "per line tax code",
            "invoice_date": invoice_date.isoformat(),
            "due_date": built.due_date.isoformat() if built.due_date else None,
            "problem": _rejection(problem) if problem else None,
        }
    )  # fmt: skip


async def _pending(
    service: Service, request_id: str, account: domain.AccountFacts, deal_id: str | None
) -> bool:
    """Record a submitted request as pending; False when its id is another portal's (a
    request id is chosen by the caller, so it must not reach into another portal's request)."""
    await service.store.mark_pending(request_id, account.portal_id, account.realm_id, deal_id)
    doc = await service.store.request(request_id)
    return doc is not None and doc.get("portal_id") == account.portal_id


@describe(
    body=WizardBody,
    answers={
        202: SubmittedAnswer,
        400: ErrorAnswer,
        404: ErrorAnswer,
        409: ErrorAnswer,
        422: ProblemAnswer,
    },
    summary="Submit an invoice request (crm.invoice-requested); its outcome is polled.",
)
async def submit(request: Request) -> Response:
    found = await _requested(request)
    if isinstance(found, Response):
        return found
    account, built = found
    if isinstance(built, Rejection):
        return JSONResponse({"problem": _rejection(built)}, status_code=422)
    service = _service(request)
    request_id = str(built.request_id)
    if not await _pending(service, request_id, account, built.deal_id):
        return _error(409, "this request id is taken; send a new one")
    tenant = Tenant(portal_id=account.portal_id, account_id=account.realm_id)
    await service.runtime.publisher.publish(
        Envelope.build(built, source=SOURCE, tenant=tenant, correlation_id=request_id)
    )
    return JSONResponse({"request_id": request_id, "status": "pending"}, status_code=202)


@describe(
    answers={200: OutcomeAnswer, 404: ErrorAnswer},
    summary="Where a submitted request stands.",
)
async def outcome(request: Request) -> Response:
    doc = await _service(request).store.request(request.path_params["request_id"])
    if doc is None or doc.get("portal_id") != request.path_params["portal_id"]:
        return _error(404, "no such request")
    doc.pop("_id", None)
    doc.pop("outbox", None)
    return JSONResponse({k: v for k, v in doc.items() if not isinstance(v, date)})


async def link(request: Request) -> Response:
    account = await _account(request, request.path_params["realm_id"])
    if account is None:
        return _error(404, NOT_CONNECTED)
    body = await _json_object(request)
    try:
        data = InvoiceLinkRequested(
            request_id=uuid.uuid4(),
            qbo_invoice_id=str(body["qbo_invoice_id"]),
            target=CrmRecordRef.model_validate(body["target"]),
            requested_by=body.get("requested_by"),
        )
    except (KeyError, PydanticValidationError) as exc:
        return _error(400, f"invalid request: {exc}")
    service = _service(request)
    await service.store.mark_pending(
        str(data.request_id), account.portal_id, account.realm_id, None
    )
    tenant = Tenant(portal_id=account.portal_id, account_id=account.realm_id)
    await service.runtime.publisher.publish(Envelope.build(data, source=SOURCE, tenant=tenant))
    return JSONResponse({"request_id": str(data.request_id), "status": "pending"}, 202)


async def put_rule(request: Request) -> Response:
    try:
        body = RuleBody.model_validate(await _json_object(request))
    except PydanticValidationError as exc:
        return _error(400, f"invalid rule: {exc}")
    rule = AutoDraftRule(
        rule_id=request.path_params["rule_id"],
        portal_id=request.path_params["portal_id"],
        realm_id=str(body.realm_id),
        deal_stage=body.deal_stage,
        enabled=body.enabled,
        terms_id=str(body.terms_id) if body.terms_id is not None else None,
        default_tax_code=body.default_tax_code,
        chosen_items=body.chosen_items or {},
    )
    # A rule drafts into its company: only into one connected to the rule's portal.
    if await _account(request, rule.realm_id) is None:
        return _error(404, NOT_CONNECTED)
    await _service(request).store.save_rule(rule)
    return JSONResponse({"rule_id": rule.rule_id, "saved": True})


def _rule_shape(rule: AutoDraftRule) -> dict[str, Any]:
    return {
        "rule_id": rule.rule_id,
        "realm_id": rule.realm_id,
        "deal_stage": rule.deal_stage,
        "enabled": rule.enabled,
        "terms_id": rule.terms_id,
        "default_tax_code": rule.default_tax_code,
        "chosen_items": dict(rule.chosen_items),
    }


async def list_rules(request: Request) -> Response:
    found = await _service(request).store.rules_of(request.path_params["portal_id"])
    ordered = sorted(found, key=lambda r: (r.deal_stage, r.rule_id))
    return JSONResponse({"rules": [_rule_shape(r) for r in ordered]})


async def get_rule(request: Request) -> Response:
    rule = await _service(request).store.rule(
        request.path_params["portal_id"], request.path_params["rule_id"]
    )
    if rule is None:
        return _error(404, NO_RULE)
    return JSONResponse(_rule_shape(rule))


async def delete_rule(request: Request) -> Response:
    rule_id = request.path_params["rule_id"]
    if not await _service(request).store.delete_rule(request.path_params["portal_id"], rule_id):
        return _error(404, NO_RULE)
    return JSONResponse({"rule_id": rule_id, "deleted": True})


async def bad_body(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def crm_not_connected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CrmPortalNotConfigured | CrmPortalNotInstalled)
    return _error(409, exc.reason, code=RejectionCode.CRM_NOT_CONNECTED.value)


def approval_routes(guard: Guard, base: str) -> list[BaseRoute]:
    """Invoice approval (QuickBooks Online Advanced): settings per company, the approvals."""
    a, portal = api_approvals, Access.PORTAL
    settings = base + "/accounts/{realm_id}/approval-settings"
    one = base + "/approvals/{request_id}"
    return [
        guard.route(settings, a.get_settings, ["GET"], portal),
        guard.route(settings, a.put_settings, ["PUT"], portal),
        guard.route(base + "/approvals", a.list_approvals, ["GET"], portal),
        guard.route(one, a.get_approval, ["GET"], portal),
        guard.route(one + "/approve", a.approve, ["POST"], portal),
        guard.route(one + "/reject", a.reject, ["POST"], portal),
    ]


def build_api(service: Service, guard: Guard) -> Starlette:
    """The wizard routes over one service, each open to a grant for the route's portal."""
    base = "/portals/{portal_id}"
    acct = base + "/accounts/{realm_id}"
    portal = Access.PORTAL
    api = guard.api(
        [
            guard.route(base + "/accounts", accounts, ["GET"], portal),
            guard.route(acct + "/customers", customers, ["GET"], portal),
            guard.route(acct + "/items", items, ["GET"], portal),
            guard.route(acct + "/tax-codes", tax_codes, ["GET"], portal),
            guard.route(acct + "/terms", terms, ["GET"], portal),
            guard.route(acct + "/invoices", invoices, ["GET"], portal),
            guard.route(acct + "/deals/{deal_id}/draft", api_draft.draft, ["GET"], portal),
            guard.route(acct + "/preview", preview, ["POST"], portal),
            guard.route(acct + "/invoice-requests", submit, ["POST"], portal),
            guard.route(acct + "/invoice-links", link, ["POST"], portal),
            guard.route(base + "/invoice-requests/{request_id}", outcome, ["GET"], portal),
            guard.route(base + "/auto-draft-rules", list_rules, ["GET"], portal),
            guard.route(base + "/auto-draft-rules/{rule_id}", get_rule, ["GET"], portal),
            guard.route(base + "/auto-draft-rules/{rule_id}", put_rule, ["PUT"], portal),
            guard.route(base + "/auto-draft-rules/{rule_id}", delete_rule, ["DELETE"], portal),
            *approval_routes(guard, base),
            *audit_routes(guard, service.runtime.use_audit()),
        ],
        exception_handlers={
            BadBody: bad_body,
            CrmPortalNotConfigured: crm_not_connected,
            CrmPortalNotInstalled: crm_not_connected,
        },
    )
    api.state.service = service
    api.state.lists = ShortLists()
    return api
