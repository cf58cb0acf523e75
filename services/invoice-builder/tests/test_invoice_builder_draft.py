"""What the invoice wizard starts from (`GET .../accounts/{realm}/deals/{deal}/draft`): the
deal's name, its quotes, each usable or why not, and the lines of the deal or of the chosen
quote with the QuickBooks item each CRM product is linked to; both sandboxes over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from dealbooks_contracts import ProductSynced, SyncAction, SyncTrigger, Tenant
from dealbooks_infra.records import association as assoc
from invoice_builder.api.draft import DraftAnswer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py


def crm_date(days_from_now: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days_from_now)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest_asyncio.fixture(loop_scope="module")
async def realm(builder: Harness, qbo_sandbox: Any, crm_portal: Any) -> str:
    """A fresh US company connected to the portal, with tokens for both APIs; its realm id."""
    builder.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    return await builder.us_company(qbo_sandbox, crm_portal.key)


async def link_product(builder: Harness, tenant: Tenant, crm_product_id: str, item: str) -> None:
    """product-sync's word that a CRM product stands for a QuickBooks item, and its effect."""
    synced = ProductSynced(
        action=SyncAction.CREATED,
        trigger=SyncTrigger.WEBHOOK,
        mapping_version=1,
        qbo_item_id=item,
        crm_product_id=crm_product_id,
    )
    await builder.publish(synced, tenant)
    realm = tenant.require_account_id()

    async def linked() -> bool:
        links = await builder.service.store.product_links(tenant.portal_id, realm)
        return links.get(crm_product_id) == item

    await builder.eventually(linked)


def deal(crm: Any, portal: Any, lines: list[dict[str, str]], name: str | None = "Joinery") -> str:
    pid = portal.portal_id
    props = {"dealstage": "contractsent", **({"dealname": name} if name is not None else {})}
    made = crm.create_as_user(pid, "deals", props)
    for props in lines:
        crm.create_as_user(pid, "line_items", props, [assoc(made["id"], 20)])
    return str(made["id"])


# One line of its own, for a deal whose lines are not what the test looks at.
DEAL_LINE = {"name": "Deal line", "quantity": "1", "price": "9"}


def quote(crm: Any, portal: Any, deal_id: str, title: str, expires_in_days: int) -> str:
    """A published quote of the deal with two line items."""
    pid = portal.portal_id
    made = crm.create_as_user(
        pid,
        "quotes",
        {"hs_title": title, "hs_status": "APPROVAL_NOT_NEEDED",
         "hs_expiration_date": crm_date(expires_in_days)},
        [assoc(deal_id, 64)],
    )  # fmt: skip
    for name, qty, price in ((f"{title} table", "1", "1000"), (f"{title} delivery", "2", "150")):
        crm.create_as_user(
            pid, "line_items", {"name": name, "quantity": qty, "price": price},
            [assoc(made["id"], 68)],
        )  # fmt: skip
    return str(made["id"])


async def deal_draft(
    builder: Harness, crm_portal: Any, realm: str, deal_id: str, quote_id: str | None = None
) -> dict[str, Any]:
    """What the wizard shows the portal's user to draft the deal from (from `quote_id`'s lines
    when one is chosen); the answer must be a 200."""
    params = {"quote_id": quote_id} if quote_id else {}
    async with builder.wizard(crm_portal.key) as wizard:
        answer = await wizard.get(
            f"/portals/{crm_portal.key}/accounts/{realm}/deals/{deal_id}/draft", params=params
        )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    DraftAnswer.model_validate(body)  # the answer is the shape the OpenAPI document says
    return body


async def test_deal_lines_carry_the_qbo_item_of_a_linked_product_and_none_for_an_unlinked_one(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    pid = crm_portal.portal_id
    linked = crm_sandbox.create_as_user(pid, "products", {"name": "Oak table", "price": "900"})
    unlinked = crm_sandbox.create_as_user(pid, "products", {"name": "Chair", "price": "120"})
    await link_product(
        builder, Tenant(portal_id=crm_portal.key, account_id=realm), linked["id"], "2"
    )
    deal_id = deal(
        crm_sandbox,
        crm_portal,
        [
            {"hs_product_id": linked["id"], "quantity": "2"},
            {"hs_product_id": unlinked["id"], "quantity": "4"},
            {"name": "Fitting", "quantity": "1", "price": "80", "description": "On site"},
        ],
    )

    body = await deal_draft(builder, crm_portal, realm, deal_id)

    assert (body["deal_id"], body["quote_id"]) == (deal_id, None)
    assert (body["quotes"], body["problem"]) == ([], None)
    shown = [
        (ln["name"], ln["quantity"], ln["price"], ln["currency"], ln["crm_product_id"],
         ln["qbo_item_id"])
        for ln in body["lines"]
    ]  # fmt: skip
    assert shown == [
        ("Oak table", "2", "900", "USD", linked["id"], "2"),
        ("Chair", "4", "120", "USD", unlinked["id"], None),
        ("Fitting", "1", "80", "USD", None, None),
    ]
    assert body["lines"][2]["description"] == "On site"
    assert all(ln["line_item_id"] for ln in body["lines"])


async def test_deal_quotes_are_listed_usable_or_with_why_not(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [DEAL_LINE])
    current = quote(crm_sandbox, crm_portal, deal_id, "Q-current", expires_in_days=20)
    expired = quote(crm_sandbox, crm_portal, deal_id, "Q-old", expires_in_days=-2)

    body = await deal_draft(builder, crm_portal, realm, deal_id)

    quotes = {q["quote_id"]: q for q in body["quotes"]}
    assert set(quotes) == {current, expired}
    assert quotes[current]["title"] == "Q-current"
    assert (quotes[current]["usable"], quotes[current]["problem"]) == (True, None)
    assert quotes[current]["problem_code"] is None
    assert quotes[expired]["usable"] is False
    assert quotes[expired]["problem_code"] == "QUOTE_EXPIRED"
    assert "Q-old expired on" in quotes[expired]["problem"]
    # No quote chosen: the deal's own lines, and nothing wrong with them.
    assert [ln["name"] for ln in body["lines"]] == ["Deal line"]
    assert body["problem"] is None


async def test_a_chosen_quote_gives_its_own_lines(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [DEAL_LINE])
    chosen = quote(crm_sandbox, crm_portal, deal_id, "Q-7", expires_in_days=20)

    body = await deal_draft(builder, crm_portal, realm, deal_id, quote_id=chosen)

    assert (body["quote_id"], body["problem"]) == (chosen, None)
    assert [(ln["name"], ln["quantity"], ln["price"]) for ln in body["lines"]] == [
        ("Q-7 table", "1", "1000"),
        ("Q-7 delivery", "2", "150"),
    ]


async def test_a_chosen_expired_quote_is_the_problem(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [DEAL_LINE])
    expired = quote(crm_sandbox, crm_portal, deal_id, "Q-old", expires_in_days=-2)

    # Nothing is refused here: the wizard shows the problem next to the quote's lines.
    body = await deal_draft(builder, crm_portal, realm, deal_id, quote_id=expired)

    assert body["problem"]["code"] == "QUOTE_EXPIRED"
    assert "expired on" in body["problem"]["message"]
    assert [ln["name"] for ln in body["lines"]] == ["Q-old table", "Q-old delivery"]


async def test_a_deal_without_line_items_has_no_lines_as_its_problem(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [])

    body = await deal_draft(builder, crm_portal, realm, deal_id)

    assert body["lines"] == []
    assert body["problem"]["code"] == "NO_LINES"


async def test_another_portals_company_is_not_found(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any, crm_other_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [DEAL_LINE])
    other = crm_other_portal.key

    async with builder.wizard(other) as wizard:
        answer = await wizard.get(f"/portals/{other}/accounts/{realm}/deals/{deal_id}/draft")

    assert answer.status_code == 404
    assert "lines" not in answer.json()


async def test_the_draft_names_the_deal_from_the_deal_or_a_chosen_quote(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal_id = deal(crm_sandbox, crm_portal, [DEAL_LINE], name="  Acme <renewal> & co  ")
    chosen = quote(crm_sandbox, crm_portal, deal_id, "Q-9", expires_in_days=20)

    from_deal = await deal_draft(builder, crm_portal, realm, deal_id)
    from_quote = await deal_draft(builder, crm_portal, realm, deal_id, quote_id=chosen)

    # As the CRM has it, trimmed: what it says is the console's to escape.
    assert from_deal["deal_name"] == "Acme <renewal> & co"
    assert from_quote["deal_name"] == "Acme <renewal> & co"


async def test_a_deal_without_a_name_or_unknown_to_the_crm_has_no_name(
    builder: Harness, realm: str, crm_sandbox: Any, crm_portal: Any
) -> None:
    unnamed = deal(crm_sandbox, crm_portal, [DEAL_LINE], name=None)
    blank = deal(crm_sandbox, crm_portal, [DEAL_LINE], name="   ")

    assert (await deal_draft(builder, crm_portal, realm, unnamed))["deal_name"] is None
    assert (await deal_draft(builder, crm_portal, realm, blank))["deal_name"] is None
    gone = await deal_draft(builder, crm_portal, realm, "999999999999")
    assert (gone["deal_id"], gone["deal_name"], gone["lines"]) == ("999999999999", None, [])
