"""Real public QBO payloads (see golden/SOURCES.md) parse into the client's models, and the
sandbox's own responses pass the same models."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from dealbooks_qbo import (
    AuthExpired,
    CdcResult,
    Customer,
    Deleted,
    DuplicateName,
    InvalidQuery,
    InvalidReference,
    Invoice,
    QueryPage,
    Throttled,
    UnsupportedOperation,
    ValidationError,
    fault_from_body,
    parse_entity,
)
from dealbooks_qbo._json import loads
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle

GOLDEN = Path(__file__).parent / "golden"


def load(name: str) -> dict:
    return loads((GOLDEN / name).read_bytes())


def test_real_invoice_create_response_parses_with_exact_money():
    invoice = Invoice.model_validate(load("invoice_create.json")["Invoice"])
    assert invoice.Id == "266" and invoice.DocNumber == "1043"
    assert invoice.TotalAmt == invoice.Balance == Decimal("100.00")
    assert invoice.Line[-1].DetailType == "SubTotalLineDetail"
    assert str(invoice.DueDate) == "2020-10-29"


def test_real_void_response_parses_as_zeroed_invoice():
    invoice = Invoice.model_validate(load("invoice_void.json")["Invoice"])
    assert invoice.TotalAmt == 0 and invoice.Balance == 0 and invoice.PrivateNote == "Voided"
    assert invoice.SyncToken == "1"


def test_real_delete_response_parses_as_tombstone():
    gone = Deleted.model_validate(load("invoice_delete.json")["Invoice"])
    assert gone.Id == "266" and gone.status == "Deleted"


def test_real_customer_pages_and_updates_parse():
    page = QueryPage.from_response(load("query_customers_page.json")["QueryResponse"])
    assert page.entity == "Customer" and len(page.rows) == page.maxResults
    assert all(isinstance(c, Customer) for c in page.rows)
    assert (
        QueryPage.from_response(load("query_count_customers.json")["QueryResponse"]).totalCount
        == 41
    )
    escaped = QueryPage.from_response(load("query_customer_escaped_quote.json")["QueryResponse"])
    assert escaped.rows[0].DisplayName == "Amy's Bird Sanctuary"
    updated = Customer.model_validate(load("customer_full_update.json")["Customer"])
    assert updated.DisplayName == "Jack Moe" and updated.SyncToken == "1"
    vendors = QueryPage.from_response(load("query_vendor_ampersand.json")["QueryResponse"])
    assert vendors.entity == "Vendor" and vendors.rows[0]["DisplayName"] == "Robertson & Associates"


def test_real_batch_response_items_parse_and_faults_are_typed():
    from dealbooks_qbo._client import BatchOperation, _batch_result

    items = load("batch_mixed.json")["BatchItemResponse"]
    results = {i["bId"]: _batch_result(i["bId"], BatchOperation("query"), i) for i in items}
    assert results["bid1"].entity["DisplayName"] == "Boraski Family Store"
    assert results["bid2"].error.code == "610"
    assert results["bid3"].error.code == "5010"
    assert results["bid4"].page.entity == "SalesReceipt"


def test_real_cdc_response_parses_with_tax_lines():
    result = CdcResult.from_response(load("cdc_estimate.json"))
    estimates = result.changes["Estimate"]
    assert estimates and all(isinstance(e, dict | Deleted) for e in estimates)
    assert result.time.tzinfo is not None


@pytest.mark.parametrize(
    ("name", "status", "error_type", "code"),
    [
        ("fault_6240_duplicate_name.json", 400, DuplicateName, "6240"),
        ("fault_401_token_expired.json", 401, AuthExpired, "3200"),
        ("fault_4001_invalid_query.json", 400, InvalidQuery, "4001"),
        ("fault_2010_unknown_property.json", 400, ValidationError, "2010"),
        ("fault_500_unsupported_operation.json", 400, UnsupportedOperation, "500"),
        ("fault_2030_invalid_id.json", 400, InvalidReference, "2030"),
        ("fault_429_throttle.xml", 429, Throttled, "3001"),
    ],
)
def test_real_fault_bodies_map_to_typed_errors(name, status, error_type, code):
    error = fault_from_body(status, (GOLDEN / name).read_bytes())
    assert type(error) is error_type
    assert error.code == code and error.message


async def test_sandbox_responses_pass_the_same_models(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany
):
    headers = {"Authorization": f"Bearer {qbo_company.access_token}", "Accept": "application/json"}
    base = f"{qbo_sandbox.base_url}/v3/company/{qbo_company.realm_id}"
    body = load("invoice_create.json")
    request = {
        "Line": [
            {
                "Amount": 100.0,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}},
            }
        ],
        "CustomerRef": {"value": "1"},
    }
    async with httpx.AsyncClient(headers=headers) as http:
        created = loads((await http.post(f"{base}/invoice", json=request)).content)
        real_keys = set(body["Invoice"]) - {"CustomField"}
        assert real_keys <= set(created["Invoice"]) | {"ShipAddr"}
        Invoice.model_validate(created["Invoice"])
        for entity in ("Customer", "Item", "TaxCode", "Term", "Invoice", "Account"):
            page = loads(
                (
                    await http.get(f"{base}/query", params={"query": f"select * from {entity}"})  # noqa: S608
                ).content
            )
            for row in page["QueryResponse"][entity]:
                parse_entity(entity, row)
        info = loads((await http.get(f"{base}/companyinfo/{qbo_company.realm_id}")).content)
        parse_entity("CompanyInfo", info["CompanyInfo"])
        prefs = loads((await http.get(f"{base}/preferences")).content)
        parse_entity("Preferences", prefs["Preferences"])
        await asyncio.sleep(1.1)  # raw calls here bypass the client's budget; QBO allows 10/s
        bad = await http.get(f"{base}/customer/1.5")
        assert type(fault_from_body(bad.status_code, bad.content)) is InvalidReference
        unknown = await http.post(f"{base}/invoice", json={"BadJson": True})
        assert fault_from_body(unknown.status_code, unknown.content).code == "2010"
