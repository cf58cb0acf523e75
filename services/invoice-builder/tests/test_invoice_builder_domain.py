"""The pure rules of invoice-builder: request validation, invoice body, customers, rules."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from dealbooks_contracts import (
    CrmChange,
    CrmObjectChanged,
    CrmObjectType,
    ExistingCustomer,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    NewCustomer,
    RejectionCode,
)
from invoice_builder.domain import (
    AccountFacts,
    AutoDraftRule,
    CrmLineItem,
    CrmOwner,
    CrmParty,
    CustomerCandidate,
    QboCreate,
    QuoteFacts,
    Rejection,
    auto_draft_request_id,
    check_currency,
    choose_display_name,
    crm_record_key,
    customer_body,
    customer_create,
    display_name_candidates,
    draft_of,
    due_date_from_terms,
    every_name_taken,
    invoice_body,
    line_amount,
    lines_from_crm,
    match_customer,
    new_customer_of,
    qbo_request_id,
    rule_fires,
    search_customers,
    sorted_owners,
    stage_entered,
    subtotal,
    validate_request,
)

TODAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
D = Decimal
US = AccountFacts("p1", "r-us", "Larry's Bakery", "US", "USD", False, False)
UK = AccountFacts("p1", "r-uk", "Thames Joinery Ltd", "GB", "GBP", False, False)


def line(tax: str | None = None, currency: str = "USD", **kw: Any) -> InvoiceLineRequest:
    return InvoiceLineRequest(
        qbo_item_id=kw.get("item", "21"),
        quantity=kw.get("qty", D("3")),
        unit_price=Money(amount=kw.get("price", D("500.00")), currency=currency),
        description=kw.get("description"),
        tax_code_id=tax,
    )


def request(*lines: InvoiceLineRequest, **kw: Any) -> InvoiceRequested:
    return InvoiceRequested(
        request_id=kw.get("request_id", uuid.uuid4()),
        deal_id="d1",
        quote_id=kw.get("quote_id"),
        origin=InvoiceRequestOrigin.WIZARD,
        customer=ExistingCustomer(qbo_customer_id="58"),
        lines=list(lines) or [line()],
        invoice_date=kw.get("invoice_date"),
        due_date=kw.get("due_date"),
        terms_id=kw.get("terms_id"),
        customer_message=kw.get("customer_message"),
    )


def validate(req: InvoiceRequested, account: AccountFacts | None = US, **kw: Any) -> Any:
    return validate_request(req, account, today=TODAY, now=NOW, quote=kw.get("quote"))


def code(rejection: Rejection | None) -> RejectionCode | None:
    return rejection.code if rejection else None


# ------------------------------------------------------------------------- validation


def test_valid_us_request_passes() -> None:
    assert validate(request()) is None


def test_request_for_unconnected_account_is_rejected() -> None:
    assert code(validate(request(), None)) is RejectionCode.ACCOUNT_NOT_CONNECTED


def test_custom_transaction_numbers_on_rejects_with_how_to_fix_it() -> None:
    account = AccountFacts("p1", "r", "Thames Joinery Ltd", "GB", "GBP", False, True)
    rejection = validate(request(line("2", "GBP")), account)
    assert code(rejection) is RejectionCode.CUSTOM_TXN_NUMBERS_ENABLED
    assert "Custom transaction numbers" in rejection.message
    assert "turn off" in rejection.message


def test_non_us_line_without_tax_code_is_rejected_before_calling_qbo() -> None:
    rejection = validate(request(line("2", "GBP"), line(None, "GBP")), UK)
    assert code(rejection) is RejectionCode.TAX_CODE_REQUIRED
    assert rejection.line_index == 1
    assert "tax code" in rejection.message


def test_non_us_lines_with_tax_codes_pass() -> None:
    assert validate(request(line("2", "GBP"), line("3", "GBP")), UK) is None


def test_us_line_with_a_tax_code_is_rejected() -> None:
    rejection = validate(request(line("7")))
    assert code(rejection) is RejectionCode.TAX_CODE_NOT_ALLOWED
    assert rejection.line_index == 0


def test_due_date_before_invoice_date_is_rejected() -> None:
    req = request(invoice_date=date(2026, 3, 10), due_date=date(2026, 3, 9))
    assert code(validate(req)) is RejectionCode.DUE_BEFORE_INVOICE_DATE


def test_due_date_on_invoice_date_passes() -> None:
    assert validate(request(invoice_date=TODAY, due_date=TODAY)) is None


def test_due_date_is_checked_against_today_when_invoice_date_is_left_out() -> None:
    assert code(validate(request(due_date=date(2026, 3, 1)))) is (
        RejectionCode.DUE_BEFORE_INVOICE_DATE
    )


def test_lines_in_two_currencies_are_rejected() -> None:
    rejection = validate(request(line(None, "USD"), line(None, "EUR")))
    assert code(rejection) is RejectionCode.CURRENCY_MISMATCH


def test_foreign_currency_without_multicurrency_is_rejected() -> None:
    assert code(check_currency("EUR", None, US)) is RejectionCode.CURRENCY_MISMATCH
    assert check_currency("USD", None, US) is None


def test_currency_must_match_the_customer_currency() -> None:
    multi = AccountFacts("p1", "r", "Multi", "US", "USD", True, False)
    assert check_currency("EUR", "EUR", multi) is None
    assert code(check_currency("USD", "EUR", multi)) is RejectionCode.CURRENCY_MISMATCH


def quote(status: str | None = "APPROVAL_NOT_NEEDED", days: int = 5) -> QuoteFacts:
    return QuoteFacts("q1", status, datetime(2026, 3, 10 + days, tzinfo=UTC), title="Q-1")


def test_published_unexpired_quote_qualifies() -> None:
    assert validate(request(quote_id="q1"), quote=quote()) is None


@pytest.mark.parametrize("status", ["DRAFT", "PENDING_APPROVAL", "REJECTED", None])
def test_unpublished_quote_is_rejected(status: str | None) -> None:
    rejection = validate(request(quote_id="q1"), quote=quote(status))
    assert code(rejection) is RejectionCode.QUOTE_NOT_PUBLISHED


def test_expired_quote_is_rejected() -> None:
    rejection = validate(request(quote_id="q1"), quote=quote(days=-3))
    assert code(rejection) is RejectionCode.QUOTE_EXPIRED
    assert "expired" in rejection.message


def test_missing_quote_is_rejected() -> None:
    assert code(validate(request(quote_id="q1"), quote=None)) is RejectionCode.QUOTE_NOT_FOUND


# ------------------------------------------------------------------------- invoice body


def test_line_amount_is_quantity_times_unit_price_in_cents() -> None:
    assert line_amount(D("3"), D("500")) == D("1500.00")
    assert line_amount(D("0.333"), D("10")) == D("3.33")
    assert subtotal([line(), line(qty=D("1"), price=D("20"))]) == D("1520.00")


def test_us_invoice_body_sends_no_tax_code_and_is_a_draft() -> None:
    body = invoice_body(request(customer_message="Thanks"), "58", US, today=TODAY)
    detail = body["Line"][0]["SalesItemLineDetail"]
    assert "TaxCodeRef" not in detail
    assert body["EmailStatus"] == "NotSet"
    assert body["TxnDate"] == "2026-03-10"
    assert body["CustomerRef"] == {"value": "58"}
    assert body["CustomerMemo"] == {"value": "Thanks"}
    assert body["Line"][0]["Amount"] == D("1500.00")


def test_uk_invoice_body_carries_the_tax_code_on_every_line() -> None:
    body = invoice_body(request(line("2", "GBP"), line("3", "GBP")), "58", UK, today=TODAY)
    assert [x["SalesItemLineDetail"]["TaxCodeRef"] for x in body["Line"]] == [
        {"value": "2"},
        {"value": "3"},
    ]


def test_invoice_body_carries_terms_and_dates() -> None:
    req = request(terms_id="3", invoice_date=date(2026, 3, 1), due_date=date(2026, 3, 31))
    body = invoice_body(req, "58", US, today=TODAY)
    assert (body["SalesTermRef"], body["TxnDate"], body["DueDate"]) == (
        {"value": "3"},
        "2026-03-01",
        "2026-03-31",
    )


def test_due_date_follows_standard_terms() -> None:
    assert due_date_from_terms(date(2026, 3, 1), 30) == date(2026, 3, 31)
    assert due_date_from_terms(date(2026, 3, 1), None) is None


def test_qbo_request_id_is_stable_per_request_and_step_and_fits_qbo() -> None:
    rid = uuid.uuid4()
    assert qbo_request_id(rid, "invoice") == qbo_request_id(rid, "invoice")
    assert qbo_request_id(rid, "invoice") != qbo_request_id(rid, "customer")
    assert len(qbo_request_id(rid, "invoice")) <= 36


# ------------------------------------------------------------------------- customers

CUSTOMERS = [
    CustomerCandidate("1", "Amy's Bird Sanctuary", "Amy's Bird Sanctuary", "Amy", "Lauterbach",
                      "Birds@Intuit.com"),
    CustomerCandidate("2", "Acme Corp", "Acme Corp", email="billing@acme.example"),
    CustomerCandidate("3", "Jane Doe", given_name="Jane", family_name="Doe"),
    CustomerCandidate("4", "Old Acme (deleted)", "Acme Corp", active=False,
                      email="ana@acme.example"),
]  # fmt: skip


def test_customer_with_same_email_is_the_best_match() -> None:
    match = match_customer(CrmParty(email="birds@intuit.com", company_name="Acme Corp"), CUSTOMERS)
    assert match is not None and match.customer.qbo_customer_id == "1"
    assert match.score == 100


def test_customer_with_same_company_name_matches() -> None:
    match = match_customer(CrmParty(email="new@acme.example", company_name="ACME corp"), CUSTOMERS)
    assert match is not None and match.customer.qbo_customer_id == "2"
    assert match.reason == "same company name"


def test_customer_with_same_person_name_matches() -> None:
    match = match_customer(CrmParty(first_name="Jane", last_name="Doe"), CUSTOMERS)
    assert match is not None and match.customer.qbo_customer_id == "3"


def test_inactive_customer_is_never_proposed() -> None:
    assert match_customer(CrmParty(email="ana@acme.example"), CUSTOMERS[3:]) is None


def test_no_match_when_nothing_is_alike() -> None:
    assert match_customer(CrmParty(email="x@y.example", company_name="Zed"), CUSTOMERS) is None


def test_customer_search_finds_name_company_or_email() -> None:
    assert [c.qbo_customer_id for c in search_customers("acme", CUSTOMERS)] == ["2"]
    assert [c.qbo_customer_id for c in search_customers("intuit", CUSTOMERS)] == ["1"]


def new_customer(**kw: Any) -> NewCustomer:
    return NewCustomer(
        display_name=kw.get("display_name", "Acme Corp"),
        company_name="Acme Corp",
        given_name=kw.get("given_name", "Ana"),
        family_name=kw.get("family_name", "Lopez"),
        email=kw.get("email", "ana@acme.example"),
    )


def test_second_contact_of_same_company_gets_a_distinct_display_name() -> None:
    name = choose_display_name(new_customer(), taken=["Acme Corp"])
    assert name == "Acme Corp (Ana Lopez)"


def test_display_name_uniqueness_ignores_case() -> None:
    taken = ["acme corp", "ACME CORP (ana lopez)"]
    assert choose_display_name(new_customer(), taken) == "Acme Corp (ana@acme.example)"


def test_display_name_falls_back_to_a_number() -> None:
    customer = new_customer(given_name=None, family_name=None, email=None)
    assert choose_display_name(customer, ["Acme Corp", "Acme Corp (2)"]) == "Acme Corp (3)"


def test_free_display_name_is_used_as_is() -> None:
    assert choose_display_name(new_customer(), []) == "Acme Corp"
    assert display_name_candidates(new_customer())[0] == "Acme Corp"


def test_customer_body_carries_names_and_email() -> None:
    body = customer_body(new_customer(), "Acme Corp (Ana Lopez)")
    assert body == {
        "DisplayName": "Acme Corp (Ana Lopez)",
        "CompanyName": "Acme Corp",
        "GivenName": "Ana",
        "FamilyName": "Lopez",
        "PrimaryEmailAddr": {"Address": "ana@acme.example"},
    }


# ------------------------------------------------------------------------- quotes and rules

ITEMS = [
    CrmLineItem("li1", "Onboarding", D("2"), D("500"), "USD", crm_product_id="prod1"),
    CrmLineItem("li2", "Support", D("1"), D("99.50"), "USD", crm_product_id="prod2"),
]


def test_linked_products_map_to_their_qbo_items() -> None:
    lines = lines_from_crm(ITEMS, {"prod1": "21", "prod2": "22"}, {})
    assert not isinstance(lines, Rejection)
    assert [(x.qbo_item_id, x.quantity, x.unit_price.amount) for x in lines] == [
        ("21", D("2"), D("500")),
        ("22", D("1"), D("99.50")),
    ]


def test_unlinked_product_uses_the_users_chosen_item() -> None:
    lines = lines_from_crm(ITEMS, {"prod1": "21"}, {"li2": "9"}, default_tax_code="2")
    assert not isinstance(lines, Rejection)
    assert [x.qbo_item_id for x in lines] == ["21", "9"]
    assert {x.tax_code_id for x in lines} == {"2"}


def test_unlinked_product_without_a_choice_is_rejected() -> None:
    rejection = lines_from_crm(ITEMS, {"prod1": "21"}, {})
    assert isinstance(rejection, Rejection)
    assert (rejection.code, rejection.line_index) == (RejectionCode.ITEM_NOT_FOUND, 1)


def test_no_line_items_is_rejected() -> None:
    rejection = lines_from_crm([], {}, {})
    assert isinstance(rejection, Rejection) and rejection.code is RejectionCode.NO_LINES


def stage_change(value: str, prop: str = "dealstage") -> CrmObjectChanged:
    return CrmObjectChanged(
        crm_event_id="e1",
        object_type=CrmObjectType.DEAL,
        object_id="d1",
        change=CrmChange.PROPERTY_CHANGED,
        changed_at=NOW,
        property_name=prop,
        property_value=value,
    )


def test_rule_fires_when_deal_enters_its_stage() -> None:
    rule = AutoDraftRule("rule1", "p1", "r-us", "closedwon")
    assert rule_fires(rule, stage_change("closedwon"))
    assert not rule_fires(rule, stage_change("contractsent"))
    assert not rule_fires(rule, stage_change("closedwon", prop="amount"))
    assert not rule_fires(
        AutoDraftRule("r", "p1", "r", "closedwon", False), stage_change("closedwon")
    )


def test_same_deal_always_gets_the_same_auto_draft_request_id() -> None:
    assert auto_draft_request_id("p1", "d1") == auto_draft_request_id("p1", "d1")
    assert auto_draft_request_id("p1", "d1") != auto_draft_request_id("p1", "d2")


def test_the_draft_is_billed_to_the_customers_own_address_only_when_it_has_one() -> None:
    assert "BillEmail" not in invoice_body(request(), "58", US, today=TODAY)
    body = invoice_body(request(), "58", US, today=TODAY, bill_email="ada@example.com")
    assert body["BillEmail"] == {"Address": "ada@example.com"}


def test_a_new_customer_is_remembered_by_its_contact_else_its_company() -> None:
    both = NewCustomer(display_name="Acme", crm_contact_id="7", crm_company_id="9")
    assert crm_record_key(both) == "contact:7"
    assert crm_record_key(NewCustomer(display_name="Acme", crm_company_id="9")) == "company:9"
    assert crm_record_key(NewCustomer(display_name="Acme")) is None


def test_a_party_nobody_matches_becomes_a_customer_named_for_its_company_or_person() -> None:
    party = CrmParty(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    assert new_customer_of(party).display_name == "Ada Lovelace"
    assert new_customer_of(CrmParty(email="ada@example.com")).display_name == "ada@example.com"
    assert new_customer_of(CrmParty()).display_name == "CRM customer"
    company = new_customer_of(CrmParty(company_name="Acme", crm_company_id="9", first_name="Ada"))
    assert (company.display_name, company.given_name, company.crm_company_id) == (
        "Acme",
        "Ada",
        "9",
    )
    taken = every_name_taken(company)
    assert taken.code is RejectionCode.QBO_VALIDATION and "'Acme'" in taken.message


def test_the_stage_sweep_hands_on_a_deal_as_the_webhook_would_have() -> None:
    rule = AutoDraftRule("r1", "p1", "realm", "closedwon")
    change = stage_entered(rule, "d7", NOW)
    assert rule_fires(rule, change)
    assert change.crm_event_id == "stage-sweep:r1:d7" and change.changed_at == NOW


def test_a_draft_is_for_its_customer_in_the_customers_currency() -> None:
    ada = CustomerCandidate("58", "Ada", email="ada@example.com", currency="USD")
    req = request()
    draft = draft_of(req, ada, US, today=TODAY)
    assert isinstance(draft, QboCreate)
    assert draft.body["CustomerRef"] == {"value": "58"}
    assert draft.body["BillEmail"] == {"Address": "ada@example.com"}
    assert draft.request_id == qbo_request_id(req.request_id, "invoice")
    euro = CustomerCandidate("59", "Eve", currency="EUR")
    refused = draft_of(request(), euro, replace(US, multicurrency_enabled=True), today=TODAY)
    assert isinstance(refused, Rejection) and refused.code is RejectionCode.CURRENCY_MISMATCH


def test_each_name_of_a_new_customer_is_created_under_its_own_requestid() -> None:
    new, request_id = NewCustomer(display_name="Acme", email="a@acme.test"), uuid.uuid4()
    first = customer_create(new, "Acme", request_id)
    second = customer_create(new, "Acme (2)", request_id)
    assert first.body == customer_body(new, "Acme")
    assert first.request_id == customer_create(new, "Acme", request_id).request_id
    assert first.request_id != second.request_id


def test_owners_are_called_by_full_name_else_e_mail_else_id_and_sorted_by_that() -> None:
    found = [
        {"id": "7", "firstName": "", "lastName": "", "email": "zoe@x.example", "userId": 62},
        {"id": "3", "firstName": "ada", "lastName": "Lee ", "email": "ada@x.example"},
        {"id": "9", "firstName": None, "lastName": None, "email": None, "userId": None},
        {"id": "4", "firstName": "Bo", "lastName": "", "email": None, "userId": "64"},
    ]
    assert sorted_owners(found) == [
        CrmOwner("3", "ada Lee", "ada@x.example", None),
        CrmOwner("4", "Bo", None, "64"),
        CrmOwner("9", "Owner 9", None, None),
        CrmOwner("7", "zoe@x.example", "zoe@x.example", "62"),
    ]
