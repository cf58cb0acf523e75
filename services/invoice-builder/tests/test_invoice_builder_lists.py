"""The wizard's lists over HTTP against a company too large to read whole: one page each, from
a few QuickBooks queries; and the auto-draft rules of a portal, listed, read and deleted."""

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
    assert [(a["is_us"], a["country"], a["home_currency"]) for a in accounts] == [
        (True, "US", "USD")
    ]


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


async def test_rules_are_listed_read_and_deleted_only_by_their_portal(
    builder: Harness, qbo_sandbox: Any
) -> None:
    portal, other = f"p-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    realm = await connected(builder, qbo_sandbox.create_company("US"), portal)
    await connected(builder, qbo_sandbox.create_company("US"), other)
    rules = f"/portals/{portal}/auto-draft-rules"
    won = {"realm_id": realm, "deal_stage": "closedwon", "terms_id": 3,
           "chosen_items": {"li-1": "2"}}  # fmt: skip

    async with builder.wizard(portal) as owner:
        assert (await owner.put(f"{rules}/won", json=won)).status_code == 200
        sent = {"realm_id": realm, "deal_stage": "contractsent", "enabled": False}
        assert (await owner.put(f"{rules}/sent", json=sent)).status_code == 200
        listed = (await owner.get(rules)).json()
        read = (await owner.get(f"{rules}/won")).json()
    async with builder.wizard(other) as outsider:
        foreign_list = await outsider.get(rules)
        foreign_read = await outsider.get(f"{rules}/won")
        foreign_delete = await outsider.delete(f"{rules}/won")
        own_list = (await outsider.get(f"/portals/{other}/auto-draft-rules")).json()
        own_read = await outsider.get(f"/portals/{other}/auto-draft-rules/won")
        own_delete = await outsider.delete(f"/portals/{other}/auto-draft-rules/won")
    async with builder.wizard(portal) as owner:
        deleted = await owner.delete(f"{rules}/won")
        again = await owner.delete(f"{rules}/won")
        gone = await owner.get(f"{rules}/won")
        left = (await owner.get(rules)).json()

    assert read == {
        "rule_id": "won",
        "realm_id": realm,
        "deal_stage": "closedwon",
        "enabled": True,
        "terms_id": "3",
        "default_tax_code": None,
        "chosen_items": {"li-1": "2"},
    }
    assert listed["rules"] == [  # by deal stage
        read,
        {**sent, "rule_id": "sent", "terms_id": None, "default_tax_code": None,
         "chosen_items": {}},
    ]  # fmt: skip
    assert (foreign_list.status_code, foreign_read.status_code) == (403, 403)
    assert foreign_delete.status_code == 403
    assert own_list == {"rules": []}
    assert (own_read.status_code, own_delete.status_code) == (404, 404)
    assert deleted.json() == {"rule_id": "won", "deleted": True}
    assert (again.status_code, gone.status_code) == (404, 404)
    assert [r["rule_id"] for r in left["rules"]] == ["sent"]
    assert [r.rule_id for r in await builder.service.store.rules_of(portal)] == ["sent"]
