"""Vendors, bills, bill payments and deposits, and the company's edition: the rules a bill
reminder and a bank deposit reminder rely on, and the faults around them."""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from qbo_sandbox import seed
from qbo_sandbox.app import build_app
from qbo_sandbox.clock import Clock
from qbo_sandbox.company import Company
from qbo_sandbox.config import SandboxConfig
from qbo_sandbox.faults import QboFault
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle

BANK = {"value": seed.BANK_ACCOUNT_ID}


def fresh() -> tuple[Company, list[tuple[str, str, str]]]:
    """A demo company and the changes it reports (entity, id, operation), as webhooks see them."""
    company = Company(realm_id="1", name="Payables Co", country="US", clock=Clock())
    company.seed_demo_data()
    events: list[tuple[str, str, str]] = []
    company.listeners.append(
        lambda _realm, entity, rid, op, _deleted: events.append((entity, rid, op))
    )
    return company, events


def bill(vendor: str = "1", amount: Any = 100, **extra: Any) -> dict[str, Any]:
    return {
        "VendorRef": {"value": vendor},
        "Line": [
            {
                "DetailType": "AccountBasedExpenseLineDetail",
                "Amount": amount,
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": seed.EXPENSE_ACCOUNT_ID}},
            }
        ],
        **extra,
    }


def bill_payment(bill_id: str, amount: Any, vendor: str = "1") -> dict[str, Any]:
    return {
        "VendorRef": {"value": vendor},
        "PayType": "Check",
        "CheckPayment": {"BankAccountRef": BANK},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}],
    }


def deposit(*payment_ids: str) -> dict[str, Any]:
    return {
        "DepositToAccountRef": BANK,
        "Line": [
            {"LinkedTxn": [{"TxnId": pid, "TxnType": "Payment", "TxnLineId": "0"}]}
            for pid in payment_ids
        ],
    }


def received(company: Company, amount: Any = 25, **extra: Any) -> dict[str, Any]:
    return company.create(
        "Payment", {"CustomerRef": {"value": "1"}, "TotalAmt": amount, **extra}, {}
    )


# ---------------------------------------------------------------- vendors


def test_a_vendor_reads_back_with_the_fields_qbo_fills():
    company, events = fresh()
    vendor = company.create("Vendor", {"GivenName": "Dana", "FamilyName": "Hill"}, {})
    assert vendor["DisplayName"] == "Dana Hill" == vendor["PrintOnCheckName"]
    assert vendor["Balance"] == 0 and vendor["Active"] is True and vendor["Vendor1099"] is False
    assert vendor["CurrencyRef"]["value"] == "USD" and vendor["domain"] == "QBO"
    assert ("Vendor", vendor["Id"], "Create") in events


def test_vendor_display_name_is_unique_across_customers_and_vendors():
    company, _ = fresh()
    with pytest.raises(QboFault) as as_vendor:
        company.create("Vendor", {"DisplayName": "Amy's Bird Sanctuary"}, {})
    with pytest.raises(QboFault) as as_customer:
        company.create("Customer", {"DisplayName": "hicks hardware"}, {})
    assert as_vendor.value.code == as_customer.value.code == "6240"


def test_an_inactive_vendor_is_renamed_and_left_out_of_queries():
    company, _ = fresh()
    vendor = company.get("Vendor", "2")
    body = {"Id": "2", "SyncToken": vendor["SyncToken"], "sparse": True, "Active": False}
    updated = company.update("Vendor", body, {})
    assert updated["DisplayName"].endswith(" (deleted)") and updated["SyncToken"] == "1"
    assert [v["Id"] for v in company.rows("Vendor") if v.get("Active", True)] == ["1"]
    with pytest.raises(QboFault) as err:
        company.create("Bill", bill(vendor="2"), {})
    assert err.value.code == "610"


# ---------------------------------------------------------------- bills


def test_a_bill_is_due_by_the_vendors_terms_and_open_for_its_total():
    company, _ = fresh()
    made = company.create("Bill", bill(amount="120.50", TxnDate="2026-03-02"), {})
    assert made["DueDate"] == "2026-04-01"  # vendor 1 pays on Net 30
    assert made["SalesTermRef"] == {"value": "3", "name": "Net 30"}
    assert made["TotalAmt"] == made["Balance"] == Decimal("120.50")
    assert made["APAccountRef"]["value"] == seed.PAYABLES_ACCOUNT_ID
    assert made["Line"][0]["Id"] == "1" and made["Line"][0]["LineNum"] == 1
    assert company.get("Vendor", "1")["Balance"] == Decimal("120.50")


def test_a_bill_keeps_the_due_date_it_is_given_and_without_terms_is_due_at_once():
    company, _ = fresh()
    given = company.create("Bill", bill(DueDate="2026-05-01", TxnDate="2026-03-02"), {})
    no_terms = company.create("Bill", bill(vendor="2", TxnDate="2026-03-02"), {})
    assert given["DueDate"] == "2026-05-01"
    assert no_terms["DueDate"] == "2026-03-02" and "SalesTermRef" not in no_terms


def test_a_bill_needs_a_vendor_and_lines_with_a_known_account():
    company, _ = fresh()
    missing_vendor = {k: v for k, v in bill().items() if k != "VendorRef"}
    unknown_account = bill()
    unknown_account["Line"][0]["AccountBasedExpenseLineDetail"]["AccountRef"] = {"value": "999"}
    sales_line = bill()
    sales_line["Line"][0]["DetailType"] = "SalesItemLineDetail"
    codes = []
    for body in (missing_vendor, unknown_account, sales_line, {**bill(), "Line": []}):
        with pytest.raises(QboFault) as err:
            company.create("Bill", body, {})
        codes.append(err.value.code)
    assert codes == ["2020", "2500", "2170", "2020"]


def test_a_bill_payment_lowers_the_bills_balance_and_links_both_ways():
    company, events = fresh()
    made = company.create("Bill", bill(amount=100), {})
    paid = company.create("BillPayment", bill_payment(made["Id"], 40), {})
    after = company.get("Bill", made["Id"])
    assert after["Balance"] == Decimal("60.00") and after["SyncToken"] == "1"
    assert after["LinkedTxn"] == [{"TxnId": paid["Id"], "TxnType": "BillPaymentCheck"}]
    assert paid["Line"][0]["LinkedTxn"] == [{"TxnId": made["Id"], "TxnType": "Bill"}]
    assert paid["CheckPayment"]["BankAccountRef"] == {"value": "35", "name": "Checking"}
    assert ("Bill", made["Id"], "Update") in events
    assert company.get("Vendor", "1")["Balance"] == Decimal("60.00")
    gone = company.delete("BillPayment", {"Id": paid["Id"], "SyncToken": paid["SyncToken"]})
    assert gone["status"] == "Deleted"
    assert company.get("Bill", made["Id"])["Balance"] == Decimal("100.00")
    assert company.get("Bill", made["Id"])["LinkedTxn"] == []


def test_a_bill_payment_cannot_overpay_or_pay_another_vendors_bill():
    company, _ = fresh()
    made = company.create("Bill", bill(amount=100), {})
    with pytest.raises(QboFault) as over:
        company.create("BillPayment", bill_payment(made["Id"], 150), {})
    with pytest.raises(QboFault) as other:
        company.create("BillPayment", bill_payment(made["Id"], 10, vendor="2"), {})
    no_account = bill_payment(made["Id"], 10)
    del no_account["CheckPayment"]
    with pytest.raises(QboFault) as account:
        company.create("BillPayment", no_account, {})
    assert (over.value.code, other.value.code) == ("6000", "620")
    assert account.value.code == "2020" and account.value.element == "BankAccountRef"
    assert company.get("Bill", made["Id"])["Balance"] == Decimal("100.00")


def test_a_bill_cannot_drop_below_what_is_paid_on_it():
    company, _ = fresh()
    made = company.create("Bill", bill(amount=100), {})
    company.create("BillPayment", bill_payment(made["Id"], 80), {})
    current = company.get("Bill", made["Id"])
    smaller = {**bill(amount=50), "Id": made["Id"], "SyncToken": current["SyncToken"]}
    with pytest.raises(QboFault) as err:
        company.update("Bill", smaller, {})
    assert err.value.code == "6000"


# ---------------------------------------------------------------- deposits


def test_a_payment_stays_undeposited_until_a_deposit_links_it():
    company, events = fresh()
    held = received(company, 25)
    unspecified = received(company, 15)
    unspecified.pop("DepositToAccountRef")  # a payment with no account is in Undeposited Funds
    direct = received(company, 30, DepositToAccountRef=BANK)
    assert {p["Id"] for p in company.undeposited_payments()} == {held["Id"], unspecified["Id"]}
    made = company.create("Deposit", deposit(held["Id"]), {})
    assert made["TotalAmt"] == Decimal("25.00")
    assert made["Line"][0]["Amount"] == Decimal("25.00")
    assert made["Line"][0]["LinkedTxn"] == [
        {"TxnId": held["Id"], "TxnType": "Payment", "TxnLineId": "0"}
    ]
    assert made["DepositToAccountRef"] == {"value": "35", "name": "Checking"}
    assert [p["Id"] for p in company.undeposited_payments()] == [unspecified["Id"]]
    assert direct["Id"] not in {p["Id"] for p in company.undeposited_payments()}
    assert ("Deposit", made["Id"], "Create") in events
    company.delete("Deposit", {"Id": made["Id"], "SyncToken": made["SyncToken"]})
    assert held["Id"] in {p["Id"] for p in company.undeposited_payments()}


def test_a_deposit_can_also_bring_money_from_another_account_less_cash_back():
    company, _ = fresh()
    body = {
        "DepositToAccountRef": BANK,
        "Line": [
            {
                "DetailType": "DepositLineDetail",
                "Amount": 200,
                "DepositLineDetail": {"AccountRef": {"value": seed.INCOME_ACCOUNT_ID}},
            }
        ],
        "CashBack": {"AccountRef": {"value": seed.EXPENSE_ACCOUNT_ID}, "Amount": 20},
    }
    made = company.create("Deposit", body, {})
    assert made["TotalAmt"] == Decimal("180.00")
    detail = made["Line"][0]["DepositLineDetail"]
    assert detail["AccountRef"] == {"value": "79", "name": "Sales of Product Income"}


def test_a_payment_is_deposited_once_and_only_from_undeposited_funds():
    company, _ = fresh()
    held = received(company, 25)
    direct = received(company, 30, DepositToAccountRef=BANK)
    company.create("Deposit", deposit(held["Id"]), {})
    with pytest.raises(QboFault) as twice:
        company.create("Deposit", deposit(held["Id"]), {})
    with pytest.raises(QboFault) as banked:
        company.create("Deposit", deposit(direct["Id"]), {})
    with pytest.raises(QboFault) as invoice:
        company.create(
            "Deposit",
            {
                "DepositToAccountRef": BANK,
                "Line": [{"LinkedTxn": [{"TxnId": "1", "TxnType": "Invoice"}]}],
            },
            {},
        )
    assert (twice.value.code, banked.value.code, invoice.value.code) == ("6000", "6000", "620")


def test_a_deposited_payment_cannot_be_changed_or_deleted():
    company, _ = fresh()
    held = received(company, 25)
    company.create("Deposit", deposit(held["Id"]), {})
    change = {"Id": held["Id"], "SyncToken": held["SyncToken"], "sparse": True, "TotalAmt": 5}
    with pytest.raises(QboFault) as changed:
        company.update("Payment", change, {})
    with pytest.raises(QboFault) as deleted:
        company.delete("Payment", {"Id": held["Id"], "SyncToken": held["SyncToken"]})
    assert changed.value.code == deleted.value.code == "6540"
    assert changed.value.message == "Deposited Transaction cannot be changed"


def test_a_deposit_needs_an_account_and_lines():
    company, _ = fresh()
    held = received(company, 25)
    no_account = {"Line": deposit(held["Id"])["Line"]}
    codes = []
    for body in (no_account, {"DepositToAccountRef": BANK, "Line": []}):
        with pytest.raises(QboFault) as err:
            company.create("Deposit", body, {})
        codes.append((err.value.code, err.value.element))
    assert codes == [("2020", "DepositToAccountRef"), ("2020", "Line")]


# ---------------------------------------------------------------- editions


def test_demo_seed_has_an_advanced_company_and_the_others_stay_plus():
    sandbox = build_app(SandboxConfig()).state.sandbox
    skus = {
        realm: next(
            nv["Value"] for nv in c.company_info["NameValue"] if nv["Name"] == "OfferingSku"
        )
        for realm, c in sandbox.companies.items()
    }
    advanced = [realm for realm, sku in skus.items() if sku == "QuickBooks Online Advanced"]
    assert len(advanced) == 1
    assert sandbox.companies[advanced[0]].country == "US"
    assert {sku for realm, sku in skus.items() if realm not in advanced} == {
        "QuickBooks Online Plus"
    }


def test_an_unknown_edition_is_refused():
    with pytest.raises(ValueError):
        Company(realm_id="2", name="X", country="US", clock=Clock(), edition="Ultimate")


# ---------------------------------------------------------------- over HTTP


def api(handle: SandboxHandle, company: SandboxCompany) -> httpx.Client:
    """Raw calls paced under QBO's 10 requests per second per realm."""
    return httpx.Client(
        base_url=f"{handle.base_url}/v3/company/{company.realm_id}",
        headers={"Authorization": f"Bearer {company.access_token}", "Accept": "application/json"},
        event_hooks={"request": [lambda _: time.sleep(0.12)]},
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["Fault"]["type"] == "ValidationFault"
    return body["Fault"]["Error"][0]  # type: ignore[no-any-return]


def test_a_company_is_created_with_an_edition_and_can_change_it(qbo_sandbox: SandboxHandle):
    company = qbo_sandbox.create_company("US", edition="Advanced")
    with api(qbo_sandbox, company) as http:
        info = http.get(f"/companyinfo/{company.realm_id}").json()["CompanyInfo"]
        assert {"Name": "OfferingSku", "Value": "QuickBooks Online Advanced"} in info["NameValue"]
        changed = qbo_sandbox.control(
            "POST", f"companies/{company.realm_id}/edition", {"edition": "Plus"}
        )
        again = http.get(f"/companyinfo/{company.realm_id}").json()["CompanyInfo"]
    assert changed["edition"] == "QuickBooks Online Plus"
    assert {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"} in again["NameValue"]
    assert int(again["SyncToken"]) == int(info["SyncToken"]) + 1
    refused = qbo_sandbox.http.post(
        f"/_sandbox/companies/{company.realm_id}/edition", json={"edition": "Gold"}
    )
    assert refused.status_code == 400


def test_a_bill_with_an_unknown_property_is_2010_naming_it(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        response = http.post("/bill", json={**bill(), "ApprovalStatus": "Approved"})
    error = error_of(response)
    assert error["code"] == "2010"
    assert 'Unrecognized field "ApprovalStatus"' in error["Detail"]
    assert "com.intuit.schema.finance.v3.Bill" in error["Detail"]


def test_a_deposit_linking_an_unknown_payment_is_refused(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        response = http.post("/deposit", json=deposit("9999"))
    error = error_of(response)
    assert error["code"] == "610" and error["Message"] == "Object Not Found"


def test_payables_are_read_queried_and_reported_by_cdc_over_http(qbo_sandbox, qbo_company):
    since = (qbo_sandbox.now() - timedelta(minutes=1)).isoformat()
    with api(qbo_sandbox, qbo_company) as http:
        vendor = http.post("/vendor", json={"DisplayName": "Cedar Print Shop"}).json()["Vendor"]
        made = http.post("/bill", json=bill(vendor=vendor["Id"], amount=90)).json()["Bill"]
        paid = http.post("/billpayment", json=bill_payment(made["Id"], 30, vendor["Id"]))
        payment = http.post("/payment", json={"CustomerRef": {"value": "1"}, "TotalAmt": 12})
        held = payment.json()["Payment"]
        banked = http.post("/deposit", json=deposit(held["Id"])).json()["Deposit"]
        read = http.get(f"/bill/{made['Id']}").json()["Bill"]
        open_bills = http.get(
            "/query", params={"query": "SELECT * FROM Bill WHERE Balance > '0'"}
        ).json()["QueryResponse"]["Bill"]
        vendors = http.get(
            "/query",
            params={"query": "select * from vendor where DisplayName = 'Cedar Print Shop'"},
        ).json()["QueryResponse"]["Vendor"]
        cdc = http.get(
            "/cdc",
            params={"entities": "Vendor,Bill,BillPayment,Deposit", "changedSince": since},
        ).json()["CDCResponse"][0]["QueryResponse"]
    assert paid.status_code == 200
    assert (
        read["Balance"] == Decimal("60")
        and read["DueDate"] == date.fromisoformat(read["TxnDate"]).isoformat()
    )
    assert [b["Id"] for b in open_bills] == [made["Id"]]
    assert [v["Id"] for v in vendors] == [vendor["Id"]] and vendors[0]["Balance"] == 60
    assert banked["TotalAmt"] == 12
    names = [next(k for k in page if k[0].isupper()) for page in cdc]
    assert names == ["Vendor", "Bill", "BillPayment", "Deposit"]
