"""Events of QuickBooks Online Advanced's extras: invoice approval (invoice-builder) and the
reminder workflows (reminders)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, Field

from .._types import EventPayload, Money, NonEmptyStr

__all__ = [
    "QBO_ADVANCED",
    "ApprovalDecision",
    "InvoiceApprovalDecided",
    "InvoiceApprovalRequested",
    "ReminderTaskClosed",
    "ReminderTaskOpened",
    "ReminderWorkflow",
    "is_advanced",
]

# The edition QuickBooks names in CompanyInfo's `NameValue` `OfferingSku`.
QBO_ADVANCED = "QuickBooks Online Advanced"


def is_advanced(edition: str | None) -> bool:
    """Whether a company's edition (its OfferingSku) is QuickBooks Online Advanced."""
    return (edition or "").strip().lower() == QBO_ADVANCED.lower()


class InvoiceApprovalRequested(EventPayload):
    """A valid invoice request waits for approval instead of going to QuickBooks (a company on
    QuickBooks Online Advanced with approval on). Nothing is in QuickBooks yet."""

    request_id: UUID
    deal_id: NonEmptyStr
    requested_by: str | None = Field(default=None, description="The CRM user who asked.")
    approver_id: str | None = Field(
        default=None, description="The CRM owner the approval task is assigned to."
    )
    total: Money
    line_count: int = Field(ge=1)
    crm_task_id: str | None = Field(default=None, description="The approval task on the deal.")
    requested_at: AwareDatetime


class ApprovalDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class InvoiceApprovalDecided(EventPayload):
    """An approver approved a pending request (the draft follows as `invoice.drafted`) or
    rejected it (the reason reaches the deal as `invoice.request-rejected`)."""

    request_id: UUID
    deal_id: NonEmptyStr
    decision: ApprovalDecision
    decided_by: str | None = None
    reason: str | None = Field(default=None, description="Why it was rejected.")
    edited: bool = Field(default=False, description="The approver changed the lines first.")
    decided_at: AwareDatetime


class ReminderWorkflow(StrEnum):
    """The four standard workflows of QuickBooks Online Advanced dealbooks runs itself."""

    PAYMENT = "payment"  # open invoices before and after their due date
    VENDOR = "vendor"  # the company's unpaid bills coming due or overdue
    DEPOSIT = "deposit"  # payments still in Undeposited Funds
    UNSENT = "unsent"  # invoices not e-mailed some days after they were made


class ReminderTaskOpened(EventPayload):
    """A reminder workflow opened a CRM task for one item and period."""

    workflow: ReminderWorkflow
    subject_type: NonEmptyStr = Field(description="invoice, bill or payment (QuickBooks).")
    subject_id: NonEmptyStr
    period: NonEmptyStr = Field(description="Which reminder of the item this is, e.g. 'due-3'.")
    crm_task_id: NonEmptyStr
    deal_id: str | None = None
    company_id: str | None = None
    due_date: date | None = None
    amount: Money | None = None


class ReminderTaskClosed(EventPayload):
    """The condition a reminder task was about cleared (paid, deposited, sent): the task was
    completed."""

    workflow: ReminderWorkflow
    subject_type: NonEmptyStr
    subject_id: NonEmptyStr
    crm_task_id: NonEmptyStr
    reason: NonEmptyStr = Field(description="paid, deposited, sent or cleared.")
