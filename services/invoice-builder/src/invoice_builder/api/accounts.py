"""The portal's QuickBooks companies, and what the wizard looks up in one: customers (with a
proposed match for the deal), items, tax codes, terms, and invoices to attach.

Searches answer one page of at most 50 rows from a few bounded QuickBooks queries
(`invoice_builder.search` says which and why); tax codes, terms and the first page of items
and customers are short lists, kept a minute (`invoice_builder.short_lists`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dealbooks_qbo import Invoice, TaxCode, Term
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder.api.common import (
    ACCOUNT,
    BadBody,
    Router,
    connected,
    service,
)
from invoice_builder.domain import AccountFacts
from invoice_builder.search import MAX_PAGE
from invoice_builder.service import Service
from invoice_builder.short_lists import ShortLists

# Longer than any name, number or address a search could be looking for.
MAX_QUERY_TEXT = 200


router = Router()


@router.route("GET", "/accounts")
async def accounts(request: Request) -> Response:
    found = await service(request).store.accounts_of(request.path_params["portal_id"])
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


def _lists(request: Request) -> ShortLists:
    lists: ShortLists = request.app.state.lists
    return lists


async def _proposal(service: Service, account: AccountFacts, deal_id: str) -> dict[str, Any] | None:
    """The best QuickBooks customer for the deal's contact and company, if any is fair."""
    handlers = service.handlers
    party = await handlers.crm_reads.party(account.portal_id, "deals", deal_id)
    match = await handlers.customers.proposal(account.realm_id, party)
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


@router.route("GET", ACCOUNT + "/customers")
async def customers(request: Request) -> Response:
    company = await connected(request)
    svc = service(request)
    text = _text(request)
    deal_id = request.query_params.get("deal_id")

    async def read() -> dict[str, Any]:
        hits = await svc.search(company.realm_id).customers(text)
        return {
            "customers": [
                {"qbo_customer_id": c.qbo_customer_id, "display_name": c.display_name,
                 "email": c.email, "currency": c.currency}
                for c in hits
            ]
        }  # fmt: skip

    # The first page (no search text) is a short list like the items'; a search is asked.
    listed = read() if text else _lists(request).get(company.realm_id, "customers", read)
    found, proposal = await asyncio.gather(
        listed, _proposal(svc, company, deal_id) if deal_id else _no_proposal()
    )
    return JSONResponse({**found, "proposal": proposal})


@router.route("GET", ACCOUNT + "/items")
async def items(request: Request) -> Response:
    company = await connected(request)
    text = _text(request)
    search = service(request).search(company.realm_id)

    async def read() -> dict[str, Any]:
        found, more = await search.items(text)
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
    return JSONResponse(await _lists(request).get(company.realm_id, "items", read))


@router.route("GET", ACCOUNT + "/tax-codes")
async def tax_codes(request: Request) -> Response:
    company = await connected(request)
    if company.is_us:
        return JSONResponse({"tax-codes": [], "note": "US companies send no tax codes"})
    return await _whole_list(request, company, "tax-codes", "SELECT * FROM TaxCode", _tax_code_row)


@router.route("GET", ACCOUNT + "/terms")
async def terms(request: Request) -> Response:
    company = await connected(request)
    return await _whole_list(request, company, "terms", "SELECT * FROM Term", _term_row)


def _tax_code_row(row: Any) -> dict[str, Any] | None:
    return (
        {"id": row.Id, "name": row.Name, "description": row.Description}
        if isinstance(row, TaxCode)
        else None
    )


def _term_row(row: Any) -> dict[str, Any] | None:
    return (
        {"id": row.Id, "name": row.Name, "due_days": row.DueDays} if isinstance(row, Term) else None
    )


async def _whole_list(
    request: Request,
    company: AccountFacts,
    kind: str,
    statement: str,
    row: Callable[[Any], dict[str, Any] | None],
) -> Response:
    """A short list read whole (`statement`), each entity shown by `row`."""
    qbo = service(request).clients.qbo.company(company.realm_id)

    async def read() -> dict[str, Any]:
        rows = [row(r) for r in await qbo.query_all(statement)]
        return {kind: [r for r in rows if r is not None]}

    return JSONResponse(await _lists(request).get(company.realm_id, kind, read))


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadBody(f"page must be a number from 1 to {MAX_PAGE}")
    return int(raw)


@router.route("GET", ACCOUNT + "/invoices")
async def invoices(request: Request) -> Response:
    company = await connected(request)
    customer_id = request.query_params.get("customer_id") or None
    if customer_id is not None and not customer_id.isdigit():
        raise BadBody("customer_id must be a QuickBooks customer id")
    search = service(request).search(company.realm_id)
    found, more = await search.invoices(_text(request), customer_id, _page(request))
    home = company.home_currency
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
