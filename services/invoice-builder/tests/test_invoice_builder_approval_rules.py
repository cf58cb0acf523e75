"""The pure rules of invoice approval: which companies hold requests, what may be approved,
what the tasks say and when a waiting approval reminds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from dealbooks_contracts import (
    QBO_ADVANCED,
    ApprovalDecision,
    ExistingCustomer,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    RejectionCode,
)
from invoice_builder import approval
from invoice_builder.approval import ApprovalSettings, Approver
from invoice_builder.domain import AccountFacts, Rejection


def account(edition: str | None = QBO_ADVANCED, country: str = "US") -> AccountFacts:
    return AccountFacts(
        portal_id="p1",
        realm_id="r1",
        company_name="Summit Ridge Outfitters",
        country=country,
        home_currency="USD",
        multicurrency_enabled=False,
        custom_transaction_numbers=False,
        edition=edition,
    )


def line(quantity: str = "2", price: str = "49.995", tax: str | None = None) -> InvoiceLineRequest:
    return InvoiceLineRequest(
        qbo_item_id="1",
        quantity=Decimal(quantity),
        unit_price=Money(amount=Decimal(price), currency="USD"),
        description="Tent <b>XL</b>",
        tax_code_id=tax,
    )


def request(*lines: InvoiceLineRequest) -> InvoiceRequested:
    return InvoiceRequested(
        request_id=uuid.UUID(int=7),
        deal_id="42",
        origin=InvoiceRequestOrigin.WIZARD,
        customer=ExistingCustomer(qbo_customer_id="1"),
        lines=list(lines or [line()]),
    )


def test_only_an_advanced_company_with_approval_on_holds_requests() -> None:
    on = ApprovalSettings("r1", "p1", enabled=True)
    assert approval.holds_for_approval(on, account())
    assert not approval.holds_for_approval(on, account("QuickBooks Online Plus"))
    assert not approval.holds_for_approval(on, account(None))
    assert not approval.holds_for_approval(ApprovalSettings("r1", "p1"), account())
    assert not approval.holds_for_approval(None, account())


def test_switching_approval_on_is_refused_outside_advanced_and_off_never() -> None:
    assert approval.settings_problem(True, account()) is None
    problem = approval.settings_problem(True, account("QuickBooks Online Plus"))
    assert problem is not None and "QuickBooks Online Advanced" in problem
    assert "QuickBooks Online Plus" in problem
    assert approval.settings_problem(False, account("QuickBooks Online Plus")) is None


def test_edited_lines_are_checked_as_a_requests_are() -> None:
    asked = request()
    taxed = approval.with_lines(asked, [line(tax="7")])
    problem = approval.validate_approval(taxed, account(), today=date(2026, 12, 7))
    assert problem is not None and problem.code is RejectionCode.TAX_CODE_NOT_ALLOWED
    assert approval.validate_approval(asked, account(), today=date(2026, 12, 7)) is None
    gone = approval.validate_approval(asked, None, today=date(2026, 12, 7))
    assert gone is not None and gone.code is RejectionCode.ACCOUNT_NOT_CONNECTED
    assert approval.total_of(approval.with_lines(asked, [line("3", "10")])) == Decimal("30.00")


def test_a_rejection_carries_the_reason_and_who_decided() -> None:
    said = approval.rejected("Wrong price", "boss@summit.example")
    assert said.code is RejectionCode.APPROVAL_REJECTED
    assert said.message.endswith("by boss@summit.example: Wrong price")
    assert approval.clean_reason("   ") is None
    assert approval.clean_reason("x" * 5000) == "x" * approval.MAX_REASON


def test_a_reminder_is_due_after_the_companys_time_and_never_without_one() -> None:
    asked = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert not approval.reminder_due(asked, 24, asked + timedelta(hours=23))
    assert approval.reminder_due(asked, 24, asked + timedelta(hours=24))
    assert not approval.reminder_due(asked, None, asked + timedelta(days=30))
    assert not approval.reminder_due(asked, 0, asked + timedelta(days=30))


def test_tasks_carry_their_reference_and_escape_what_people_typed() -> None:
    asked = request()
    text = approval.approval_task(asked, "Amy & Co", "USD", "https://console.example/a")
    key = approval.task_key(str(asked.request_id))
    assert approval.carries_reference(text.body, key)
    assert not approval.carries_reference(text.body, approval.task_key("other"))
    assert "Amy &amp; Co" in text.body and "<b>" not in text.body
    assert text.subject == "Approve invoice for Amy & Co (99.99 USD)"
    reminder = approval.reminder_task(asked, "Amy", "USD", datetime(2026, 12, 7, tzinfo=UTC), None)
    assert approval.carries_reference(
        reminder.body, approval.task_key(str(asked.request_id), "reminder")
    )
    assert not approval.carries_reference(reminder.body, key)


def test_an_approval_needs_a_valid_draft_and_a_rejection_a_reason() -> None:
    today = date(2026, 3, 10)
    approved = approval.decision_fields(
        ApprovalDecision.APPROVED, request(), account(), lines=None, reason=None, today=today
    )
    assert approved == {
        "approved_request": request().model_dump(mode="json"),
        "edited": False,
        "approved_subtotal": "99.99",
    }
    edited = approval.decision_fields(
        ApprovalDecision.APPROVED, request(), account(), lines=[line("1")], reason=None, today=today
    )
    assert isinstance(edited, dict) and edited["edited"] and edited["approved_subtotal"] == "50.00"
    gone = approval.decision_fields(
        ApprovalDecision.APPROVED, request(), None, lines=None, reason=None, today=today
    )
    assert isinstance(gone, Rejection) and gone.code is RejectionCode.ACCOUNT_NOT_CONNECTED
    silent = approval.decision_fields(
        ApprovalDecision.REJECTED, request(), None, lines=None, reason="  ", today=today
    )
    assert isinstance(silent, Rejection) and silent.field == "reason"
    said = approval.decision_fields(
        ApprovalDecision.REJECTED, request(), None, lines=None, reason=" too dear ", today=today
    )
    assert said == {"reason": "too dear"}


def test_an_approval_keeps_the_request_and_announces_itself_with_its_total() -> None:
    doc = approval.approval_doc("p1", request(), account(), "Ada", "owner-1", "task-1")
    assert doc["portal_id"] == "p1" and doc["realm_id"] == "r1"
    assert (doc["subtotal"], doc["currency"], doc["line_count"]) == ("99.99", "USD", 1)
    asked = approval.approval_requested(
        request(), {**doc, "requested_at": datetime(2026, 3, 10, 9)}
    )
    assert asked.total == Money(amount=Decimal("99.99"), currency="USD")
    assert asked.requested_at == datetime(2026, 3, 10, 9, tzinfo=UTC)
    assert (asked.approver_id, asked.crm_task_id) == ("owner-1", "task-1")
    assert approval.task_ids({**doc, "reminder_task_id": "task-2"}) == ["task-1", "task-2"]


def test_only_the_approvers_user_may_decide_when_the_company_says_so() -> None:
    ann = Approver(owner_id="900000001", user_id="101", email="ann@summit.example")
    assert approval.not_the_approver(False, "900000001", ann, "202") is None  # anyone may
    assert approval.not_the_approver(True, None, None, "202") is None  # no approver: anyone
    assert approval.not_the_approver(True, "900000001", ann, "101") is None
    refused = approval.not_the_approver(True, "900000001", ann, "202")
    assert refused == "Only the approver, ann@summit.example, may approve or reject this invoice."
    nameless = Approver(owner_id="900000001", user_id="101", email=None)
    assert "CRM owner 900000001" in str(approval.not_the_approver(True, "900000001", nameless, ""))
    gone = approval.not_the_approver(True, "900000001", None, "101")
    assert gone is not None and "no longer a user of this portal" in gone
    userless = Approver(owner_id="900000001", user_id=None, email="team@summit.example")
    assert approval.not_the_approver(True, "900000001", userless, None) is not None
