"""The rules of invoice approval (QuickBooks Online Advanced), with no I/O: which companies may
and do hold requests for approval, what an approver may approve, what the CRM tasks say, and
when a waiting approval reminds its approver.

A company with approval on has every valid invoice request wait in dealbooks' own approval
list instead of going to QuickBooks; a person approves it (the draft is then created, once)
or rejects it (the reason goes back to the deal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from dealbooks_contracts import (
    ApprovalDecision,
    InvoiceApprovalRequested,
    InvoiceLineRequest,
    InvoiceRequested,
    Money,
    RejectionCode,
)

from invoice_builder.domain import (
    AccountFacts,
    Rejection,
    check_dates,
    check_lines,
    line_amount,
    subtotal,
    usable_account,
)

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
DECIDED = (APPROVED, REJECTED)

DEFAULT_REMIND_AFTER_HOURS = 24.0
# A reminder later than a month says nothing a person still reads.
MAX_REMIND_AFTER_HOURS = 720.0
MAX_REASON = 1000
NOT_ADVANCED = "NOT_ADVANCED"


@dataclass(frozen=True)
class ApprovalSettings:
    """A company's approval settings. `approver_owner_id` is the CRM owner the approval task
    is assigned to (None: the deal's owner); `remind_after_hours` None sends no reminder;
    `approver_only`: only the CRM user behind the approval's approver may decide it (else
    anyone signed in for the portal)."""

    realm_id: str
    portal_id: str
    enabled: bool = False
    approver_owner_id: str | None = None
    remind_after_hours: float | None = DEFAULT_REMIND_AFTER_HOURS
    approver_only: bool = False


@dataclass(frozen=True)
class Approver:
    """The CRM user behind an approval's approver (a CRM owner)."""

    owner_id: str
    user_id: str | None
    email: str | None


def not_the_approver(
    approver_only: bool, approver_id: str | None, approver: Approver | None, by: str | None
) -> str | None:
    """Why the person `by` (a CRM user id) may not decide an approval; None when they may.
    With `approver_only` off, or no approver (the deal had no owner), anyone of the portal
    may."""
    if not approver_only or not approver_id:
        return None
    if approver is None:
        return (
            f"The approver (CRM owner {approver_id}) is no longer a user of this portal. "
            "Choose another approver in the approval settings, or let anyone approve."
        )
    if approver.user_id is not None and approver.user_id == by:
        return None
    who = approver.email or f"CRM owner {approver_id}"
    return f"Only the approver, {who}, may approve or reject this invoice."


def settings_problem(enabled: bool, account: AccountFacts) -> str | None:
    """Why approval cannot be switched on for a company (None: it can). Switching it off is
    always allowed."""
    if enabled and not account.is_advanced:
        edition = account.edition or "an edition QuickBooks did not name"
        return (
            "Invoice approval needs QuickBooks Online Advanced; "
            f"{account.company_name} is on {edition}."
        )
    return None


def holds_for_approval(settings: ApprovalSettings | None, account: AccountFacts) -> bool:
    """Whether a valid request of this company waits for approval: approval is on and the
    company is (still) on Advanced. A company that left Advanced drafts directly again."""
    return settings is not None and settings.enabled and account.is_advanced


def validate_approval(
    request: InvoiceRequested, account: AccountFacts | None, *, today: date
) -> Rejection | None:
    """What must hold for an approved request to become a draft: the company is connected
    and numbers its invoices itself, and the (possibly edited) lines and dates are valid. The
    quote was checked when the request was made; an approver decides on what they see."""
    checked = usable_account(account)
    if isinstance(checked, Rejection):
        return checked
    return check_lines(request.lines, checked) or check_dates(
        request.invoice_date or today, request.due_date
    )


def with_lines(request: InvoiceRequested, lines: Sequence[InvoiceLineRequest]) -> InvoiceRequested:
    """The request as an approver edited it: the same request with other lines."""
    return request.model_copy(update={"lines": list(lines)})


def total_of(request: InvoiceRequested) -> Decimal:
    """The lines' sum before tax (QuickBooks adds the tax when it creates the draft)."""
    return subtotal(request.lines)


def rejected(reason: str, decided_by: str | None) -> Rejection:
    """What the deal hears when an approver rejects a request."""
    who = f" by {decided_by}" if decided_by else ""
    return Rejection(
        RejectionCode.APPROVAL_REJECTED,
        f"The invoice was rejected in approval{who}: {reason}",
        field="approval",
    )


def clean_reason(reason: str | None) -> str | None:
    """A rejection's reason as kept: stripped, at most MAX_REASON characters; None if empty."""
    text = (reason or "").strip()
    return text[:MAX_REASON] or None


def reminder_due(requested_at: datetime, remind_after_hours: float | None, now: datetime) -> bool:
    """Whether a pending approval has waited long enough to remind its approver."""
    if not remind_after_hours or remind_after_hours <= 0:
        return False
    return now - requested_at >= timedelta(hours=remind_after_hours)


def approval_doc(
    portal_id: str,
    request: InvoiceRequested,
    account: AccountFacts,
    customer_name: str,
    approver_id: str | None,
    task_id: str | None,
) -> dict[str, Any]:
    """What an approval keeps: the request as it was made, the invoice's facts an approver
    reads in the list, who approves and the task that asks them."""
    return {
        "portal_id": portal_id,
        "realm_id": account.realm_id,
        "company_name": account.company_name,
        "deal_id": request.deal_id,
        "request": request.model_dump(mode="json"),
        "customer_name": customer_name,
        "currency": request.lines[0].unit_price.currency,
        "subtotal": format(total_of(request), "f"),
        "line_count": len(request.lines),
        "requested_by": request.requested_by,
        "origin": request.origin.value,
        "approver_id": approver_id,
        "task_id": task_id,
    }


def approval_requested(request: InvoiceRequested, doc: dict[str, Any]) -> InvoiceApprovalRequested:
    """`invoice.approval-requested` of an approval as it was opened."""
    requested_at: datetime = doc["requested_at"]
    return InvoiceApprovalRequested(
        request_id=request.request_id,
        deal_id=request.deal_id,
        requested_by=request.requested_by,
        approver_id=doc.get("approver_id"),
        total=Money(amount=Decimal(doc["subtotal"]), currency=doc["currency"]),
        line_count=doc["line_count"],
        crm_task_id=doc.get("task_id"),
        requested_at=aware(requested_at),
    )


def decision_fields(
    decision: ApprovalDecision,
    request: InvoiceRequested,
    account: AccountFacts | None,
    *,
    lines: Sequence[InvoiceLineRequest] | None,
    reason: str | None,
    today: date,
) -> dict[str, Any] | Rejection:
    """What a decision adds to its approval, or why it cannot be taken as sent: an approval
    (of the request, or of it with edited `lines`) must make a valid draft; a rejection must
    say why."""
    if decision is ApprovalDecision.APPROVED:
        if lines is not None:
            request = with_lines(request, lines)
        problem = validate_approval(request, account, today=today)
        if problem is not None:
            return problem
        return {
            "approved_request": request.model_dump(mode="json"),
            "edited": lines is not None,
            "approved_subtotal": format(total_of(request), "f"),
        }
    cleaned = clean_reason(reason)
    if cleaned is None:
        return Rejection(
            RejectionCode.APPROVAL_REJECTED, "Say why the invoice is rejected.", "reason"
        )
    return {"reason": cleaned}


def aware(value: datetime) -> datetime:
    """A datetime read back from the MongoDB-wire server (naive UTC) made aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def task_ids(doc: dict[str, Any]) -> list[str]:
    """The CRM tasks an approval made: its own and its reminder."""
    return [str(doc[k]) for k in ("task_id", "reminder_task_id") if doc.get(k)]


# ------------------------------------------------------------------ CRM tasks


def task_key(request_id: str, kind: str = "approval") -> str:
    """The key a task is claimed by and found again with (`approval` or `reminder`)."""
    return f"{kind}-{request_id}"


def task_reference(key: str) -> str:
    """The line a task's body carries so a run taking over a claim can find the task."""
    return f"Reference: {key}"


def carries_reference(body: str, key: str) -> bool:
    return task_reference(key) in body.replace("&#45;", "-")


@dataclass(frozen=True)
class TaskText:
    subject: str
    body: str


def _lines_html(request: InvoiceRequested) -> str:
    rows = []
    for line in request.lines:
        amount = line_amount(line.quantity, line.unit_price.amount)
        label = escape(line.description or f"item {line.qbo_item_id}")
        rows.append(f"<li>{label}: {line.quantity} x {line.unit_price.amount} = {amount}</li>")
    return "<ul>" + "".join(rows) + "</ul>"


def approval_task(
    request: InvoiceRequested, customer_name: str, currency: str, approval_url: str | None
) -> TaskText:
    """The task that asks the approver to decide, on the deal."""
    total = f"{total_of(request)} {currency}"
    link = f'<p><a href="{escape(approval_url)}">Open the approval</a></p>' if approval_url else ""
    body = (
        f"<p>An invoice for {escape(customer_name)} of {total} (before tax) waits for your "
        f"approval before it goes to QuickBooks.</p>{_lines_html(request)}{link}"
        f"<p>{task_reference(task_key(str(request.request_id)))}</p>"
    )
    return TaskText(f"Approve invoice for {customer_name} ({total})", body)


def reminder_task(
    request: InvoiceRequested,
    customer_name: str,
    currency: str,
    waiting_since: datetime,
    approval_url: str | None,
) -> TaskText:
    """The one reminder of an approval still pending past the company's time."""
    total = f"{total_of(request)} {currency}"
    link = f'<p><a href="{escape(approval_url)}">Open the approval</a></p>' if approval_url else ""
    since = waiting_since.strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<p>The invoice for {escape(customer_name)} of {total} has waited for approval since "
        f"{since}. Approve or reject it.</p>{link}"
        f"<p>{task_reference(task_key(str(request.request_id), 'reminder'))}</p>"
    )
    return TaskText(f"Reminder: approve invoice for {customer_name} ({total})", body)
