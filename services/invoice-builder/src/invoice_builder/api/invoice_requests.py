"""Invoice requests from the wizard: a preview of the invoice a body would draft, the
submission (published as `crm.invoice-requested`, answered 202 with the request id), and
where a submitted request stands. The request itself is built and handled in
`invoice_builder.requests`.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from dealbooks_contracts import (
    CrmRecordRef,
    CustomerChoice,
    Envelope,
    InvoiceLineRequest,
    InvoiceRequested,
    RejectionCode,
    Tenant,
)
from dealbooks_kit.openapi import ErrorAnswer, describe
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder import domain
from invoice_builder.api.common import (
    ACCOUNT,
    RejectionAnswer,
    Router,
    connected,
    error,
    json_object,
    rejection_view,
    requester,
    service,
)
from invoice_builder.deps import SOURCE
from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.service import Service

router = Router()


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


async def _requested(
    request: Request, problem_status: int
) -> tuple[AccountFacts, InvoiceRequested] | Response:
    """The account and the request a wizard body describes, or the answer to give instead:
    an error, or the problem that keeps the body from being a request (`problem_status`)."""
    found = await connected(request)
    try:
        body = WizardBody.model_validate(await json_object(request))
        shaped = body.model_dump(exclude_none=True)
        shaped["deal_id"] = str(body.deal_id)
        if (asker := requester(request, body.requested_by)) is not None:
            shaped["requested_by"] = asker
        if body.quote_id is not None:
            shaped["quote_id"] = str(body.quote_id)
        built = await service(request).handlers.requests.from_wizard(found, shaped)
    except (KeyError, PydanticValidationError) as exc:
        return error(400, f"invalid request: {exc}")
    if isinstance(built, Rejection):
        return JSONResponse({"problem": rejection_view(built)}, status_code=problem_status)
    return found, built


@router.route("POST", ACCOUNT + "/preview")
@describe(
    body=WizardBody,
    answers={200: PreviewAnswer, 400: ErrorAnswer, 404: ErrorAnswer},
    summary="What the invoice of a wizard body would be, and any problem with it.",
)
async def preview(request: Request) -> Response:
    found = await _requested(request, problem_status=200)
    if isinstance(found, Response):
        return found
    company, built = found
    handlers = service(request).handlers
    problem = await handlers.requests.problem_of(company, built)
    invoice_date = built.invoice_date or handlers.deps.today()
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
            "tax": "computed by QuickBooks" if company.is_us else "per line tax code",
            "invoice_date": invoice_date.isoformat(),
            "due_date": built.due_date.isoformat() if built.due_date else None,
            "problem": rejection_view(problem) if problem else None,
        }
    )  # fmt: skip


async def _pending(
    svc: Service, request_id: str, company: AccountFacts, deal_id: str | None
) -> bool:
    """Record a submitted request as pending; False when its id is another portal's (a
    request id is chosen by the caller, so it must not reach into another portal's request)."""
    await svc.store.mark_pending(request_id, company.portal_id, company.realm_id, deal_id)
    doc = await svc.store.request(request_id)
    return doc is not None and doc.get("portal_id") == company.portal_id


@router.route("POST", ACCOUNT + "/invoice-requests")
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
    svc = service(request)
    found = await _requested(request, problem_status=422)
    if isinstance(found, Response):
        return found
    company, built = found
    request_id = str(built.request_id)
    if not await _pending(svc, request_id, company, built.deal_id):
        return error(409, "this request id is taken; send a new one")
    tenant = Tenant(portal_id=company.portal_id, account_id=company.realm_id)
    await svc.runtime.publisher.publish(
        Envelope.build(built, source=SOURCE, tenant=tenant, correlation_id=request_id)
    )
    return JSONResponse({"request_id": request_id, "status": "pending"}, status_code=202)


@router.route("GET", "/invoice-requests/{request_id}")
@describe(
    answers={200: OutcomeAnswer, 404: ErrorAnswer},
    summary="Where a submitted request stands.",
)
async def outcome(request: Request) -> Response:
    doc = await service(request).store.request(request.path_params["request_id"])
    if doc is None or doc.get("portal_id") != request.path_params["portal_id"]:
        return error(404, "no such request")
    doc.pop("_id", None)
    doc.pop("outbox", None)
    return JSONResponse({k: v for k, v in doc.items() if not isinstance(v, date)})
