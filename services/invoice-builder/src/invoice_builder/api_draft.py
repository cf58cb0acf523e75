"""What the invoice wizard starts from, for one deal and company: the deal's quotes (each
with whether it may become an invoice, and why not), and the lines of the deal or of the
chosen quote with the QuickBooks product each is linked to (None where a person must pick
one). Nothing is refused here: the wizard shows the problem and lets the person choose.

`GET /portals/{portal_id}/accounts/{realm_id}/deals/{deal_id}/draft?quote_id=`
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dealbooks_contracts import RejectionCode
from dealbooks_crm import CrmNotFound
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder import domain
from invoice_builder.domain import QuoteFacts, Rejection

if TYPE_CHECKING:
    from invoice_builder.app import Service

_QUOTES_SHOWN = 20


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


async def _deal_quotes(service: Service, portal_id: str, deal_id: str) -> list[QuoteFacts]:
    handlers = service.handlers
    try:
        deal = await handlers.crm.portal(portal_id).get("deals", deal_id, associations=["quotes"])
    except CrmNotFound:
        return []
    ids = deal.associated_ids("quotes")[:_QUOTES_SHOWN]
    found = await asyncio.gather(*(handlers.quote_facts(portal_id, q) for q in ids))
    return [q for q in found if q is not None]


async def draft(request: Request) -> Response:
    service: Service = request.app.state.service
    params = request.path_params
    portal_id, realm_id, deal_id = params["portal_id"], params["realm_id"], params["deal_id"]
    account = await service.store.account(realm_id)
    if account is None or account.portal_id != portal_id:
        return JSONResponse({"error": "account not connected to this portal"}, status_code=404)
    handlers = service.handlers
    now = handlers.now()
    quote_id = request.query_params.get("quote_id") or None
    quotes = await _deal_quotes(service, portal_id, deal_id)
    views = [_quote_view(q, domain.check_quote(q, q.quote_id, now)) for q in quotes]
    problem: Rejection | None = None
    if quote_id is not None:
        chosen = next((q for q in quotes if q.quote_id == quote_id), None)
        chosen = chosen or await handlers.quote_facts(portal_id, quote_id)
        problem = domain.check_quote(chosen, quote_id, now)
    parent_type, parent_id = ("quotes", quote_id) if quote_id else ("deals", deal_id)
    items = await handlers.crm_lines(portal_id, parent_type, parent_id, account.home_currency)
    links = await service.store.product_links(portal_id, realm_id)
    if not items and problem is None:
        problem = Rejection(RejectionCode.NO_LINES, "The deal or quote has no line items.")
    return JSONResponse(
        {
            "deal_id": deal_id,
            "quote_id": quote_id,
            "quotes": views,
            "lines": [
                {
                    "line_item_id": item.line_item_id,
                    "name": item.name,
                    "description": item.description,
                    "quantity": str(item.quantity),
                    "price": str(item.price),
                    "currency": item.currency,
                    "crm_product_id": item.crm_product_id,
                    "qbo_item_id": links.get(item.crm_product_id) if item.crm_product_id else None,
                }
                for item in items
            ],
            "problem": _problem(problem),
        }
    )
