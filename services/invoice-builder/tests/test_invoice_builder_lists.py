"""The wizard's lists over HTTP against a company too large to read whole: one page each, from
a few QuickBooks queries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dealbooks_contracts import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py
INVOICE_ROW = {
    "id", "doc_number", "customer", "customer_id", "total", "balance", "currency", "txn_date",
    "due_date", "email_status",
}  # fmt: skip


@pytest.fixture
def large(qbo_sandbox: Any) -> Any:
    """A US company with 400 customers (`Customer 00001`...) and 900 invoices."""
    company = qbo_sandbox.create_company("US")
    qbo_sandbox.bulk_seed(company.realm_id, {"count": 400}, {"count": 900, "days": 90})
    return company


async def connected(builder: Harness, company: Any, portal: str) -> str:
    builder.qbo_tokens.set(company.realm_id, company.access_token)
    await builder.connect_account(Tenant(portal_id=portal, account_id=company.realm_id))
    return str(company.realm_id)


async def test_searches_answer_one_page_from_a_few_queries(
    builder: Harness, qbo_sandbox: Any, large: Any
) -> None:
    portal = f"p-{uuid.uuid4().hex[:8]}"
    realm = await connected(builder, large, portal)
    base = f"/portals/{portal}/accounts/{realm}"

    async with builder.wizard(portal) as wizard:

        async def calls(path: str, **params: Any) -> tuple[Any, int]:
            before = qbo_sandbox.stats(realm)["requests"]
            answer = await wizard.get(f"{base}/{path}", params=params)
            assert answer.status_code == 200, answer.text
            return answer.json(), qbo_sandbox.stats(realm)["requests"] - before

        broad, broad_calls = await calls("customers", q="customer")
        address, address_calls = await calls("customers", q="customer00007@example.com")
        items, item_calls = await calls("items", q="KIT")
        newest, newest_calls = await calls("invoices")
        older, _ = await calls("invoices", page=2)
        one = newest["invoices"][0]
        theirs, theirs_calls = await calls("invoices", customer_id=one["customer_id"])
        by_number, number_calls = await calls("invoices", q=one["doc_number"])
        by_name, name_calls = await calls("invoices", q=one["customer"])
        accounts = (await wizard.get(f"/portals/{portal}/accounts")).json()["accounts"]

    assert len(broad["customers"]) == 50 and broad_calls == 2
    assert [c["display_name"] for c in broad["customers"]][:2] == [
        "Customer 00001",
        "Customer 00002",
    ]
    assert [c["display_name"] for c in address["customers"]] == ["Customer 00007"]
    assert address_calls == 3
    assert items == {
        "items": [{"id": "3", "name": "Hardware kit", "unit_price": "120", "type": "NonInventory",
                   "taxable": True}],
        "more": False,
    }  # fmt: skip
    assert item_calls == 1
    assert (len(newest["invoices"]), newest["more"], newest_calls) == (50, True, 1)
    assert set(one) == INVOICE_ROW and one["currency"] == "USD"
    assert one["txn_date"] >= newest["invoices"][-1]["txn_date"]
    assert not {i["id"] for i in newest["invoices"]} & {i["id"] for i in older["invoices"]}
    assert {i["customer_id"] for i in theirs["invoices"]} == {one["customer_id"]}
    assert theirs_calls == 1
    assert one["id"] in [i["id"] for i in by_number["invoices"]] and number_calls <= 3
    assert one["id"] in [i["id"] for i in by_name["invoices"]] and name_calls <= 3
    assert {i["customer"] for i in by_name["invoices"]} == {one["customer"]}
    assert [(a["country"], a["home_currency"]) for a in accounts] == [("US", "USD")]


async def test_bad_search_parameters_are_400(builder: Harness, qbo_sandbox: Any) -> None:
    portal = f"p-{uuid.uuid4().hex[:8]}"
    realm = await connected(builder, qbo_sandbox.create_company("US"), portal)
    base = f"/portals/{portal}/accounts/{realm}"
    async with builder.wizard(portal) as wizard:
        answers = [
            await wizard.get(f"{base}/invoices", params=params)
            for params in ({"page": "0"}, {"page": "21"}, {"page": "two"},
                           {"customer_id": "x'y"}, {"q": "x" * 201})
        ]  # fmt: skip
        long_customers = await wizard.get(f"{base}/customers", params={"q": "x" * 201})
    assert [a.status_code for a in answers] == [400] * 5
    assert long_customers.status_code == 400
    assert "page must be a number from 1 to 20" in answers[0].json()["error"]
