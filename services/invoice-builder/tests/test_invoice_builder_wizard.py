"""The wizard API and auto-draft rules, end to end with both sandboxes over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from dealbooks_contracts import CrmChange, CrmObjectChanged, CrmObjectType, Money, Tenant
from dealbooks_infra.records import association as assoc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py


UK_FACTS = {"country": "GB", "currency": "GBP", "name": "Thames Joinery"}


async def connected_realm(builder: Harness, qbo_sandbox: Any, crm_portal: Any, country: str) -> str:
    """A fresh QBO company in `country`, connected to the portal, with tokens for both APIs;
    its realm id."""
    company = qbo_sandbox.create_company(country)
    builder.qbo_tokens.set(company.realm_id, company.access_token)
    builder.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    tenant = Tenant(portal_id=crm_portal.key, account_id=company.realm_id)
    await builder.connect_account(tenant, **(UK_FACTS if country == "GB" else {}))
    return str(company.realm_id)


@pytest_asyncio.fixture(loop_scope="module")
async def us_realm(builder: Harness, qbo_sandbox: Any, crm_portal: Any) -> str:
    return await connected_realm(builder, qbo_sandbox, crm_portal, "US")


@pytest_asyncio.fixture(loop_scope="module")
async def uk_realm(builder: Harness, qbo_sandbox: Any, crm_portal: Any) -> str:
    return await connected_realm(builder, qbo_sandbox, crm_portal, "GB")


def seed_deal(
    crm: Any, pid: str, contact_id: str, name: str, stage: str, quantity: str, price: str
) -> tuple[str, str]:
    """A deal of the contact with one line item of seed: the deal's id and the line item's."""
    made = crm.create_as_user(
        pid, "deals", {"dealname": name, "dealstage": stage}, [assoc(contact_id, 3)]
    )
    item = crm.create_as_user(
        pid, "line_items", {"name": "Seed", "quantity": quantity, "price": price},
        [assoc(made["id"], 20)],
    )  # fmt: skip
    return str(made["id"]), str(item["id"])


def stage_entered(deal_id: str, stage: str, crm_event_id: str) -> CrmObjectChanged:
    """The CRM's word that the deal entered `stage`."""
    return CrmObjectChanged(
        crm_event_id=crm_event_id,
        object_type=CrmObjectType.DEAL,
        object_id=deal_id,
        change=CrmChange.PROPERTY_CHANGED,
        changed_at=datetime.now(UTC),
        property_name="dealstage",
        property_value=stage,
    )


async def save_won_rule(
    builder: Harness, crm_portal: Any, rule_id: str, realm_id: str, chosen_items: dict[str, str]
) -> None:
    """The portal's auto-draft rule `rule_id`: a deal of the company that is won is drafted."""
    async with builder.wizard(crm_portal.key) as wizard:
        saved = await wizard.put(
            f"/portals/{crm_portal.key}/auto-draft-rules/{rule_id}",
            json={"realm_id": realm_id, "deal_stage": "closedwon", "chosen_items": chosen_items},
        )
        assert saved.status_code == 200


async def invoices_in(builder: Harness, qbo_sandbox: Any, realm_id: str) -> list[Any]:
    token = await builder.qbo_tokens.token(realm_id)
    return list(qbo_sandbox.all_of(realm_id, token, "Invoice"))


async def auto_draft_rules_handled(builder: Harness, count: int) -> None:
    """Wait until the auto-draft rules' consumer has handled `count` events."""
    processed = builder.service.runtime.db["processed_events"]

    async def handled() -> bool:
        return await processed.count_documents({"consumer": "auto-draft-rules"}) >= count

    await builder.eventually(handled)


def crm_deal_with_quote(crm: Any, portal: Any, expires_in_days: int = 20) -> tuple[str, str]:
    """A deal with a contact and company, and a published quote with two line items."""
    pid = portal.portal_id
    company = crm.create_as_user(pid, "companies", {"name": "Thames Clients Ltd"})
    contact = crm.create_as_user(
        pid, "contacts", {"email": "eve@thames-clients.example", "firstname": "Eve",
                          "lastname": "Hart"}
    )  # fmt: skip
    deal = crm.create_as_user(
        pid,
        "deals",
        {"dealname": "Joinery", "dealstage": "contractsent", "amount": "1300"},
        [assoc(contact["id"], 3), assoc(company["id"], 5)],
    )
    expires = (datetime.now(UTC) + timedelta(days=expires_in_days)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    quote = crm.create_as_user(
        pid,
        "quotes",
        {"hs_title": "Q-7", "hs_status": "APPROVAL_NOT_NEEDED", "hs_expiration_date": expires},
        [assoc(deal["id"], 64), assoc(contact["id"], 69), assoc(company["id"], 71)],
    )
    for name, qty, price in (("Oak table", "1", "1000"), ("Delivery", "2", "150")):
        crm.create_as_user(
            pid,
            "line_items",
            {"name": name, "quantity": qty, "price": price, "hs_line_item_currency_code": "GBP"},
            [assoc(quote["id"], 68)],
        )
    return deal["id"], quote["id"]


async def test_wizard_previews_and_submits_an_invoice_from_a_uk_quote(
    builder: Harness, uk_realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id, quote_id = crm_deal_with_quote(crm_sandbox, crm_portal)
    base = f"/portals/{crm_portal.key}"
    body = {"deal_id": deal_id, "quote_id": quote_id, "default_tax_code": "2",
            "chosen_items": {}, "terms_id": "3"}  # fmt: skip

    async with builder.wizard(crm_portal.key) as wizard:
        accounts = (await wizard.get(f"{base}/accounts")).json()["accounts"]
        assert [a["realm_id"] for a in accounts] == [uk_realm]
        codes = (await wizard.get(f"{base}/accounts/{uk_realm}/tax-codes")).json()
        assert {c["id"] for c in codes["tax-codes"]} >= {"2", "3"}
        items = (await wizard.get(f"{base}/accounts/{uk_realm}/items")).json()["items"]

        unmapped = await wizard.post(f"{base}/accounts/{uk_realm}/preview", json=body)
        assert unmapped.json()["problem"]["code"] == "ITEM_NOT_FOUND"

        line_ids = sorted(
            (li["id"] for li in crm_sandbox.objects(crm_portal.portal_id, "line_items")),
            key=int,
        )
        body["chosen_items"] = {line_ids[0]: items[1]["id"], line_ids[1]: items[0]["id"]}
        preview = (await wizard.post(f"{base}/accounts/{uk_realm}/preview", json=body)).json()
        assert preview["problem"] is None
        assert (preview["subtotal"], preview["currency"]) == ("1300.00", "GBP")
        assert preview["customer"]["kind"] == "new"
        assert preview["customer"]["display_name"] == "Thames Clients Ltd"

        submitted = await wizard.post(f"{base}/accounts/{uk_realm}/invoice-requests", json=body)
        assert submitted.status_code == 202
        request_id = submitted.json()["request_id"]
        await builder.outcome(request_id)
        polled = (await wizard.get(f"{base}/invoice-requests/{request_id}")).json()

    assert polled["status"] == "drafted"
    assert (polled["total"], polled["currency"]) == ("1560.00", "GBP")  # 1300 + 20% VAT


async def test_auto_draft_rule_drafts_once_per_deal(
    builder: Harness, us_realm: str, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    pid = crm_portal.portal_id
    contact = crm_sandbox.create_as_user(pid, "contacts", {"email": "Birds@Intuit.com"})
    deal_id, item_id = seed_deal(
        crm_sandbox, pid, contact["id"], "Bird seed", "contractsent", quantity="4", price="25"
    )
    await save_won_rule(builder, crm_portal, "won", us_realm, {item_id: "1"})

    portal_only = Tenant(portal_id=crm_portal.key)
    # Won, reopened and won again: still one auto-draft for the deal.
    for n, stage in enumerate(["closedwon", "contractsent", "closedwon"]):
        await builder.publish(stage_entered(deal_id, stage, f"e{n}"), portal_only)

    [drafted] = await builder.events("invoice.drafted", lambda e: e.data.deal_id == deal_id)
    assert drafted.data.total == Money(amount=Decimal("100.00"), currency="USD")
    assert drafted.data.customer.qbo_customer_id == "1"  # matched by e-mail address
    await auto_draft_rules_handled(builder, 3)
    assert len(await invoices_in(builder, qbo_sandbox, us_realm)) == 1


async def test_wizard_searches_customers_and_proposes_the_best_match_for_the_deal(
    builder: Harness, us_realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    pid = crm_portal.portal_id
    # The sandbox company's "Amy's Bird Sanctuary" (id 1) has the address Birds@Intuit.com.
    amy = crm_sandbox.create_as_user(pid, "contacts", {"email": "birds@intuit.com"})
    by_email = crm_sandbox.create_as_user(
        pid, "deals", {"dealname": "Seed", "dealstage": "contractsent"}, [assoc(amy["id"], 3)]
    )
    sanctuary = crm_sandbox.create_as_user(pid, "companies", {"name": "Amy's Bird Sanctuary"})
    by_company = crm_sandbox.create_as_user(
        pid, "deals", {"dealname": "Feeders", "dealstage": "contractsent"},
        [assoc(sanctuary["id"], 5)],
    )  # fmt: skip
    stranger = crm_sandbox.create_as_user(pid, "contacts", {"email": "nobody@elsewhere.example"})
    unmatched = crm_sandbox.create_as_user(
        pid, "deals", {"dealname": "Other", "dealstage": "contractsent"}, [assoc(stranger["id"], 3)]
    )
    customers = f"/portals/{crm_portal.key}/accounts/{us_realm}/customers"

    async with builder.wizard(crm_portal.key) as wizard:
        searched = (await wizard.get(customers, params={"q": "BIRD"})).json()
        emailed = (await wizard.get(customers, params={"deal_id": by_email["id"]})).json()
        named = (await wizard.get(customers, params={"deal_id": by_company["id"]})).json()
        nothing = (await wizard.get(customers, params={"deal_id": unmatched["id"]})).json()
    async with builder.wizard("someone-else") as elsewhere:
        other_portal = await elsewhere.get(f"/portals/someone-else/accounts/{us_realm}/customers")

    assert [c["display_name"] for c in searched["customers"]] == ["Amy's Bird Sanctuary"]
    assert searched["customers"][0]["email"] == "Birds@Intuit.com"
    assert searched["proposal"] is None  # no deal given: nothing to propose
    assert emailed["proposal"] == {
        "qbo_customer_id": "1",
        "display_name": "Amy's Bird Sanctuary",
        "score": 100,
        "reason": "same e-mail address",
    }
    assert (named["proposal"]["qbo_customer_id"], named["proposal"]["reason"]) == (
        "1",
        "same company name",
    )
    assert nothing["proposal"] is None
    assert len(nothing["customers"]) > 1  # without a query, every active customer is listed
    assert other_portal.status_code == 404


async def test_expired_quote_is_refused_for_its_expiry_before_its_lines_are_checked(
    builder: Harness, uk_realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id, quote_id = crm_deal_with_quote(crm_sandbox, crm_portal, expires_in_days=-2)
    # No QBO item is chosen for the quote's lines: the expiry must still be the answer.
    body = {"deal_id": deal_id, "quote_id": quote_id, "default_tax_code": "2", "chosen_items": {}}

    async with builder.wizard(crm_portal.key) as wizard:
        base = f"/portals/{crm_portal.key}/accounts/{uk_realm}"
        preview = (await wizard.post(f"{base}/preview", json=body)).json()
        submitted = await wizard.post(f"{base}/invoice-requests", json=body)

    assert preview["problem"]["code"] == "QUOTE_EXPIRED"
    assert submitted.status_code == 422
    assert submitted.json()["problem"]["code"] == "QUOTE_EXPIRED"
    assert "expired on" in submitted.json()["problem"]["message"]


async def test_a_deal_whose_stage_webhook_was_lost_is_drafted_by_the_stage_sweep_once(
    builder: Harness, us_realm: str, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    pid = crm_portal.portal_id
    contact = crm_sandbox.create_as_user(pid, "contacts", {"email": "Birds@Intuit.com"})

    def deal(name: str, stage: str) -> tuple[str, str]:
        return seed_deal(crm_sandbox, pid, contact["id"], name, stage, quantity="2", price="30")

    won_before, before_item = deal("Won before the rule", "closedwon")
    lost_webhook, item = deal("Won after the rule", "contractsent")
    await save_won_rule(builder, crm_portal, "sweep", us_realm, {item: "1", before_item: "1"})
    # The deal is won in the CRM, and the webhook saying so never reaches dealbooks.
    crm_sandbox.update_as_user(pid, "deals", lost_webhook, {"dealstage": "closedwon"})

    swept = await builder.service.handlers.auto_drafts.sweep_rule_stages()

    assert (swept.done, swept.failed) == (1, {})
    [drafted] = await builder.events("invoice.drafted", lambda e: e.data.deal_id == lost_webhook)
    assert drafted.data.total == Money(amount=Decimal("60.00"), currency="USD")
    again = await builder.service.handlers.auto_drafts.sweep_rule_stages()
    assert again.done == 0  # drafted once: the deal has its auto-draft
    # The webhook after all: the same path, still one invoice for the deal.
    late = stage_entered(lost_webhook, "closedwon", "late")
    await builder.publish(late, Tenant(portal_id=crm_portal.key))
    await auto_draft_rules_handled(builder, 1)
    invoices = await invoices_in(builder, qbo_sandbox, us_realm)
    assert len(invoices) == 1  # and none for the deal won before the rule existed
    assert await builder.service.store.auto_draft_of(crm_portal.key, won_before) is None
