"""The workflows' rules without servers: which period an item is in today, when a reminder's
condition clears, what its task says, and which settings are refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from dealbooks_contracts import ReminderWorkflow
from reminders import domain
from reminders.domain import DEFAULTS, CloseReason, Item, ItemKind, Period

TODAY = date(2026, 6, 15)
PAYMENT = replace(DEFAULTS[ReminderWorkflow.PAYMENT], enabled=True)


def invoice(**fields: object) -> Item:
    base: dict[str, object] = {
        "kind": ItemKind.INVOICE,
        "id": "145",
        "amount": Decimal("459.00"),
        "currency": "USD",
        "doc_number": "1043",
        "party": "Amy's Bird Sanctuary",
        "due_date": TODAY,
        "txn_date": TODAY - timedelta(days=30),
    }
    return Item(**(base | fields))  # type: ignore[arg-type]


def test_an_invoice_three_days_before_its_due_date_is_in_the_before_period() -> None:
    period = domain.due_period(PAYMENT, invoice(due_date=TODAY + timedelta(days=3)), TODAY, 14)

    assert period == Period("due-3", -3, TODAY)


def test_an_overdue_invoice_is_in_the_latest_period_it_reached() -> None:
    due = TODAY - timedelta(days=8)

    period = domain.due_period(PAYMENT, invoice(due_date=due), TODAY, 14)

    assert period is not None and (period.label, period.on) == ("due+7", due + timedelta(days=7))


def test_no_reminder_before_the_first_period_nor_for_a_paid_invoice() -> None:
    early = invoice(due_date=TODAY + timedelta(days=10))
    paid = invoice(due_date=TODAY - timedelta(days=1), amount=Decimal("0"))

    assert domain.due_period(PAYMENT, early, TODAY, 14) is None
    assert domain.due_period(PAYMENT, paid, TODAY, 14) is None


def test_a_period_older_than_the_catch_up_window_is_left_out() -> None:
    long_overdue = invoice(due_date=TODAY - timedelta(days=40))  # due+14 began 26 days ago

    assert domain.due_period(PAYMENT, long_overdue, TODAY, 14) is None
    assert domain.due_period(PAYMENT, long_overdue, TODAY, 30) is not None


def test_the_query_window_covers_every_period_and_the_catch_up() -> None:
    first, last = domain.anchor_window(PAYMENT, TODAY, 14)

    assert first == TODAY - timedelta(days=14 + 14) and last == TODAY + timedelta(days=3)


def test_unsent_and_deposit_reminders_count_days_after_the_items_date() -> None:
    unsent = replace(DEFAULTS[ReminderWorkflow.UNSENT], enabled=True)
    deposit = replace(DEFAULTS[ReminderWorkflow.DEPOSIT], enabled=True)
    made = invoice(txn_date=TODAY - timedelta(days=2))
    payment = Item(ItemKind.PAYMENT, "9", Decimal("100"), txn_date=TODAY - timedelta(days=5))

    assert domain.due_period(unsent, made, TODAY, 14) == Period("created+2", 2, TODAY)
    assert domain.due_period(unsent, replace(made, sent=True), TODAY, 14) is None
    assert domain.due_period(deposit, payment, TODAY, 14) == Period(
        "held+3", 3, TODAY - timedelta(days=2)
    )
    assert domain.due_period(deposit, replace(payment, deposited=True), TODAY, 14) is None
    assert domain.due_period(deposit, replace(payment, held=False), TODAY, 14) is None


def test_close_reasons_say_what_cleared() -> None:
    open_invoice = invoice()
    bill = Item(ItemKind.BILL, "3", Decimal("0"), due_date=TODAY)
    payment = Item(ItemKind.PAYMENT, "9", Decimal("100"), deposited=True)

    assert domain.close_reason(ReminderWorkflow.PAYMENT, open_invoice) is None
    assert domain.close_reason(ReminderWorkflow.PAYMENT, replace(open_invoice, amount=0)) is (
        CloseReason.PAID
    )
    assert domain.close_reason(ReminderWorkflow.UNSENT, replace(open_invoice, sent=True)) is (
        CloseReason.SENT
    )
    assert domain.close_reason(ReminderWorkflow.VENDOR, bill) is CloseReason.PAID
    assert domain.close_reason(ReminderWorkflow.DEPOSIT, payment) is CloseReason.DEPOSITED
    assert domain.close_reason(ReminderWorkflow.PAYMENT, None) is CloseReason.CLEARED
    assert domain.close_reason(ReminderWorkflow.PAYMENT, replace(open_invoice, gone=True)) is (
        CloseReason.CLEARED
    )


def test_a_later_reminder_of_an_item_supersedes_the_earlier_ones() -> None:
    assert domain.superseded({"a": -3, "b": 1, "c": 7}) == ["a", "b"]
    assert domain.superseded({"a": 1}) == []


def test_the_task_says_the_companys_wording_and_carries_its_reference() -> None:
    settings = replace(PAYMENT, subject="{doc_number} for {customer}: {when}", body="Open {amount}")
    period = Period("due+7", 7, TODAY)
    key = domain.task_key("9130", ReminderWorkflow.PAYMENT, "145", period.label)

    text = domain.task_text(settings, invoice(), period, key, TODAY)

    assert text.subject == "1043 for Amy's Bird Sanctuary: 7 days overdue"
    assert text.body.startswith("<p>Open 459.00</p>")
    assert domain.carries_key(text.body, key) and f" {key} " in text.body
    assert key != domain.task_key("9130", ReminderWorkflow.PAYMENT, "145", "due+14")
    assert domain.priority(ReminderWorkflow.PAYMENT, period) == "HIGH"


def test_the_body_is_escaped_as_html() -> None:
    settings = replace(PAYMENT, body="{customer}")
    item = invoice(party="<b>Red Rock</b> & Co")

    text = domain.task_text(settings, item, Period("due+1", 1, TODAY), "dbr-x", TODAY)

    assert "<b>Red" not in text.body and "&lt;b&gt;Red Rock&lt;/b&gt; &amp; Co" in text.body


def test_defaults_are_valid_settings() -> None:
    for settings in DEFAULTS.values():
        assert domain.settings_problems(replace(settings, enabled=True)) == []


def test_invalid_settings_are_refused_with_reasons() -> None:
    unsent = DEFAULTS[ReminderWorkflow.UNSENT]
    cases = {
        "unknown placeholder {total}": replace(PAYMENT, subject="{total}"),
        "literal brace": replace(PAYMENT, body="Pay {now"),
        "between 0 and 365": replace(PAYMENT, days_after=(400,)),
        "counts days after only": replace(unsent, days_before=(2,)),
        "only the payment reminder": replace(unsent, send_invoice_email=True),
        "at least one reminder day": replace(PAYMENT, days_before=(), days_after=()),
        "CRM owner id": replace(PAYMENT, owner_id="someone@example.com"),
        "say what the task is": replace(PAYMENT, subject="  "),
    }

    for expected, settings in cases.items():
        problems = domain.settings_problems(settings)
        assert any(expected in p for p in problems), (expected, problems)


def test_stored_settings_fill_in_from_the_defaults() -> None:
    stored = {"enabled": True, "days_after": [2]}

    settings = domain.settings_from(ReminderWorkflow.PAYMENT, stored)

    assert settings.enabled and settings.days_after == (2,)
    assert settings.subject == DEFAULTS[ReminderWorkflow.PAYMENT].subject
    assert domain.settings_from(ReminderWorkflow.VENDOR, None) == DEFAULTS[ReminderWorkflow.VENDOR]
