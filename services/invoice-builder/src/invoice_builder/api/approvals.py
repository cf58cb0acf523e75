"""Invoice approval (QuickBooks Online Advanced), per portal: a company's approval settings,
the approvals waiting, one approval with its invoice as it would be created, approve (with
edited lines, checked as a request's are) and reject (with a reason).

The person deciding is the one whose portal grant calls (its user id, and e-mail address when
the grant has one), recorded in the audit trail and in `invoice.approval-decided`. Deciding
is one conditional write (pending -> decided): an approval approved twice, at once or one
after the other, is decided once and drafted once; a second approve answers 200 with
`already_decided`, a reject of an approved approval (or the other way round) 409.

    GET  /portals/{portal_id}/accounts/{realm_id}/approval-settings
    PUT  /portals/{portal_id}/accounts/{realm_id}/approval-settings
    GET  /portals/{portal_id}/approvals?status=pending|approved|rejected|all&deal_id=
    GET  /portals/{portal_id}/approvals/{request_id}
    POST /portals/{portal_id}/approvals/{request_id}/approve   {lines?}
    POST /portals/{portal_id}/approvals/{request_id}/reject    {reason}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from dealbooks_contracts import ApprovalDecision, InvoiceLineRequest, InvoiceRequested
from dealbooks_kit import Caller
from dealbooks_kit.openapi import describe
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder import approval, domain
from invoice_builder.api.common import (
    ACCOUNT,
    BadBody,
    Router,
    connected,
    error,
    rejection_view,
    service,
)
from invoice_builder.approvals import Decided, DecidedState

_LINES = TypeAdapter(list[InvoiceLineRequest])
STATUSES = ("pending", "approved", "rejected", "all")


SETTINGS = ACCOUNT + "/approval-settings"
ONE = "/approvals/{request_id}"
router = Router()


class ApprovalSettingsBody(BaseModel):
    """A company's approval settings as the settings page sends them."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool
    approver_owner_id: str | None = Field(
        default=None, description="The CRM owner who approves; none: each deal's owner."
    )
    remind_after_hours: float | None = Field(
        default=approval.DEFAULT_REMIND_AFTER_HOURS,
        gt=0,
        le=approval.MAX_REMIND_AFTER_HOURS,
        description="Remind the approver once after this long; none: no reminder.",
    )
    approver_only: bool = Field(
        default=False,
        description="Only the CRM user behind the approver may approve or reject (needs the "
        "crm.objects.owners.read scope); else anyone signed in for the portal.",
    )


class ApprovalSettingsAnswer(BaseModel):
    """A company's approval settings, whether its edition allows them, and whether requests
    wait for approval now."""

    realm_id: str
    company_name: str
    edition: str | None
    advanced: bool
    enabled: bool
    active: bool
    approver_owner_id: str | None
    remind_after_hours: float | None
    approver_only: bool


class ApproveBody(BaseModel):
    """Approve as the request was made, or with these lines instead."""

    model_config = ConfigDict(extra="ignore")

    lines: list[dict[str, Any]] | None = None


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: str = ""


class ApprovalAnswer(BaseModel):
    """An approval: who asked, the deal, the invoice as it would be created, where it stands."""

    request_id: str
    status: Literal["pending", "approved", "rejected"]
    realm_id: str
    company_name: str | None = None
    deal_id: str
    customer_name: str | None = None
    subtotal: str
    currency: str
    line_count: int
    requested_by: str | None = None
    requested_at: str | None = None
    approver_id: str | None = None
    crm_task_id: str | None = None
    reminded_at: str | None = None
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    edited: bool = False
    outcome: str | None = None
    qbo_invoice_id: str | None = None
    doc_number: str | None = None
    invoice: dict[str, Any] | None = None
    already_decided: bool | None = None


class ApprovalsAnswer(BaseModel):
    approvals: list[ApprovalAnswer]


class Refusal(BaseModel):
    """Why the call was refused, in a sentence (`code`: NOT_ADVANCED for a company whose
    edition has no approval; not_the_approver for a decision by someone else than the
    approver, where the company allows only the approver)."""

    error: str
    code: str | None = None


class ProblemAnswer(BaseModel):
    """What must change before the approval can be decided (a line, a date, the reason)."""

    problem: dict[str, Any]


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat() + ("" if value.tzinfo else "Z")
    return None


def invoice_view(request: InvoiceRequested, customer_name: str | None) -> dict[str, Any]:
    """The invoice an approval would create: customer, lines with amounts, totals, dates."""
    return {
        "customer": {**request.customer.model_dump(mode="json"), "name": customer_name},
        "lines": [
            {
                **line.model_dump(mode="json"),
                "amount": str(domain.line_amount(line.quantity, line.unit_price.amount)),
            }
            for line in request.lines
        ],
        "subtotal": str(domain.subtotal(request.lines)),
        "currency": request.lines[0].unit_price.currency,
        "terms_id": request.terms_id,
        "invoice_date": request.invoice_date.isoformat() if request.invoice_date else None,
        "due_date": request.due_date.isoformat() if request.due_date else None,
        "customer_message": request.customer_message,
        "quote_id": request.quote_id,
        "origin": request.origin.value,
    }


def approval_view(doc: dict[str, Any], *, full: bool, outcome: str | None = None) -> dict[str, Any]:
    """An approval document as the API answers it (`full`: with its invoice)."""
    view: dict[str, Any] = {
        "request_id": str(doc["_id"]),
        "status": doc["status"],
        "realm_id": str(doc["realm_id"]),
        "company_name": doc.get("company_name"),
        "deal_id": str(doc["deal_id"]),
        "customer_name": doc.get("customer_name"),
        "subtotal": doc.get("approved_subtotal") or doc["subtotal"],
        "currency": doc["currency"],
        "line_count": doc["line_count"],
        "requested_by": doc.get("requested_by"),
        "requested_at": _iso(doc.get("requested_at")),
        "approver_id": doc.get("approver_id"),
        "crm_task_id": doc.get("task_id"),
        "reminded_at": _iso(doc.get("reminded_at")),
        "decided_by": doc.get("decided_by"),
        "decided_by_name": doc.get("decided_by_name"),
        "decided_at": _iso(doc.get("decided_at")),
        "reason": doc.get("reason"),
        "edited": bool(doc.get("edited")),
        "outcome": outcome,
        "qbo_invoice_id": doc.get("qbo_invoice_id"),
        "doc_number": doc.get("doc_number"),
    }
    if full:
        shown = doc.get("approved_request") or doc["request"]
        request = InvoiceRequested.model_validate(shown)
        view["invoice"] = invoice_view(request, doc.get("customer_name"))
    return view


def _settings_view(
    company: domain.AccountFacts, settings: approval.ApprovalSettings | None
) -> dict[str, Any]:
    settings = settings or approval.ApprovalSettings(company.realm_id, company.portal_id)
    return {
        "realm_id": company.realm_id,
        "company_name": company.company_name,
        "edition": company.edition,
        "advanced": company.is_advanced,
        "enabled": settings.enabled,
        "active": approval.holds_for_approval(settings, company),
        "approver_owner_id": settings.approver_owner_id,
        "remind_after_hours": settings.remind_after_hours,
        "approver_only": settings.approver_only,
    }


@router.route("GET", SETTINGS)
@describe(
    answers={200: ApprovalSettingsAnswer, 404: Refusal},
    summary="A company's invoice approval settings (QuickBooks Online Advanced only).",
)
async def get_settings(request: Request) -> Response:
    company = await connected(request)
    settings = await service(request).store.approval_settings(company.realm_id)
    return JSONResponse(_settings_view(company, settings))


@router.route("PUT", SETTINGS)
@describe(
    body=ApprovalSettingsBody,
    answers={200: ApprovalSettingsAnswer, 400: Refusal, 404: Refusal, 422: Refusal},
    summary="Switch invoice approval on or off for a company, and choose approver and reminder.",
)
async def put_settings(request: Request) -> Response:
    company = await connected(request)
    try:
        body = ApprovalSettingsBody.model_validate(await request.json())
    except (ValueError, PydanticValidationError) as exc:
        return error(400, f"invalid approval settings: {exc}")
    problem = approval.settings_problem(body.enabled, company)
    if problem is not None:
        return error(422, problem, code=approval.NOT_ADVANCED)
    settings = approval.ApprovalSettings(
        realm_id=company.realm_id,
        portal_id=company.portal_id,
        enabled=body.enabled,
        approver_owner_id=(body.approver_owner_id or "").strip() or None,
        remind_after_hours=body.remind_after_hours,
        approver_only=body.approver_only,
    )
    svc = service(request)
    await svc.store.save_approval_settings(settings, _caller(request).user_id)
    audit = svc.handlers.deps.audit
    if audit is not None:
        await audit.record(
            "account",
            company.realm_id,
            None,
            None,
            "approval.settings-saved",
            {**_settings_view(company, settings), "by": _caller(request).user_id},
        )
    return JSONResponse(_settings_view(company, settings))


@router.route("GET", "/approvals")
@describe(
    answers={200: ApprovalsAnswer, 400: Refusal},
    summary="The portal's approvals (by default those waiting; `?deal_id=` those of one "
    "deal), oldest first.",
)
async def list_approvals(request: Request) -> Response:
    status = request.query_params.get("status", "pending")
    if status not in STATUSES:
        return error(400, f"status must be one of {', '.join(STATUSES)}")
    found = await service(request).store.approvals_of(
        request.path_params["portal_id"],
        None if status == "all" else status,
        deal_id=request.query_params.get("deal_id") or None,
    )
    return JSONResponse({"approvals": [approval_view(doc, full=False) for doc in found]})


@router.route("GET", ONE)
@describe(
    answers={200: ApprovalAnswer, 404: Refusal},
    summary="One approval with its invoice as it would be created.",
)
async def get_approval(request: Request) -> Response:
    svc = service(request)
    request_id = request.path_params["request_id"]
    doc = await svc.store.approval(request_id)
    if doc is None or doc.get("portal_id") != request.path_params["portal_id"]:
        return error(404, "no such approval")
    asked = await svc.store.request(request_id)
    outcome = (asked or {}).get("status")
    return JSONResponse(approval_view(doc, full=True, outcome=outcome))


def _caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


def _answer(decided: Decided) -> Response:
    if decided.state is DecidedState.UNKNOWN or decided.approval is None:
        return error(404, "no such approval")
    view = approval_view(decided.approval, full=True)
    if decided.state is DecidedState.INVALID:
        assert decided.problem is not None
        return JSONResponse({"problem": rejection_view(decided.problem)}, status_code=422)
    if decided.state is DecidedState.FORBIDDEN:
        return error(403, decided.refusal or "not the approver", code="not_the_approver")
    if decided.state is DecidedState.CONFLICT:
        return error(409, f"this approval was {view['status']} already", approval=view)
    return JSONResponse({**view, "already_decided": decided.state is DecidedState.ALREADY})


# What approve and reject answer.
DECISION_ANSWERS: dict[int, type[BaseModel] | None] = {
    200: ApprovalAnswer,
    400: Refusal,
    403: Refusal,
    404: Refusal,
    409: Refusal,
    422: ProblemAnswer,
}


Body = TypeVar("Body", bound=BaseModel)


async def _read(request: Request, model: type[Body]) -> Body:
    """The body as `model` (none: an empty object); BadBody (400) when it is not one."""
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except PydanticValidationError as exc:
        raise BadBody(f"invalid body: {exc}") from exc


async def _decide(
    request: Request,
    decision: ApprovalDecision,
    lines: list[InvoiceLineRequest] | None = None,
    reason: str | None = None,
) -> Response:
    """The caller's decision on the route's approval, answered as the approval now stands."""
    caller = _caller(request)
    decided = await service(request).handlers.approvals.decide(
        request.path_params["portal_id"],
        request.path_params["request_id"],
        decision,
        by=caller.user_id,
        by_name=caller.email,
        lines=lines,
        reason=reason,
    )
    return _answer(decided)


@router.route("POST", ONE + "/approve")
@describe(
    body=ApproveBody,
    answers=DECISION_ANSWERS,
    summary="Approve a pending approval (once, however often it is sent); the draft follows.",
)
async def approve(request: Request) -> Response:
    body = await _read(request, ApproveBody)
    lines = None
    if body.lines is not None:
        try:
            lines = _LINES.validate_python(body.lines)
        except PydanticValidationError as exc:
            raise BadBody(f"invalid lines: {exc}") from exc
        if not lines:
            raise BadBody("an approved invoice needs at least one line")
    return await _decide(request, ApprovalDecision.APPROVED, lines=lines)


@router.route("POST", ONE + "/reject")
@describe(
    body=RejectBody,
    answers=DECISION_ANSWERS,
    summary="Reject a pending approval with a reason; the reason goes on the deal.",
)
async def reject(request: Request) -> Response:
    body = await _read(request, RejectBody)
    return await _decide(request, ApprovalDecision.REJECTED, reason=body.reason)
