"""The approval pages over a stand-in invoice-builder and connector-auth (httpx's mock
transport): what they show, what they send for approve, edited lines and reject, and how a
refusal or a decision made elsewhere reads. The services' own behaviour is tested with them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from console.approvals import edited_lines
from starlette.datastructures import FormData

PORTAL = "62515"
CSRF = "csrf-token-1"
REQUEST = "0b9e7c1e-0000-4000-8000-000000000001"
LINES = [
    {"qbo_item_id": "1", "quantity": "8", "unit_price": {"amount": "205", "currency": "USD"},
     "description": "Expedition tent", "tax_code_id": None, "crm_line_item_id": None,
     "crm_product_id": None, "amount": "1640.00"},
    {"qbo_item_id": "1", "quantity": "1", "unit_price": {"amount": "200", "currency": "USD"},
     "description": "Fitting", "tax_code_id": None, "crm_line_item_id": None,
     "crm_product_id": None, "amount": "200.00"},
]  # fmt: skip


def approval(status: str = "pending", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": REQUEST,
        "status": status,
        "realm_id": "9341455731187204",
        "company_name": "Summit Ridge Outfitters",
        "deal_id": "1203",
        "customer_name": "Amy's Bird Sanctuary",
        "subtotal": "1840.00",
        "currency": "USD",
        "line_count": 2,
        "requested_by": "u-rep",
        "requested_at": "2026-12-07T10:00:00+00:00",
        "approver_id": "900000001",
        "crm_task_id": "77",
        "edited": False,
        "invoice": {
            "customer": {
                "kind": "existing",
                "qbo_customer_id": "1",
                "name": "Amy's Bird Sanctuary",
            },
            "lines": LINES,
            "subtotal": "1840.00",
            "currency": "USD",
            "invoice_date": None,
            "due_date": None,
            "customer_message": None,
        },
        **extra,
    }


class Services:
    """connector-auth and invoice-builder as the console sees them; `answers` overrides one
    (method, path) with (status, body), and every call is kept in `calls`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body))
        if (request.method, path) in self.answers:
            status, answer = self.answers[(request.method, path)]
            return httpx.Response(status, json=answer)
        if path == f"/v1/portals/{PORTAL}/accounts":
            return httpx.Response(200, json={"results": [
                {"account_id": "9341455731187204", "company_name": "Summit Ridge Outfitters",
                 "status": "connected"}]})  # fmt: skip
        base = f"/portals/{PORTAL}"
        if path == f"{base}/approvals":
            return httpx.Response(200, json={"approvals": [approval()]})
        if path == f"{base}/approvals/{REQUEST}":
            return httpx.Response(200, json=approval())
        if path.endswith("/approve") or path.endswith("/reject"):
            decided = "approved" if path.endswith("/approve") else "rejected"
            return httpx.Response(200, json=approval(decided))
        if path == f"{base}/accounts":
            return httpx.Response(200, json={"accounts": [
                {"realm_id": "9341455731187204", "company_name": "Summit Ridge Outfitters"},
                {"realm_id": "9341455322581846", "company_name": "Larry's Bakery"},
            ]})  # fmt: skip
        if path.endswith("/approval-settings"):
            advanced = "9341455731187204" in path
            return httpx.Response(200, json={
                "realm_id": path.split("/")[4],
                "company_name": "Summit Ridge Outfitters" if advanced else "Larry's Bakery",
                "edition": "QuickBooks Online Advanced" if advanced else "QuickBooks Online Plus",
                "advanced": advanced, "enabled": advanced, "active": advanced,
                "approver_owner_id": None, "remind_after_hours": 24.0,
            })  # fmt: skip
        if path == f"{base}/invoice-requests/{REQUEST}":
            return httpx.Response(200, json={
                "status": "awaiting_approval", "portal_id": PORTAL, "deal_id": "1203",
            })  # fmt: skip
        return httpx.Response(404, json={"error": "not here"})

    def posted(self, suffix: str) -> list[Any]:
        return [
            body for method, path, body in self.calls if method != "GET" and path.endswith(suffix)
        ]


@pytest.fixture
def services() -> Services:
    return Services()


@pytest_asyncio.fixture
async def browser(services: Services, signed_in: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(services, portal=PORTAL, csrf=CSRF) as client:
        yield client


@pytest.mark.asyncio
async def test_the_list_shows_what_waits_and_each_companys_settings(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get(f"/portals/{PORTAL}/approvals")
    dutch = await browser.get(f"/portals/{PORTAL}/approvals?lang=nl")
    assert page.status_code == 200
    assert "Amy&#39;s Bird Sanctuary" in page.text
    assert f"/portals/{PORTAL}/approvals/{REQUEST}" in page.text
    assert "$1,840.00" in page.text
    assert 'name="approver_owner_id"' in page.text  # the Advanced company's form
    assert "Larry&#39;s Bakery is on QuickBooks Online Plus" in page.text
    assert "Wacht op goedkeuring" in dutch.text and "$ 1.840,00" in dutch.text


@pytest.mark.asyncio
async def test_the_list_names_each_deal_where_the_crm_gives_the_name(
    browser: httpx.AsyncClient, services: Services
) -> None:
    link = f'<a href="/portals/{PORTAL}/records/deals/1203">'
    unnamed = await browser.get(f"/portals/{PORTAL}/approvals")  # status-tracker: 404
    names = ("GET", f"/portals/{PORTAL}/records/deals")
    services.answers[names] = (200, {"object_type": "deals", "names": {"1203": "Tents"}})
    named = await browser.get(f"/portals/{PORTAL}/approvals")

    assert f"{link}1203</a>" in unnamed.text
    assert f"{link}Tents</a>" in named.text


OWNERS = [
    {"id": "900000002", "name": "Ada Lee", "email": "ada@summit.example", "user_id": "62515001"},
    {"id": "900000001", "name": "zoe@summit.example", "email": "zoe@summit.example"},
]


@pytest.mark.asyncio
async def test_the_approver_is_picked_by_name_from_the_portals_owners(
    browser: httpx.AsyncClient, services: Services
) -> None:
    owners = f"/portals/{PORTAL}/owners"
    settings = "/accounts/9341455731187204/approval-settings"
    services.answers[("GET", owners)] = (200, {"owners": OWNERS})
    listed = await browser.get(f"/portals/{PORTAL}/approvals")
    services.answers[("GET", f"/portals/{PORTAL}{settings}")] = (200, {
        "realm_id": "9341455731187204", "company_name": "Summit Ridge Outfitters",
        "edition": "QuickBooks Online Advanced", "advanced": True, "enabled": True,
        "active": True, "approver_owner_id": "900000007", "remind_after_hours": None,
    })  # fmt: skip
    gone = await browser.get(f"/portals/{PORTAL}/approvals")
    services.answers[("GET", owners)] = (200, {"owners": None, "reason": "no scope"})
    unreadable = await browser.get(f"/portals/{PORTAL}/approvals")
    services.answers[("GET", owners)] = (503, {"error": "the CRM is away"})
    away = await browser.get(f"/portals/{PORTAL}/approvals")

    # A choice of names, the deal's owner first (nobody set).
    assert '<select id="approver-9341455731187204" name="approver_owner_id">' in listed.text
    assert '<option value="" selected>Each deal&#39;s owner</option>' in listed.text
    assert '<option value="900000002">Ada Lee (ada@summit.example)</option>' in listed.text
    assert '<option value="900000001">zoe@summit.example</option>' in listed.text
    # An approver the CRM no longer lists stays chosen, and says so.
    assert (
        '<option value="900000007" selected>Owner 900000007 (not among the CRM&#39;s owners '
        "now)</option>" in gone.text
    )
    # Where the owners cannot be listed, the id is typed, with why and what to do.
    for page in (unreadable, away):
        assert page.status_code == 200
        assert '<select id="approver-' not in page.text
        assert 'name="approver_owner_id" inputmode="numeric"' in page.text
    assert "lacks crm.objects.owners.read" in unreadable.text


@pytest.mark.asyncio
async def test_one_approval_shows_its_invoice_with_editable_lines(
    browser: httpx.AsyncClient, services: Services
) -> None:
    page = await browser.get(f"/portals/{PORTAL}/approvals/{REQUEST}")
    services.answers[("GET", f"/portals/{PORTAL}/owners")] = (200, {"owners": OWNERS})
    named = await browser.get(f"/portals/{PORTAL}/approvals/{REQUEST}")
    assert page.status_code == 200
    assert 'name="quantity_0" inputmode="decimal" size="6" value="8"' in page.text
    # The approver by id where the owners cannot be listed, else by name (then not said to be
    # an owner id).
    assert "<dt>Approver (CRM owner)</dt><dd>900000001</dd>" in page.text
    assert "<dt>Approver</dt><dd>zoe@summit.example</dd>" in named.text
    assert "$1,640.00" in page.text and "Expedition tent" in page.text
    assert 'value="approve"' in page.text and 'value="reject"' in page.text


@pytest.mark.asyncio
async def test_the_approval_links_its_deal_by_name_else_by_id(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    link = f'<a href="/portals/{PORTAL}/records/deals/1203">Deal'
    unnamed = await browser.get(url)  # status-tracker does not answer for the deal
    services.answers[("GET", f"/portals/{PORTAL}/records/deals/1203")] = (
        200, {"object_type": "deals", "object_id": "1203", "name": "Tents for <Summit>"},
    )  # fmt: skip
    named = await browser.get(url)

    assert unnamed.status_code == 200
    assert f"{link} 1203</a>" in unnamed.text
    assert f"{link} Tents for &lt;Summit&gt;</a>" in named.text


@pytest.mark.asyncio
async def test_the_approval_names_who_asked_by_the_owner_of_their_crm_user_else_by_the_id(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    owners = ("GET", f"/portals/{PORTAL}/owners")
    services.answers[("GET", url)] = (200, approval(requested_by="62515001", approver_id=None))
    services.answers[owners] = (200, {"owners": OWNERS})
    named = await browser.get(url)
    dutch = await browser.get(url + "?lang=nl")
    pages = {}
    for why, answer in {
        "not an owner": (200, {"owners": OWNERS[1:]}),
        "no scope": (200, {"owners": None, "reason": "no scope"}),
        "the CRM is away": (503, {"error": "the CRM is away"}),
        "not a list": (200, {"owners": "Ada Lee"}),
        "not an answer": (200, ["Ada Lee"]),
    }.items():
        services.answers[owners] = answer
        pages[why] = await browser.get(url + "?lang=en")

    # The owner's name, although the request carries the user id, not the owner id.
    assert "<dt>Requested by</dt><dd>Ada Lee</dd>" in named.text
    assert "<dt>Aangevraagd door</dt><dd>Ada Lee</dd>" in dutch.text
    # No approver: nobody's id to explain.
    assert "<dt>Approver</dt><dd>Nobody: the deal has no owner</dd>" in named.text
    assert "62515001" not in named.text
    # Nobody to name it by: the id, said to be a CRM user's; the page shows all the same.
    for why, page in pages.items():
        assert page.status_code == 200, why
        assert "<dt>Requested by (CRM user)</dt><dd>62515001</dd>" in page.text, why
        assert "Ada Lee" not in page.text, why
        assert 'value="approve"' in page.text, why


@pytest.mark.asyncio
async def test_approving_unchanged_sends_no_lines_and_an_edited_price_sends_them_all(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    plain = await browser.post(url, data={"csrf_token": CSRF, "action": "approve",
                                          "quantity_0": "8", "price_0": "205"})  # fmt: skip
    edited = await browser.post(url, data={"csrf_token": CSRF, "action": "approve",
                                           "quantity_0": "8", "price_0": "190.50"})  # fmt: skip
    assert (plain.status_code, plain.headers["location"]) == (303, f"{url}?done=approve")
    assert edited.status_code == 303
    first, second = services.posted("/approve")
    assert first == {}
    assert [line["unit_price"]["amount"] for line in second["lines"]] == ["190.50", "200"]
    assert "amount" not in second["lines"][0]


@pytest.mark.asyncio
async def test_a_reject_needs_a_reason_and_sends_it(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    empty = await browser.post(url, data={"csrf_token": CSRF, "action": "reject", "reason": " "})
    sent = await browser.post(url, data={"csrf_token": CSRF, "action": "reject",
                                         "reason": "Agreed at 180 a tent"})  # fmt: skip
    assert empty.status_code == 422
    assert "Say why the invoice is rejected." in empty.text
    assert sent.headers["location"] == f"{url}?done=reject"
    assert services.posted("/reject") == [{"reason": "Agreed at 180 a tent"}]


@pytest.mark.asyncio
async def test_a_form_without_its_csrf_token_decides_nothing(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    refused = await browser.post(url, data={"action": "approve"})
    assert refused.status_code in (401, 403)
    assert services.posted("/approve") == []


@pytest.mark.asyncio
async def test_a_refused_edit_and_a_decision_made_elsewhere_read_as_such(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    path = f"/portals/{PORTAL}/approvals/{REQUEST}/approve"
    services.answers[("POST", path)] = (422, {"problem": {
        "code": "TAX_CODE_NOT_ALLOWED", "message": "Line 1: remove the tax code",
        "field": "tax_code_id", "line_index": 0}})  # fmt: skip
    refused = await browser.post(url, data={"csrf_token": CSRF, "action": "approve"})
    services.answers[("POST", path)] = (409, {"error": "this approval was rejected already"})
    late = await browser.post(url, data={"csrf_token": CSRF, "action": "approve"})
    bad = await browser.post(url, data={"csrf_token": CSRF, "action": "approve",
                                        "quantity_1": "two"})  # fmt: skip
    assert refused.status_code == 422 and "Line 1: remove the tax code" in refused.text
    assert late.headers["location"] == f"{url}?already=1"
    assert bad.status_code == 422 and "(line 2)" in bad.text
    assert len(services.posted("/approve")) == 2  # the unreadable quantity was not sent


@pytest.mark.asyncio
async def test_settings_are_saved_for_one_company(
    browser: httpx.AsyncClient, services: Services
) -> None:
    realm = "9341455731187204"
    saved = await browser.post(
        f"/portals/{PORTAL}/approvals/settings/{realm}",
        data={"csrf_token": CSRF, "enabled": "on", "approver_owner_id": " 900000007 ",
              "remind_after_hours": "8"},
    )  # fmt: skip
    assert saved.headers["location"] == f"/portals/{PORTAL}/approvals?saved={realm}"
    assert services.posted("/approval-settings") == [
        {"enabled": True, "approver_owner_id": "900000007", "remind_after_hours": 8.0,
         "approver_only": False}
    ]  # fmt: skip
    await browser.post(
        f"/portals/{PORTAL}/approvals/settings/{realm}",
        data={"csrf_token": CSRF, "enabled": "on", "approver_only": "on"},
    )
    assert services.posted("/approval-settings")[1]["approver_only"] is True


@pytest.mark.asyncio
async def test_a_person_who_is_not_the_approver_is_told_so_on_the_approval(
    browser: httpx.AsyncClient, services: Services
) -> None:
    url = f"/portals/{PORTAL}/approvals/{REQUEST}"
    services.answers[("POST", f"{url}/approve")] = (403, {
        "error": "Only the approver, ann@summit.example, may approve or reject this invoice.",
        "code": "not_the_approver",
    })  # fmt: skip
    page = await browser.post(url, data={"csrf_token": CSRF, "action": "approve"})
    assert page.status_code == 422
    assert "This company lets only the approver decide. Only the approver, " in page.text
    assert "ann@summit.example" in page.text
    assert 'value="approve"' in page.text  # the approval is shown again, still pending


@pytest.mark.asyncio
async def test_a_request_waiting_for_approval_links_to_it_and_home_links_to_the_list(
    browser: httpx.AsyncClient,
) -> None:
    outcome = await browser.get(f"/portals/{PORTAL}/requests/{REQUEST}")
    home = await browser.get(f"/portals/{PORTAL}")
    assert "The invoice waits for approval" in outcome.text
    assert f"/portals/{PORTAL}/approvals/{REQUEST}" in outcome.text
    assert home.status_code == 200
    assert f'<a href="/portals/{PORTAL}/approvals">Invoices waiting for approval</a>' in home.text


def test_edited_lines_are_none_when_nothing_changed() -> None:
    same = FormData([("quantity_0", "8.0"), ("price_0", "205.00")])
    assert edited_lines(same, LINES) is None
    with pytest.raises(ValueError, match="line 1"):
        edited_lines(FormData([("quantity_0", "0")]), LINES)


MENU = (f'<a href="/portals/{PORTAL}/approvals"', f'<a href="/portals/{PORTAL}/reminders"')


@pytest.mark.asyncio
async def test_the_menu_offers_approvals_and_reminders_where_a_company_is_on_advanced(
    services: Services, signed_in: Any
) -> None:
    shown: dict[str, tuple[httpx.Response, ...]] = {}
    for case, session in {
        "advanced here": {"advanced_portals": [PORTAL]},
        "advanced elsewhere": {"advanced_portals": ["99999"]},
        "no advanced": {"advanced_portals": []},
        "not said": {},
    }.items():
        async with signed_in(services, portal=PORTAL, csrf=CSRF, session=session) as browser:
            shown[case] = (
                await browser.get(f"/portals/{PORTAL}/accounts"),
                await browser.get(f"/portals/{PORTAL}"),
                await browser.get(f"/portals/{PORTAL}/approvals"),
            )

    for case in ("advanced here", "not said"):  # not known: a link too many, never too few
        accounts, home, _ = shown[case]
        assert all(link in accounts.text for link in MENU), case
        assert f"{MENU[0]}>Invoices waiting for approval</a>" in home.text, case
    for case in ("advanced elsewhere", "no advanced"):
        accounts, home, approvals = shown[case]
        assert accounts.status_code == 200 and "QuickBooks companies" in accounts.text, case
        assert not any(link in page.text for link in MENU for page in (accounts, home)), case
        # The page itself still answers its URL, and says why it does not apply.
        assert approvals.status_code == 200, case
        assert "Larry&#39;s Bakery is on QuickBooks Online Plus" in approvals.text, case


@pytest.mark.asyncio
async def test_the_menu_follows_a_company_connected_or_disconnected_at_once(
    services: Services, signed_in: Any
) -> None:
    session: dict[str, Any] = {"advanced_portals": []}
    realm = "9341455731187204"
    services.answers[("DELETE", f"/v1/portals/{PORTAL}/accounts/{realm}")] = (204, None)
    accounts = f"/portals/{PORTAL}/accounts"
    async with signed_in(services, portal=PORTAL, csrf=CSRF, session=session) as browser:
        before = await browser.get(accounts)
        session["advanced_portals"] = [PORTAL]  # connector-auth knows; the console asked before
        remembered = await browser.get(accounts)
        back = await browser.get(f"/connected?portal_id={PORTAL}&account_id={realm}")
        connected = await browser.get(accounts)
        session["advanced_portals"] = []
        gone = await browser.post(f"{accounts}/{realm}/disconnect", data={"csrf_token": CSRF})
        disconnected = await browser.get(accounts)

    assert not any(link in before.text for link in MENU)
    assert not any(link in remembered.text for link in MENU)  # the session, kept a while
    assert back.status_code == 303 and gone.status_code == 303
    assert all(link in connected.text for link in MENU)
    assert not any(link in disconnected.text for link in MENU)
