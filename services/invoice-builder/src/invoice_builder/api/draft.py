"""What the invoice wizard starts from, for one deal and company: the deal's name (what the
wizard is headed with; null when the deal has none or is gone), its quotes (each
with whether it may become an invoice, and why not), and the lines of the deal or of the
chosen quote with the QuickBooks product each is linked to (None where a person must pick
one). Nothing is refused here: the wizard shows the problem and lets the person choose.

`GET /portals/{portal_id}/accounts/{realm_id}/deals/{deal_id}/draft?quote_id=`
"""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import RejectionCode
from dealbooks_kit.openapi import describe
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder import domain
from invoice_builder.api.common import ACCOUNT, Router, connected, service
from invoice_builder.domain import CrmLineItem, QuoteFacts, Rejection

router = Router()


class DraftQuote(BaseModel):
    """One of the deal's quotes, and whether it may become an invoice (why not, if not)."""

    quote_id: str
    title: str | None
    status: str | None
    expires_at: str | None
    currency: str | None
    usable: bool
    problem: str | None
    problem_code: str | None


class DraftLine(BaseModel):
    """A line of the deal or quote, with the QuickBooks item its CRM product is linked to
    (None where a person must pick one)."""

    line_item_id: str
    name: str | None
    description: str | None
    quantity: str
    price: str
    currency: str
    crm_product_id: str | None
    qbo_item_id: str | None


class DraftProblem(BaseModel):
    """Why the lines shown cannot become an invoice as they are."""

    code: RejectionCode
    message: str


class DraftAnswer(BaseModel):
    """What the wizard shows: `deal_name` is the deal's name in the CRM (its `dealname`),
    null when it has none or the CRM does not know the deal."""

    deal_id: str
    deal_name: str | None
    quote_id: str | None
    quotes: list[DraftQuote]
    lines: list[DraftLine]
    problem: DraftProblem | None


def _problem(rejection: Rejection | None) -> dict[str, Any] | None:
    if rejection is None:
        return None
    return {"code": rejection.code.value, "message": rejection.message}


def _quote_view(quote: QuoteFacts, problem: Rejection | None) -> dict[str, Any]:
    return {
        "quote_id": quote.quote_id,
        "title": quote.title,
        "status": quote.status,
        "expires_at": quote.expires_at.isoformat() if quote.expires_at else None,
        "currency": quote.currency,
        "usable": problem is None,
        "problem": problem.message if problem else None,
        "problem_code": problem.code.value if problem else None,
    }


def _line_view(item: CrmLineItem, links: dict[str, str]) -> dict[str, Any]:
    return {
        "line_item_id": item.line_item_id,
        "name": item.name,
        "description": item.description,
        "quantity": str(item.quantity),
        "price": str(item.price),
        "currency": item.currency,
        "crm_product_id": item.crm_product_id,
        "qbo_item_id": links.get(item.crm_product_id) if item.crm_product_id else None,
    }


@router.route("GET", ACCOUNT + "/deals/{deal_id}/draft")
@describe(answers={200: DraftAnswer})
async def draft(request: Request) -> Response:
    company = await connected(request)
    svc = service(request)
    reads = svc.handlers.crm_reads
    portal_id, deal_id = company.portal_id, request.path_params["deal_id"]
    now = svc.handlers.deps.now()
    quote_id = request.query_params.get("quote_id") or None
    deal = await reads.deal_quotes(portal_id, deal_id)
    quotes = deal.quotes
    views = [_quote_view(q, domain.check_quote(q, q.quote_id, now)) for q in quotes]
    problem: Rejection | None = None
    if quote_id is not None:
        chosen = next((q for q in quotes if q.quote_id == quote_id), None)
        chosen = chosen or await reads.quote_facts(portal_id, quote_id)
        problem = domain.check_quote(chosen, quote_id, now)
    parent_type, parent_id = ("quotes", quote_id) if quote_id else ("deals", deal_id)
    items = await reads.lines(portal_id, parent_type, parent_id, company.home_currency)
    links = await svc.store.product_links(portal_id, company.realm_id)
    if not items and problem is None:
        problem = Rejection(RejectionCode.NO_LINES, "The deal or quote has no line items.")
    return JSONResponse(
        {
            "deal_id": deal_id,
            "deal_name": deal.name,
            "quote_id": quote_id,
            "quotes": views,
            "lines": [_line_view(item, links) for item in items],
            "problem": _problem(problem),
        }
    )
