"""The wizard API a CRM card calls, per portal: accounts, customers (with a proposed match),
items, tax codes, terms, a preview, submission and polling of requests, links, rules.

Submitting publishes `crm.invoice-requested` and answers 202 with the request id; the outcome
is polled at /portals/{portal}/invoice-requests/{id}. Every route needs the API bearer token.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

from dealbooks_contracts import (
    CrmRecordRef,
    Envelope,
    InvoiceLineRequest,
    InvoiceLinkRequested,
    InvoiceRequested,
    InvoiceRequestOrigin,
    RejectionCode,
    Tenant,
)
from dealbooks_kit import CrmPortalNotConfigured
from dealbooks_qbo import Invoice, Item, TaxCode, Term
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoice_builder import domain
from invoice_builder.domain import AutoDraftRule, Rejection

if TYPE_CHECKING:
    from invoice_builder.app import Service

SOURCE = "invoice-builder"
_LINES = TypeAdapter(list[InvoiceLineRequest])


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _rejection(rejection: Rejection) -> dict[str, Any]:
    return {
        "code": rejection.code.value,
        "message": rejection.message,
        "field": rejection.field,
        "line_index": rejection.line_index,
    }


def build_api(service: Service) -> Starlette:
    """The wizard routes, bound to one service's store, clients and publisher."""
    store, handlers, settings = service.store, service.handlers, service.settings

    def authorized(request: Request) -> bool:
        if not settings.api_token:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given, settings.api_token)

    async def account_or_none(request: Request) -> domain.AccountFacts | None:
        account = await store.account(request.path_params["realm_id"])
        if account is None or account.portal_id != request.path_params["portal_id"]:
            return None
        return account

    async def accounts(request: Request) -> Response:
        found = await store.accounts_of(request.path_params["portal_id"])
        return JSONResponse(
            {
                "accounts": [
                    {
                        "realm_id": a.realm_id,
                        "company_name": a.company_name,
                        "country": a.country,
                        "home_currency": a.home_currency,
                        "custom_transaction_numbers": a.custom_transaction_numbers,
                    }
                    for a in found
                ]
            }
        )

    async def customers(request: Request) -> Response:
        account = await account_or_none(request)
        if account is None:
            return _error(404, "account not connected to this portal")
        candidates = await handlers.customer_candidates(account.realm_id)
        hits = domain.search_customers(request.query_params.get("q", ""), candidates)
        proposal = None
        deal_id = request.query_params.get("deal_id")
        if deal_id:
            party = await handlers.crm_party(account.portal_id, "deals", deal_id)
            match = domain.match_customer(party, candidates)
            if match:
                proposal = {
                    "qbo_customer_id": match.customer.qbo_customer_id,
                    "display_name": match.customer.display_name,
                    "score": match.score,
                    "reason": match.reason,
                }
        return JSONResponse(
            {
                "customers": [
                    {"qbo_customer_id": c.qbo_customer_id, "display_name": c.display_name,
                     "email": c.email, "currency": c.currency}
                    for c in hits
                ],
                "proposal": proposal,
            }
        )  # fmt: skip

    async def name_list(request: Request) -> Response:
        account = await account_or_none(request)
        if account is None:
            return _error(404, "account not connected to this portal")
        kind = request.path_params["kind"]
        company = handlers.qbo.company(account.realm_id)
        out: list[dict[str, Any]]
        if kind == "items":
            rows = await company.query_all("SELECT * FROM Item")
            out = [{"id": r.Id, "name": r.Name, "unit_price": str(r.UnitPrice or 0)}
                   for r in rows if isinstance(r, Item)]  # fmt: skip
        elif kind == "tax-codes":
            if account.is_us:
                return JSONResponse({"tax-codes": [], "note": "US companies send no tax codes"})
            rows = await company.query_all("SELECT * FROM TaxCode")
            out = [{"id": r.Id, "name": r.Name, "description": r.Description}
                   for r in rows if isinstance(r, TaxCode)]  # fmt: skip
        elif kind == "terms":
            rows = await company.query_all("SELECT * FROM Term")
            out = [{"id": r.Id, "name": r.Name, "due_days": r.DueDays}
                   for r in rows if isinstance(r, Term)]  # fmt: skip
        elif kind == "invoices":
            rows = await company.query_all("SELECT * FROM Invoice")
            needle = request.query_params.get("q", "").lower()
            out = [{"id": r.Id, "doc_number": r.DocNumber, "customer": r.CustomerRef.name,
                    "total": str(r.TotalAmt), "balance": str(r.Balance)}
                   for r in rows if isinstance(r, Invoice)
                   and needle in f"{r.DocNumber} {r.CustomerRef.name}".lower()][:50]  # fmt: skip
        else:
            return _error(404, f"unknown list {kind}")
        return JSONResponse({kind: out})

    async def draft_from(
        request: Request, account: domain.AccountFacts, body: dict[str, Any]
    ) -> InvoiceRequested | Rejection:
        """The request a wizard body describes: explicit lines, or the quote's or deal's."""
        deal_id = str(body["deal_id"])
        quote_id = body.get("quote_id")
        if quote_id:
            # An expired or unpublished quote is the reason to give, whatever its lines hold.
            quote = await handlers.quote_facts(account.portal_id, str(quote_id))
            problem = domain.check_quote(quote, str(quote_id), handlers.now())
            if problem is not None:
                return problem
        if body.get("lines"):
            lines = _LINES.validate_python(body["lines"])
        else:
            parent = ("quotes", str(quote_id)) if quote_id else ("deals", deal_id)
            items = await handlers.crm_lines(
                account.portal_id, parent[0], parent[1], account.home_currency
            )
            links = await store.product_links(account.portal_id, account.realm_id)
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
            parent_type, parent_id = ("quotes", str(quote_id)) if quote_id else ("deals", deal_id)
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

    async def requested(
        request: Request,
    ) -> tuple[domain.AccountFacts, InvoiceRequested | Rejection] | Response:
        """The account and the request a wizard body describes, or the error to answer."""
        account = await account_or_none(request)
        if account is None:
            return _error(404, "account not connected to this portal")
        try:
            return account, await draft_from(request, account, await request.json())
        except (KeyError, PydanticValidationError) as exc:
            return _error(400, f"invalid request: {exc}")

    async def preview(request: Request) -> Response:
        found = await requested(request)
        if isinstance(found, Response):
            return found
        account, built = found
        if isinstance(built, Rejection):
            return JSONResponse({"problem": _rejection(built)})
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

    async def submit(request: Request) -> Response:
        found = await requested(request)
        if isinstance(found, Response):
            return found
        account, built = found
        if isinstance(built, Rejection):
            return JSONResponse({"problem": _rejection(built)}, status_code=422)
        request_id = str(built.request_id)
        await store.mark_pending(request_id, account.portal_id, account.realm_id, built.deal_id)
        tenant = Tenant(portal_id=account.portal_id, account_id=account.realm_id)
        await service.runtime.publisher.publish(
            Envelope.build(built, source=SOURCE, tenant=tenant, correlation_id=request_id)
        )
        return JSONResponse({"request_id": request_id, "status": "pending"}, status_code=202)

    async def outcome(request: Request) -> Response:
        doc = await store.request(request.path_params["request_id"])
        if doc is None or doc.get("portal_id") != request.path_params["portal_id"]:
            return _error(404, "no such request")
        doc.pop("_id", None)
        doc.pop("outbox", None)
        return JSONResponse({k: v for k, v in doc.items() if not isinstance(v, date)})

    async def link(request: Request) -> Response:
        account = await account_or_none(request)
        if account is None:
            return _error(404, "account not connected to this portal")
        body = await request.json()
        try:
            data = InvoiceLinkRequested(
                request_id=uuid.uuid4(),
                qbo_invoice_id=str(body["qbo_invoice_id"]),
                target=CrmRecordRef.model_validate(body["target"]),
                requested_by=body.get("requested_by"),
            )
        except (KeyError, PydanticValidationError) as exc:
            return _error(400, f"invalid request: {exc}")
        await store.mark_pending(str(data.request_id), account.portal_id, account.realm_id, None)
        tenant = Tenant(portal_id=account.portal_id, account_id=account.realm_id)
        await service.runtime.publisher.publish(Envelope.build(data, source=SOURCE, tenant=tenant))
        return JSONResponse({"request_id": str(data.request_id), "status": "pending"}, 202)

    async def put_rule(request: Request) -> Response:
        body = await request.json()
        try:
            rule = AutoDraftRule(
                rule_id=request.path_params["rule_id"],
                portal_id=request.path_params["portal_id"],
                realm_id=str(body["realm_id"]),
                deal_stage=str(body["deal_stage"]),
                enabled=bool(body.get("enabled", True)),
                terms_id=body.get("terms_id"),
                default_tax_code=body.get("default_tax_code"),
                chosen_items=body.get("chosen_items") or {},
            )
        except KeyError as exc:
            return _error(400, f"missing {exc}")
        await store.save_rule(rule)
        return JSONResponse({"rule_id": rule.rule_id, "saved": True})

    def guarded(endpoint: Any) -> Any:
        async def call(request: Request) -> Response:
            if not authorized(request):
                return _error(401, "missing or wrong API token")
            response: Response = await endpoint(request)
            return response

        return call

    base = "/portals/{portal_id}"
    acct = base + "/accounts/{realm_id}"
    routes = [
        (base + "/accounts", accounts, ["GET"]),
        (acct + "/customers", customers, ["GET"]),
        (acct + "/{kind:str}", name_list, ["GET"]),
        (acct + "/preview", preview, ["POST"]),
        (acct + "/invoice-requests", submit, ["POST"]),
        (acct + "/invoice-links", link, ["POST"]),
        (base + "/invoice-requests/{request_id}", outcome, ["GET"]),
        (base + "/auto-draft-rules/{rule_id}", put_rule, ["PUT"]),
    ]

    async def crm_not_connected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CrmPortalNotConfigured)
        return _error(409, exc.reason, code=RejectionCode.CRM_NOT_CONNECTED.value)

    return Starlette(
        routes=[Route(p, guarded(h), methods=m) for p, h, m in routes],
        exception_handlers={CrmPortalNotConfigured: crm_not_connected},
    )
