"""What the invoice wizard starts from, for one deal and company: the deal's quotes (each
with whether it may become an invoice, and why not), and the lines of the deal or of the
chosen quote with the QuickBooks product each is linked to (None where a person must pick
one). Nothing is refused here: the wizard shows the problem and lets the person choose.

`GET /portals/{portal_id}/accounts/{realm_id}/deals/{deal_id}/draft?quote_id=`
"""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import RejectionCode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder import domain
from invoice_builder.api.common import ACCOUNT, Router, connected, service
from invoice_builder.domain import CrmLineItem, QuoteFacts, Rejection

router = Router()


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
async def draft(request: Request) -> Response:
    company = await connected(request)
    svc = service(request)
    reads = svc.handlers.crm_reads
    portal_id, deal_id = company.portal_id, request.path_params["deal_id"]
    now = svc.handlers.deps.now()
    quote_id = request.query_params.get("quote_id") or None
    quotes = await reads.deal_quotes(portal_id, deal_id)
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
            "quote_id": quote_id,
            "quotes": views,
            "lines": [_line_view(item, links) for item in items],
            "problem": _problem(problem),
        }
    )
