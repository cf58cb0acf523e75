"""The reminder workflows' rules, pure: which item needs a reminder in which period today,
what its task says, when a reminder's condition has cleared, and which settings are valid.

A workflow reminds of *items* (a QuickBooks invoice, bill or payment) at *periods*: offsets in
days from the item's anchor date (an invoice's or bill's due date; an invoice's or payment's
transaction date). Today an item is in the latest period it has reached, as long as that
period began at most `catch_up_days` ago (a pass that did not run for a while still opens the
reminder). Each (company, workflow, item, period) gets one CRM task.
"""

from __future__ import annotations

import hashlib
import html
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from dealbooks_contracts import ReminderWorkflow

# What a task's subject and body may say, as `{name}`.
PLACEHOLDERS = frozenset(
    {"doc_number", "customer", "vendor", "amount", "currency", "due_date", "txn_date", "days",
     "when"}
)  # fmt: skip
MAX_OFFSETS = 6
MAX_DAYS = 365
MAX_SUBJECT = 200
MAX_BODY = 4000


class ItemKind(StrEnum):
    """What a reminder is about, in QuickBooks."""

    INVOICE = "invoice"
    BILL = "bill"
    PAYMENT = "payment"


SUBJECT_KIND: dict[ReminderWorkflow, ItemKind] = {
    ReminderWorkflow.PAYMENT: ItemKind.INVOICE,
    ReminderWorkflow.UNSENT: ItemKind.INVOICE,
    ReminderWorkflow.VENDOR: ItemKind.BILL,
    ReminderWorkflow.DEPOSIT: ItemKind.PAYMENT,
}
# Workflows whose periods count from a due date (days before and after it); the others count
# days after the item's transaction date.
DUE_DATE_WORKFLOWS = frozenset({ReminderWorkflow.PAYMENT, ReminderWorkflow.VENDOR})
PERIOD_PREFIX = {
    ReminderWorkflow.PAYMENT: "due",
    ReminderWorkflow.VENDOR: "due",
    ReminderWorkflow.UNSENT: "created",
    ReminderWorkflow.DEPOSIT: "held",
}


class CloseReason(StrEnum):
    """Why a reminder task was completed."""

    PAID = "paid"
    SENT = "sent"
    DEPOSITED = "deposited"
    CLEARED = "cleared"  # the item is gone (deleted, voided)
    SUPERSEDED = "superseded"  # a later reminder of the same item took its place


@dataclass(frozen=True)
class WorkflowSettings:
    """One company's settings of one workflow. `days_before` counts days before a due date
    (payment and vendor reminders only); `days_after` days after the due date, or after the
    invoice's or payment's date (unsent and deposit reminders). `owner_id`: the CRM owner
    every task is assigned to; None assigns it to the owner of the deal or company it is on.
    `records_only`: remind only of items dealbooks knows a CRM record for."""

    workflow: ReminderWorkflow
    enabled: bool = False
    days_before: tuple[int, ...] = ()
    days_after: tuple[int, ...] = ()
    subject: str = ""
    body: str = ""
    owner_id: str | None = None
    send_invoice_email: bool = False
    records_only: bool = False


DEFAULTS: dict[ReminderWorkflow, WorkflowSettings] = {
    ReminderWorkflow.PAYMENT: WorkflowSettings(
        ReminderWorkflow.PAYMENT,
        days_before=(3,),
        days_after=(1, 7, 14),
        subject="Payment reminder: invoice {doc_number} for {customer} {when}",
        body="Invoice {doc_number} for {customer} has {amount} {currency} open, due on "
        "{due_date} ({when}). Please follow up with the customer.",
        records_only=True,
    ),
    ReminderWorkflow.VENDOR: WorkflowSettings(
        ReminderWorkflow.VENDOR,
        days_before=(3,),
        days_after=(1,),
        subject="Bill {doc_number} from {vendor} {when}",
        body="Bill {doc_number} from {vendor}: {amount} {currency} to pay, due on {due_date} "
        "({when}).",
    ),
    ReminderWorkflow.DEPOSIT: WorkflowSettings(
        ReminderWorkflow.DEPOSIT,
        days_after=(3,),
        subject="Deposit the payment from {customer} ({amount} {currency})",
        body="The payment of {amount} {currency} from {customer} received on {txn_date} has "
        "been in Undeposited Funds for {days} days. Record its bank deposit in QuickBooks.",
    ),
    ReminderWorkflow.UNSENT: WorkflowSettings(
        ReminderWorkflow.UNSENT,
        days_after=(2,),
        subject="Send invoice {doc_number} to {customer}",
        body="Invoice {doc_number} for {customer} ({amount} {currency}) was made on {txn_date} "
        "and has not been e-mailed after {days} days.",
        records_only=True,
    ),
}


@dataclass(frozen=True)
class Item:
    """What a reminder looks at of a QuickBooks invoice, bill or payment, as read now.
    `amount` is what is open (an invoice's or bill's balance) or held (a payment's total)."""

    kind: ItemKind
    id: str
    amount: Decimal
    currency: str = ""
    doc_number: str | None = None
    party: str | None = None  # the customer or vendor
    due_date: date | None = None
    txn_date: date | None = None
    sent: bool = False  # an invoice QuickBooks e-mailed
    deposited: bool = False  # a payment a bank deposit took out of Undeposited Funds
    held: bool = True  # a payment that went to Undeposited Funds at all
    gone: bool = False  # deleted or voided
    invoices: tuple[str, ...] = ()  # the invoices a payment paid


@dataclass(frozen=True)
class Period:
    """One reminder of an item: `offset` days from its anchor date, beginning `on`."""

    label: str
    offset: int
    on: date


def anchor(workflow: ReminderWorkflow, item: Item) -> date | None:
    """The date a workflow counts an item's periods from."""
    return item.due_date if workflow in DUE_DATE_WORKFLOWS else item.txn_date


def offsets(settings: WorkflowSettings) -> list[int]:
    """Every period's offset in days from the anchor, earliest first."""
    before = [-d for d in settings.days_before] if settings.workflow in DUE_DATE_WORKFLOWS else []
    return sorted({*before, *settings.days_after})


def period_label(workflow: ReminderWorkflow, offset: int) -> str:
    """'due-3' (three days before the due date), 'due+7', 'created+2', 'held+3'."""
    return f"{PERIOD_PREFIX[workflow]}{offset:+d}"


def reminder_holds(workflow: ReminderWorkflow, item: Item) -> bool:
    """Whether the item is (still) what the workflow reminds of."""
    if item.gone:
        return False
    if workflow is ReminderWorkflow.DEPOSIT:
        return item.held and not item.deposited
    if workflow is ReminderWorkflow.UNSENT:
        return not item.sent and item.amount > 0
    return item.amount > 0


def close_reason(workflow: ReminderWorkflow, item: Item | None) -> CloseReason | None:
    """Why an open reminder of `item` (None: QuickBooks no longer has it) is over; None while
    it still holds."""
    if item is None or item.gone:
        return CloseReason.CLEARED
    if reminder_holds(workflow, item):
        return None
    if workflow is ReminderWorkflow.DEPOSIT:
        return CloseReason.DEPOSITED if item.deposited else CloseReason.CLEARED
    if workflow is ReminderWorkflow.UNSENT and item.sent:
        return CloseReason.SENT
    return CloseReason.PAID


def due_period(
    settings: WorkflowSettings, item: Item, today: date, catch_up_days: int
) -> Period | None:
    """The period an item is in today, if it needs a reminder: the latest one reached, if it
    began at most `catch_up_days` ago."""
    start = anchor(settings.workflow, item)
    if start is None or not reminder_holds(settings.workflow, item):
        return None
    reached = [o for o in offsets(settings) if start + timedelta(days=o) <= today]
    if not reached:
        return None
    offset = reached[-1]
    begins = start + timedelta(days=offset)
    if (today - begins).days > catch_up_days:
        return None
    return Period(period_label(settings.workflow, offset), offset, begins)


def anchor_window(settings: WorkflowSettings, today: date, catch_up_days: int) -> tuple[date, date]:
    """The anchor dates of items that may be in a period today: what to ask QuickBooks for."""
    found = offsets(settings) or [0]
    return (
        today - timedelta(days=found[-1] + catch_up_days),
        today - timedelta(days=found[0]),
    )


def task_key(realm_id: str, workflow: ReminderWorkflow, item_id: str, period: str) -> str:
    """The reference a reminder's task carries in its body: one word, found again by it."""
    digest = hashlib.sha256(f"{realm_id}|{workflow.value}|{item_id}|{period}".encode())
    return f"dbr-{digest.hexdigest()[:24]}"


def carries_key(body: str, key: str) -> bool:
    """Whether a task's body carries a reminder's reference."""
    return key in (body or "")


def when(workflow: ReminderWorkflow, period: Period) -> str:
    """The period in words, for `{when}`."""
    if workflow in DUE_DATE_WORKFLOWS:
        if period.offset < 0:
            return f"due in {-period.offset} day{'s' if period.offset != -1 else ''}"
        if period.offset == 0:
            return "due today"
        return f"{period.offset} day{'s' if period.offset != 1 else ''} overdue"
    return f"after {period.offset} day{'s' if period.offset != 1 else ''}"


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def placeholder_values(
    workflow: ReminderWorkflow, item: Item, period: Period, today: date
) -> dict[str, str]:
    """The values of every placeholder for one item and period."""
    start = anchor(workflow, item)
    days = abs(period.offset) if workflow in DUE_DATE_WORKFLOWS else period.offset
    if workflow not in DUE_DATE_WORKFLOWS and start is not None:
        days = max(days, (today - start).days)
    party = item.party or ""
    return {
        "doc_number": item.doc_number or item.id,
        "customer": party,
        "vendor": party,
        "amount": f"{item.amount:.2f}",
        "currency": item.currency,
        "due_date": item.due_date.isoformat() if item.due_date else "",
        "txn_date": item.txn_date.isoformat() if item.txn_date else "",
        "days": str(days),
        "when": when(workflow, period),
    }


def render(template: str, values: Mapping[str, str]) -> str:
    """A template with its placeholders filled in (unknown ones left empty)."""
    return string.Formatter().vformat(template, (), _Blank(values))


@dataclass(frozen=True)
class TaskText:
    subject: str
    body: str  # HTML, ending with the reminder's reference


def task_text(
    settings: WorkflowSettings, item: Item, period: Period, key: str, today: date
) -> TaskText:
    """What one reminder's task says: the company's wording with the item's values, and the
    reference that finds the task again."""
    values = placeholder_values(settings.workflow, item, period, today)
    subject = render(settings.subject, values).strip()[:MAX_SUBJECT] or key
    paragraphs = [html.escape(p) for p in render(settings.body, values).split("\n") if p.strip()]
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    # The reference stands as a word of its own, so a search by token finds it.
    return TaskText(subject, f"{body}<p>dealbooks reference: {key} </p>")


def priority(workflow: ReminderWorkflow, period: Period) -> str:
    """Past a due date a reminder is urgent."""
    return "HIGH" if workflow in DUE_DATE_WORKFLOWS and period.offset > 0 else "MEDIUM"


def task_due(period: Period, today: date) -> date:
    """The day a task is due: its period's first day, or today for a reminder caught up."""
    return max(period.on, today)


def template_problems(name: str, template: str) -> list[str]:
    """What is wrong with a subject or body template."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"{name}: {exc} (write {{{{ and }}}} for a literal brace)"]
    unknown = sorted({"{" + f + "}" for f in fields if f not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        return [f"{name}: unknown placeholder {', '.join(unknown)}; use {known}"]
    return []


def settings_problems(settings: WorkflowSettings) -> list[str]:
    """What is wrong with a workflow's settings (empty: they can be saved)."""
    problems: list[str] = []
    workflow = settings.workflow
    for name, days in (("days_before", settings.days_before), ("days_after", settings.days_after)):
        if len(days) > MAX_OFFSETS:
            problems.append(f"{name}: at most {MAX_OFFSETS} reminders")
        if any(not 0 <= d <= MAX_DAYS for d in days):
            problems.append(f"{name}: days are between 0 and {MAX_DAYS}")
    if settings.days_before and workflow not in DUE_DATE_WORKFLOWS:
        problems.append(f"days_before: the {workflow.value} reminder counts days after only")
    if settings.enabled and not offsets(settings):
        problems.append("a workflow that is on needs at least one reminder day")
    if not settings.subject.strip():
        problems.append("subject: say what the task is")
    if len(settings.subject) > MAX_SUBJECT:
        problems.append(f"subject: at most {MAX_SUBJECT} characters")
    if len(settings.body) > MAX_BODY:
        problems.append(f"body: at most {MAX_BODY} characters")
    problems += template_problems("subject", settings.subject)
    problems += template_problems("body", settings.body)
    if settings.send_invoice_email and workflow is not ReminderWorkflow.PAYMENT:
        problems.append("send_invoice_email: only the payment reminder sends invoices")
    if settings.owner_id is not None and not settings.owner_id.strip().isdigit():
        problems.append("owner_id: a CRM owner id (digits), or none for the record's owner")
    return problems


def settings_from(workflow: ReminderWorkflow, stored: Mapping[str, Any] | None) -> WorkflowSettings:
    """A workflow's settings as stored (missing ones: the defaults)."""
    base = DEFAULTS[workflow]
    if not stored:
        return base
    return WorkflowSettings(
        workflow,
        enabled=bool(stored.get("enabled", base.enabled)),
        days_before=tuple(stored.get("days_before", base.days_before)),
        days_after=tuple(stored.get("days_after", base.days_after)),
        subject=str(stored.get("subject", base.subject)),
        body=str(stored.get("body", base.body)),
        owner_id=stored.get("owner_id", base.owner_id),
        send_invoice_email=bool(stored.get("send_invoice_email", base.send_invoice_email)),
        records_only=bool(stored.get("records_only", base.records_only)),
    )


def settings_values(settings: WorkflowSettings) -> dict[str, Any]:
    """A workflow's settings as plain values, as stored and shown (`settings_from` reads them)."""
    return {
        "workflow": settings.workflow.value,
        "enabled": settings.enabled,
        "days_before": list(settings.days_before),
        "days_after": list(settings.days_after),
        "subject": settings.subject,
        "body": settings.body,
        "owner_id": settings.owner_id,
        "send_invoice_email": settings.send_invoice_email,
        "records_only": settings.records_only,
    }


def superseded(open_offsets: Mapping[str, int]) -> list[str]:
    """Of one item's open reminders (id -> period offset), those a later one replaced."""
    if len(open_offsets) < 2:
        return []
    latest = max(open_offsets.values())
    return sorted(i for i, o in open_offsets.items() if o < latest)
