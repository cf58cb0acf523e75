"""The sandbox's QBO surface over raw HTTP: shapes and rules a client cannot paper over."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from qbo_sandbox import query
from qbo_sandbox.app import build_app
from qbo_sandbox.clock import Clock
from qbo_sandbox.company import Company
from qbo_sandbox.config import SandboxConfig
from qbo_sandbox.faults import QboFault
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle, start_sandbox, stop_sandbox


def api(handle: SandboxHandle, company: SandboxCompany) -> httpx.Client:
    return httpx.Client(
        base_url=f"{handle.base_url}/v3/company/{company.realm_id}",
        headers={"Authorization": f"Bearer {company.access_token}", "Accept": "application/json"},
    )


INVOICE = {
    "CustomerRef": {"value": "1"},
    "Line": [
        {
            "DetailType": "SalesItemLineDetail",
            "Amount": 100.0,
            "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
        }
    ],
}


def test_health_answers_when_ready(qbo_sandbox: SandboxHandle):
    assert qbo_sandbox.http.get("/_sandbox/health").status_code == 200


def test_repeated_requestid_replays_the_first_response_byte_for_byte(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        first = http.post("/invoice", params={"requestid": "r-1"}, json=INVOICE)
        second = http.post("/invoice", params={"requestid": "r-1"}, json=INVOICE)
        count = http.get("/query", params={"query": "SELECT COUNT(*) FROM Invoice"}).json()
    assert first.status_code == 200 and first.content == second.content
    assert count["QueryResponse"]["totalCount"] == 1


def test_empty_query_has_no_entity_key_and_max_results_counts_rows(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        empty = http.get("/query", params={"query": "select * from Invoice"}).json()
        customers = http.get(
            "/query", params={"query": "SELECT * FROM Customer MAXRESULTS 2"}
        ).json()
    assert empty["QueryResponse"] == {}
    assert customers["QueryResponse"]["maxResults"] == 2
    assert customers["QueryResponse"]["startPosition"] == 1


def test_batch_over_thirty_items_is_rejected_with_1040(qbo_sandbox, qbo_company):
    items = [
        {"bId": f"b{i}", "operation": "create", "Customer": {"DisplayName": f"B{i}"}}
        for i in range(31)
    ]
    with api(qbo_sandbox, qbo_company) as http:
        response = http.post("/batch", json={"BatchItemRequest": items})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "1040"


def test_unknown_path_is_400_unsupported_operation(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        response = http.get("/customer/1/5")
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "500"


def test_expired_token_gets_the_lower_case_gateway_401(qbo_sandbox, qbo_company):
    qbo_sandbox.advance_clock(seconds=3601)
    with api(qbo_sandbox, qbo_company) as http:
        response = http.get("/customer/1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="Intuit"')
    error = response.json()["fault"]["error"][0]
    assert error["code"] == "3200" and error["detail"].startswith("Token expired")


def test_minorversion_below_75_is_served(qbo_sandbox, qbo_company):
    with api(qbo_sandbox, qbo_company) as http:
        response = http.get("/customer/1", params={"minorversion": "8"})
    assert response.status_code == 200 and response.json()["Customer"]["Id"] == "1"


def test_mark_emailed_and_overdue_via_clock():
    # Moving the clock by weeks would push every later test's CDC window out of range, so this
    # test has a sandbox of its own.
    handle = start_sandbox("--seed", "none")
    try:
        company = handle.create_company("US")
        with api(handle, company) as http:
            invoice = http.post("/invoice", json=INVOICE).json()["Invoice"]
            handle.mark_emailed(company.realm_id, invoice["Id"])
            emailed = http.get(f"/invoice/{invoice['Id']}").json()["Invoice"]
            assert (
                emailed["EmailStatus"] == "EmailSent"
                and emailed["DeliveryInfo"]["DeliveryType"] == "Email"
            )
        today = handle.advance_clock(days=45)["now"][:10]
        fresh = handle.control("POST", f"companies/{company.realm_id}/tokens")
        later = SandboxCompany(
            company.realm_id, fresh["access_token"], fresh["refresh_token"], "US"
        )
        with api(handle, later) as http:
            statement = f"SELECT * FROM Invoice WHERE Balance > '0' AND DueDate < '{today}'"  # noqa: S608
            overdue = http.get("/query", params={"query": statement}).json()
    finally:
        stop_sandbox(handle)
    assert [i["Id"] for i in overdue["QueryResponse"]["Invoice"]] == [invoice["Id"]]


def test_natural_throttle_answers_429_in_xml(tmp_path):
    handle = start_sandbox("--seed", "none", "--requests-per-second", "3")
    try:
        company = handle.create_company("US", demo_data=False)
        with api(handle, company) as http:
            statuses = [http.get("/preferences").status_code for _ in range(6)]
            assert 429 in statuses
            time.sleep(1.1)
            stats = handle.stats(company.realm_id)
    finally:
        stop_sandbox(handle)
    assert stats["throttled"] >= 1 and stats["max_per_second"] <= 3


# ---------------------------------------------------------------- in-process units


@pytest.fixture
def us() -> Company:
    company = Company(realm_id="1", name="Unit Co", country="US", clock=Clock())
    company.seed_demo_data()
    return company


def test_query_parser_accepts_order_by_spelling_and_paging_in_any_order(us: Company):
    for text in (
        "SELECT * FROM Customer ORDER BY DisplayName DESC MAXRESULTS 2 STARTPOSITION 1",
        "select * from customer orderby DisplayName desc startposition 1 maxresults 2",
    ):
        result = query.run(us, text, 1000)
        assert [c["DisplayName"] for c in result["Customer"]] == [
            "Weiskopf Consulting",
            "Red Rock Diner",
        ]


def test_query_parser_rejects_or(us: Company):
    with pytest.raises(QboFault):
        query.run(us, "SELECT * FROM Customer WHERE Id = '1' OR Id = '2'", 1000)


def test_date_driven_terms_fall_due_next_month_when_issued_late(us: Company):
    from datetime import date

    term = {"Type": "DATE_DRIVEN", "DayOfMonthDue": 15, "DueNextMonthDays": 5}
    assert us.due_date(date(2026, 3, 2), term) == date(2026, 3, 15)
    assert us.due_date(date(2026, 3, 12), term) == date(2026, 4, 15)


def test_overpaying_an_invoice_is_a_business_error(us: Company):
    invoice = us.create("Invoice", {**INVOICE}, {})
    with pytest.raises(QboFault) as err:
        us.create(
            "Payment",
            {
                "CustomerRef": {"value": "1"},
                "TotalAmt": 150,
                "Line": [
                    {"Amount": 150, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
                ],
            },
            {},
        )
    assert err.value.code == "6000"
    assert invoice["Balance"] == Decimal("100.00")


def test_customer_with_open_balance_cannot_be_inactivated(us: Company):
    us.create("Invoice", {**INVOICE}, {})
    customer = us.get("Customer", "1")
    with pytest.raises(QboFault) as err:
        us.update(
            "Customer",
            {"Id": "1", "SyncToken": customer["SyncToken"], "sparse": True, "Active": False},
            {},
        )
    assert "open balance" in err.value.detail


def test_build_app_serves_without_a_network(us: Company):
    app = build_app(SandboxConfig(seed="none"))
    assert app.state.sandbox.companies == {}


# ---------------------------------------------------------------- queries as QBO filters them


def test_a_filter_on_a_property_quickbooks_cannot_filter_on_is_4001_not_queryable(us: Company):
    for statement, prop in (
        ("SELECT * FROM Customer WHERE Notes = 'x'", "Notes"),
        ("SELECT * FROM Invoice WHERE EmailStatus = 'NotSet'", "EmailStatus"),
        ("SELECT * FROM Item WHERE UnitPrice > '1'", "UnitPrice"),
    ):
        with pytest.raises(QboFault) as err:
            query.run(us, statement, 1000)
        # The body of a real refusal [REAL: ruckus/quickbooks-ruby #403, in XML there].
        assert err.value.fault_body() == {
            "Error": [
                {
                    "Message": "Invalid query",
                    "Detail": f"QueryValidationError: property '{prop}' is not queryable",
                    "code": "4001",
                }
            ],
            "type": "ValidationFault",
        }


def test_filterable_properties_match_in_any_case_and_an_email_by_its_address(us: Company):
    by_email = query.run(
        us, "SELECT * FROM Customer WHERE primaryemailaddr = 'birds@intuit.com'", 1000
    )
    assert [c["Id"] for c in by_email["Customer"]] == ["1"]
    named = query.run(
        us, "SELECT * FROM Customer WHERE DisplayName IN ('red rock diner', 'Nobody')", 1000
    )
    assert [c["DisplayName"] for c in named["Customer"]] == ["Red Rock Diner"]
    updated = query.run(
        us, "SELECT COUNT(*) FROM Customer WHERE Metadata.LastUpdatedTime > '2000-01-01'", 1000
    )
    assert updated == {"totalCount": 3}


def test_like_takes_percent_anywhere_and_ignores_case(us: Company):
    def names(pattern: str) -> list[str]:
        statement = f"SELECT * FROM Customer WHERE DisplayName LIKE '{pattern}'"  # noqa: S608
        found = query.run(us, statement, 1000)
        return [c["DisplayName"] for c in found.get("Customer", [])]

    assert names("%ROCK%") == ["Red Rock Diner"]
    assert names("amy%") == ["Amy's Bird Sanctuary"]
    assert names("%consulting") == ["Weiskopf Consulting"]
    assert names("R%r") == ["Red Rock Diner"]
    assert names("Rock") == []


def test_ordered_pages_are_the_slices_of_one_stable_sort(us: Company):
    us.bulk_seed(40, 300, days=30)
    invoices = query.run(us, "SELECT * FROM Invoice MAXRESULTS 1000", 1000)["Invoice"]
    expected = sorted(invoices, key=lambda i: i["TxnDate"], reverse=True)
    pages = [
        query.run(
            us,
            f"SELECT * FROM Invoice ORDERBY TxnDate DESC STARTPOSITION {start} MAXRESULTS 7",  # noqa: S608
            1000,
        )
        for start in (1, 8, 295)
    ]
    assert [[i["Id"] for i in page["Invoice"]] for page in pages] == [
        [i["Id"] for i in expected[0:7]],
        [i["Id"] for i in expected[7:14]],
        [i["Id"] for i in expected[294:]],
    ]
    assert (pages[0]["startPosition"], pages[2]["maxResults"]) == (1, 6)
    with pytest.raises(QboFault) as err:
        query.run(us, "SELECT * FROM Invoice MAXRESULTS 1001", 1000)
    assert "Max allowed value is 1000" in err.value.detail


def test_bulk_seed_makes_records_that_read_as_created_ones(us: Company):
    seeded = us.bulk_seed(5, 12, company_name="Firm {n}", amount="40.00", days=10)
    customers = [c for c in us.records["Customer"].values() if c["DisplayName"][:8] == "Customer"]
    assert [c["DisplayName"] for c in customers] == [f"Customer {n:05d}" for n in range(1, 6)]
    assert customers[2]["PrimaryEmailAddr"] == {"Address": "customer00003@example.com"}
    assert customers[2]["CompanyName"] == "Firm 3"
    assert set(customers[0]) == set(customers[4])
    assert len({c["Id"] for c in customers}) == 5 and seeded["customers"] == 5
    invoices = list(us.records["Invoice"].values())
    assert len(invoices) == 12 and set(invoices[0]) == set(invoices[-1])
    assert len({i["DocNumber"] for i in invoices}) == 12
    assert [i["CustomerRef"]["value"] for i in invoices[:6]] == [
        c["Id"] for c in customers + customers[:1]
    ]
    assert invoices[3]["BillEmail"] == customers[3]["PrimaryEmailAddr"]
    assert all(i["TotalAmt"] == i["Balance"] == Decimal("40.00") for i in invoices)
    dates = [i["TxnDate"] for i in invoices]
    assert dates == sorted(dates) and dates[-1] <= us.today().isoformat()
    assert us.get("Customer", customers[0]["Id"])["Balance"] == Decimal("120.00")
    with pytest.raises(QboFault) as err:
        us.bulk_seed(2)
    assert err.value.code == "6240"


def test_bulk_seed_control_fills_a_company_over_http(qbo_sandbox: SandboxHandle):
    company = qbo_sandbox.create_company("US", demo_data=False)
    seeded = qbo_sandbox.bulk_seed(
        company.realm_id, {"count": 30, "display_name": "Bulk {n}"}, {"count": 45}
    )
    with api(qbo_sandbox, company) as http:
        counted = http.get("/query", params={"query": "SELECT COUNT(*) FROM Invoice"}).json()
        bulk_7 = http.get(
            "/query", params={"query": "SELECT * FROM Customer WHERE DisplayName = 'Bulk 7'"}
        ).json()
    assert (seeded["customers"], seeded["invoices"]) == (30, 45)
    assert counted["QueryResponse"]["totalCount"] == 45
    assert bulk_7["QueryResponse"]["Customer"][0]["PrimaryEmailAddr"]["Address"] == (
        "customer00007@example.com"
    )
