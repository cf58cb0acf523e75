"""The pure rules of status-tracker: stages, the deal projection, payment changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from dealbooks_contracts import (
    CrmObjectType,
    CrmRecordRef,
    InvoiceRequestKind,
    InvoiceStage,
    PaymentChange,
    QboOperation,
)
from status_tracker.domain import (
    LISTED_STAGES,
    DealInvoice,
    InvoiceSnapshot,
    PaymentSeen,
    TimelineEntry,
    carries_reference,
    currency_skip_reason,
    deal_properties,
    is_stale,
    last_payment,
    link_entry,
    newest_first_key,
    payment_changes,
    payment_first_seen,
    projection_for_deal,
    qbo_invoice_url,
    record_name,
    rejection_entry,
    rejection_record,
    stage_of,
    tells_nothing_new,
    timeline_event_id,
)

TODAY = date(2026, 3, 10)
D = Decimal
PaymentEntry = Callable[..., TimelineEntry]  # the `a_payment_entry` fixture of conftest.py


def invoice(**changes: object) -> InvoiceSnapshot:
    base = InvoiceSnapshot(
        qbo_invoice_id="130",
        total=D("459.00"),
        balance=D("459.00"),
        currency="USD",
        due_date=date(2026, 4, 1),
        doc_number="1043",
        email_status="NotSet",
        recipient_email="ap@acme.example",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_new_invoice_is_awaiting_send() -> None:
    assert stage_of(invoice(), TODAY) is InvoiceStage.AWAITING_SEND


def test_queued_but_not_sent_invoice_is_awaiting_send() -> None:
    assert stage_of(invoice(email_status="NeedToSend"), TODAY) is InvoiceStage.AWAITING_SEND


def test_emailed_invoice_is_sent_to_customer() -> None:
    assert stage_of(invoice(email_status="EmailSent"), TODAY) is InvoiceStage.SENT


def test_delivery_by_email_counts_as_sent() -> None:
    assert stage_of(invoice(delivery_type="Email"), TODAY) is InvoiceStage.SENT


def test_partial_payment_marks_invoice_partially_paid() -> None:
    paid_some = invoice(balance=D("239.00"), email_status="EmailSent")
    assert stage_of(paid_some, TODAY) is InvoiceStage.PARTIALLY_PAID


def test_zero_balance_marks_invoice_paid_in_full() -> None:
    assert stage_of(invoice(balance=D("0.00")), TODAY) is InvoiceStage.PAID


def test_paid_invoice_is_not_overdue_after_its_due_date() -> None:
    assert stage_of(invoice(balance=D("0"), due_date=date(2026, 1, 1)), TODAY) is InvoiceStage.PAID


def test_past_due_invoice_with_balance_is_overdue() -> None:
    assert stage_of(invoice(due_date=date(2026, 3, 9)), TODAY) is InvoiceStage.OVERDUE


def test_partially_paid_past_due_invoice_is_overdue() -> None:
    late = invoice(balance=D("10"), due_date=date(2026, 3, 9))
    assert stage_of(late, TODAY) is InvoiceStage.OVERDUE


def test_invoice_due_today_is_not_overdue() -> None:
    assert stage_of(invoice(due_date=TODAY), TODAY) is InvoiceStage.AWAITING_SEND


def test_invoice_without_due_date_never_becomes_overdue() -> None:
    assert stage_of(invoice(due_date=None), date(2030, 1, 1)) is InvoiceStage.AWAITING_SEND


def test_voided_invoice_is_never_paid() -> None:
    voided = invoice(total=D("0"), balance=D("0"), private_note="Voided")
    assert stage_of(voided, TODAY) is InvoiceStage.VOIDED


def test_void_webhook_marks_invoice_voided_even_before_it_is_zeroed() -> None:
    assert stage_of(invoice(void_seen=True), TODAY) is InvoiceStage.VOIDED


def test_deleted_invoice_is_never_paid() -> None:
    gone = invoice(total=D("0"), balance=D("0"), deleted=True)
    assert stage_of(gone, TODAY) is InvoiceStage.DELETED


def test_zero_total_invoice_is_not_paid() -> None:
    nothing_owed = invoice(total=D("0"), balance=D("0"), private_note=None)
    assert stage_of(nothing_owed, TODAY) is InvoiceStage.AWAITING_SEND


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, InvoiceStage.AWAITING_SEND),
        ({"email_status": "EmailSent"}, InvoiceStage.SENT),
        ({"balance": D("1")}, InvoiceStage.PARTIALLY_PAID),
        ({"balance": D("0")}, InvoiceStage.PAID),
        ({"due_date": date(2026, 3, 1)}, InvoiceStage.OVERDUE),
        ({"deleted": True, "balance": D("0")}, InvoiceStage.DELETED),
        ({"void_seen": True, "balance": D("0")}, InvoiceStage.VOIDED),
    ],
)
def test_every_stage_is_reachable(changes: dict[str, object], expected: InvoiceStage) -> None:
    assert stage_of(invoice(**changes), TODAY) is expected


def test_older_sync_token_is_stale() -> None:
    assert is_stale(1, 2)
    assert not is_stale(2, 2)
    assert not is_stale(0, None)


def _at(hour: int) -> datetime:
    return datetime(2026, 3, 10, hour, tzinfo=UTC)


def test_deal_shows_its_most_recently_updated_invoice() -> None:
    older = DealInvoice(invoice(qbo_invoice_id="1", last_updated=_at(9)), InvoiceStage.PAID)
    newer = DealInvoice(invoice(qbo_invoice_id="2", last_updated=_at(11)), InvoiceStage.SENT)
    assert projection_for_deal([newer, older]) is newer
    assert projection_for_deal([]) is None


def test_deal_properties_carry_amount_recipient_number_status_and_due_date() -> None:
    props = deal_properties(DealInvoice(invoice(), InvoiceStage.SENT))
    assert props == {
        "acct_amount_billed": "459.00",
        "acct_invoice_recipient": "ap@acme.example",
        "acct_invoice_number": "1043",
        "acct_invoice_status": "sent",
        "acct_invoice_due_date": "2026-04-01",
    }


def test_foreign_currency_invoice_is_not_written_to_the_deal() -> None:
    reason = currency_skip_reason("GBP", "USD")
    assert reason is not None and "GBP" in reason and "USD" in reason
    assert currency_skip_reason("USD", "USD") is None


def test_new_payment_is_applied() -> None:
    assert payment_changes({}, {"130": D("220")}) == [payment_changes({}, {"130": D("220")})[0]]
    [change] = payment_changes({}, {"130": D("220")})
    assert (change.change, change.amount) == (PaymentChange.APPLIED, D("220"))


def test_redelivered_payment_changes_nothing() -> None:
    assert payment_changes({"130": D("220")}, {"130": D("220")}) == []


def test_edited_payment_amount_is_an_update() -> None:
    [change] = payment_changes({"130": D("220")}, {"130": D("200")})
    assert (change.change, change.amount) == (PaymentChange.UPDATED, D("200"))


def test_deleted_payment_is_removed_from_every_invoice_it_paid() -> None:
    changes = payment_changes({"130": D("220"), "131": D("5")}, {})
    assert [(c.qbo_invoice_id, c.change) for c in changes] == [
        ("130", PaymentChange.REMOVED),
        ("131", PaymentChange.REMOVED),
    ]


def test_payment_moved_to_another_invoice_is_removed_and_applied() -> None:
    changes = payment_changes({"130": D("50")}, {"131": D("50")})
    assert {(c.qbo_invoice_id, c.change) for c in changes} == {
        ("130", PaymentChange.REMOVED),
        ("131", PaymentChange.APPLIED),
    }


def test_timeline_event_id_is_deterministic_per_payment_change() -> None:
    first = timeline_event_id("r1", "p1", "130", PaymentChange.APPLIED, "0")
    assert first == timeline_event_id("r1", "p1", "130", PaymentChange.APPLIED, "3")
    edit1 = timeline_event_id("r1", "p1", "130", PaymentChange.UPDATED, "1")
    edit2 = timeline_event_id("r1", "p1", "130", PaymentChange.UPDATED, "2")
    assert len({first, edit1, edit2}) == 3


def test_a_payment_entry_carries_the_event_properties_and_says_the_same_in_its_note(
    a_payment_entry: PaymentEntry,
) -> None:
    entry = a_payment_entry(
        key="qbo-pay-r1-p1-130",
        deal_id="77",
        event_type="dealbooks_invoice_payment",
        amount=D("220.00"),
        paid_on=date(2015, 5, 1),
        invoice_number="1043",
        method=None,
        balance=D("239.00"),
    )
    assert (entry.object_type, entry.object_id, entry.key) == ("deals", "77", "qbo-pay-r1-p1-130")
    assert entry.properties == {
        "invoiceNumber": "1043",
        "amount": "220.00",
        "currency": "USD",
        "change": "applied",
        "paidOn": "2015-05-01",
        "method": "unknown",
        "invoiceBalance": "239.00",
    }
    for shown in ("220.00 USD", "invoice 1043", "2015-05-01", "239.00 USD", "qbo-pay-r1-p1-130"):
        assert shown in entry.note_html


def test_a_payment_entry_escapes_what_quickbooks_names_in_its_note(
    a_payment_entry: PaymentEntry,
) -> None:
    entry = a_payment_entry(
        invoice_number="<b>1</b>", change=PaymentChange.REMOVED, method="Cash & check"
    )
    assert "<b>1</b>" not in entry.note_html and "&lt;b&gt;1&lt;/b&gt;" in entry.note_html
    assert "Cash &amp; check" in entry.note_html and "payment removed" in entry.note_html


def test_a_refusal_is_shown_on_the_record_it_was_made_from_else_its_deal() -> None:
    contact = CrmRecordRef(object_type=CrmObjectType.CONTACT, object_id="501")
    quote = CrmRecordRef(object_type=CrmObjectType.QUOTE, object_id="9")
    assert rejection_record("77", contact) == ("contacts", "501")
    assert rejection_record("77", None) == ("deals", "77")
    assert rejection_record("77", quote) == ("deals", "77")
    assert rejection_record(None, None) is None


def test_a_refusal_entry_says_what_was_refused_why_and_where() -> None:
    entry = rejection_entry(
        request_id="r-1",
        kind=InvoiceRequestKind.DRAFT,
        code="TAX_CODE_REQUIRED",
        message="Line 2 needs a tax code; choose one and send the request again.",
        field_name="lines",
        line_index=1,
        object_type="deals",
        object_id="77",
        event_type=None,
    )
    assert entry.key == "dealbooks-rejected-r-1"
    assert "QuickBooks invoice not created" in entry.note_html
    assert "TAX_CODE_REQUIRED (field lines, line 2)" in entry.note_html
    assert "choose one and send the request again" in entry.note_html
    assert entry.properties["code"] == "TAX_CODE_REQUIRED"


def test_a_records_invoices_are_newest_first_by_invoice_date_then_latest_change() -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    keys = {
        "old": newest_first_key(date(2026, 1, 5), t, "7"),
        "new": newest_first_key(date(2026, 3, 1), None, "5"),
        "new-changed": newest_first_key(date(2026, 3, 1), t, "3"),
        "undated": newest_first_key(None, t, "9"),
    }
    order = sorted(keys, key=keys.__getitem__, reverse=True)
    assert order == ["new-changed", "new", "old", "undated"]
    naive = newest_first_key(None, t.replace(tzinfo=None), "1")
    assert naive == newest_first_key(None, t, "1")  # stored UTC, read back naive


def test_the_last_payment_is_the_latest_dated_one_and_deleted_invoices_are_not_listed() -> None:
    payments = [PaymentSeen(D("20"), date(2026, 3, 2)), PaymentSeen(D("5"), date(2026, 3, 9))]
    assert last_payment(payments) == PaymentSeen(D("5"), date(2026, 3, 9))
    assert last_payment([]) is None
    assert InvoiceStage.DELETED not in LISTED_STAGES and InvoiceStage.VOIDED in LISTED_STAGES


def test_the_quickbooks_link_of_an_invoice_uses_the_configured_web_app() -> None:
    assert qbo_invoice_url("https://app.qbo.intuit.com", "130") == (
        "https://app.qbo.intuit.com/app/invoice?txnId=130"
    )
    assert qbo_invoice_url("https://app.sandbox.qbo.intuit.com/", "7").startswith(
        "https://app.sandbox.qbo.intuit.com/app/invoice?"
    )


def test_a_link_note_names_the_invoice_its_amount_stage_and_quickbooks_page() -> None:
    snap = invoice(customer_name="Bakery & Co", balance=D("59.00"))
    entry = link_entry(
        realm_id="r1",
        object_type="companies",
        object_id="501",
        snapshot=snap,
        stage=InvoiceStage.PARTIALLY_PAID,
        url="https://app.qbo.intuit.com/app/invoice?txnId=130",
    )
    assert (entry.key, entry.event_type) == ("dealbooks-linked-r1-130-companies-501", None)
    assert (entry.object_type, entry.object_id) == ("companies", "501")
    for shown in (
        "QuickBooks invoice 1043 linked</strong> for Bakery &amp; Co",
        "Amount 459.00 USD · balance 59.00 USD · Partially paid · due 2026-04-01",
        '<a href="https://app.qbo.intuit.com/app/invoice?txnId=130">',
    ):
        assert shown in entry.note_html


def test_a_note_is_found_by_its_whole_reference_only(a_payment_entry: PaymentEntry) -> None:
    body = a_payment_entry(key="qbo-pay-r1-13-130").note_html
    assert carries_reference(body, "qbo-pay-r1-13-130")
    assert carries_reference(body.replace("<p>", '<p style="x">'), "qbo-pay-r1-13-130")
    assert not carries_reference(body, "qbo-pay-r1-13-13")
    assert not carries_reference(body, "qbo-pay-r1-1")


def test_only_a_create_or_an_update_no_newer_than_what_was_read_tells_nothing_new() -> None:
    read = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)
    before, after = read - timedelta(seconds=1), read + timedelta(seconds=1)
    assert tells_nothing_new(QboOperation.CREATE, after, None)
    assert tells_nothing_new(QboOperation.UPDATE, before, read)
    assert tells_nothing_new(QboOperation.UPDATE, read, read)
    assert not tells_nothing_new(QboOperation.UPDATE, after, read)
    assert not tells_nothing_new(QboOperation.UPDATE, before, None)
    for telling in (QboOperation.DELETE, QboOperation.VOID, QboOperation.MERGE):
        assert not tells_nothing_new(telling, before, read)


def test_a_payment_is_first_seen_only_unrecorded_and_unchanged_in_quickbooks() -> None:
    assert payment_first_seen(None, "0")
    assert payment_first_seen(0, "0")
    assert not payment_first_seen(3, "0")  # recorded here already
    assert not payment_first_seen(None, "1")  # edited or voided since it was made


@pytest.mark.parametrize(
    ("object_type", "properties", "name"),
    [
        ("deals", {"dealname": "Bakery  order "}, "Bakery order"),
        ("deals", {"dealname": None}, None),
        (
            "contacts",
            {"firstname": "Ada", "lastname": "Lovelace", "email": "a@x.io"},
            "Ada Lovelace",
        ),
        ("contacts", {"firstname": "", "lastname": "Lovelace"}, "Lovelace"),
        ("contacts", {"firstname": None, "lastname": " ", "email": "a@x.io"}, "a@x.io"),
        ("contacts", {}, None),
        ("companies", {"name": "Acme", "domain": "acme.example"}, "Acme"),
        ("companies", {"name": "", "domain": "acme.example"}, "acme.example"),
        ("companies", {"name": None, "domain": None}, None),
    ],
)
def test_a_record_is_called_what_the_crm_shows_for_it(
    object_type: str, properties: dict[str, str | None], name: str | None
) -> None:
    assert record_name(object_type, properties) == name
