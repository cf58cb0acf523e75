"""The wizard's pages are headed with the deal's name, over a stand-in invoice-builder (httpx's
mock transport): the name comes with the draft answer the source, details and review steps
read; the resend page has it from the form, and the outcome from status-tracker's read of the
request's deal (never from its link); without a name (none in the CRM, the CRM not connected,
an unknown deal) the heading names the deal by its id."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

PORTAL = "62515"
CSRF = "csrf-token-1"
REALM = "9341455731187204"
DEAL = "1203"
REQUEST = "5d0c7c1e-0000-4000-8000-000000000007"
BASE = f"/portals/{PORTAL}/accounts/{REALM}"
WIZARD = f"/portals/{PORTAL}/deals/{DEAL}/invoices/new"
NAME = "Acme <renewal> & co"
SHOWN = "Acme &lt;renewal&gt; &amp; co"  # the name, escaped as the page shows it
FORM = {
    "csrf_token": CSRF,
    "realm": REALM,
    "request_id": REQUEST,
    "customer": "new",
    "new_name": "Harbour Books",
    "item_0": "7",
}
PREVIEW = {
    "customer": {"kind": "new", "display_name": "Harbour Books"},
    "invoice_date": "2026-12-07",
    "due_date": None,
    "lines": [{"qbo_item_id": "7", "quantity": "2", "description": None, "tax_code_id": None,
               "unit_price": {"amount": "205", "currency": "USD"}}],
    "subtotal": "410",
    "currency": "USD",
}  # fmt: skip


class Builder:
    """invoice-builder, and status-tracker for the deal's name; `draft` is the draft answer
    (status, body), `named` the name status-tracker reads, `down` makes every call fail to
    connect; `sent` the invoice request bodies it was sent."""

    def __init__(self) -> None:
        self.draft: tuple[int, dict[str, Any]] = (200, self.drafted(NAME))
        self.named: str | None = NAME
        self.down = False
        self.sent: list[dict[str, Any]] = []

    @staticmethod
    def drafted(name: str | None) -> dict[str, Any]:
        return {"deal_id": DEAL, "deal_name": name, "quotes": [], "problem": None,
                "lines": [{"line_item_id": "11", "name": "Expedition tent", "quantity": "2",
                           "price": "205", "currency": "USD"}]}  # fmt: skip

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if path == f"/portals/{PORTAL}/accounts":
            return httpx.Response(200, json={"accounts": [
                {"realm_id": REALM, "company_name": "Summit Ridge Outfitters", "country": "US",
                 "is_us": True}]})  # fmt: skip
        if path == f"{BASE}/deals/{DEAL}/draft":
            status, body = self.draft
            return httpx.Response(status, json=body)
        if path == f"{BASE}/preview":
            return httpx.Response(200, json=PREVIEW)
        if path == f"{BASE}/invoice-requests":
            self.sent.append(json.loads(request.content))
            return httpx.Response(202, json={"request_id": REQUEST})
        if path == f"/portals/{PORTAL}/invoice-requests/{REQUEST}":
            return httpx.Response(200, json={"status": "pending", "deal_id": DEAL})
        if path == f"/portals/{PORTAL}/records/deals/{DEAL}":
            return httpx.Response(200, json={"object_type": "deals", "object_id": DEAL,
                                             "name": self.named})  # fmt: skip
        answers = {
            "/customers": {"customers": [], "proposal": None},
            "/items": {"items": [{"id": "7", "name": "Tents"}]},
            "/terms": {"terms": []},
        }
        for tail, answer in answers.items():
            if path == BASE + tail:
                return httpx.Response(200, json=answer)
        raise AssertionError(f"unexpected call {path}")


def heading(page: httpx.Response) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page.text, re.S)
    assert found, page.text
    return found.group(1).strip()


def hidden(page: httpx.Response) -> dict[str, str]:
    """The form's hidden fields, as the browser posts them."""
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    return {name: html.unescape(value) for name, value in found}


def signed(builder: Builder, signed_in: Any) -> Any:
    return signed_in(builder, portal=PORTAL, csrf=CSRF, resend_patience_seconds=0.2)


@pytest.mark.asyncio
async def test_every_step_is_headed_with_the_deals_name(signed_in: Any) -> None:
    builder = Builder()
    async with signed(builder, signed_in) as browser:
        start = await browser.get(WIZARD)
        details = await browser.get(f"{WIZARD}/details", params={"realm": REALM})
        review = await browser.post(f"{WIZARD}/review", data={**hidden(details), **FORM})
        created = await browser.post(
            f"{WIZARD}/review", data={**hidden(review), "action": "create"}
        )
        outcome = await browser.get(created.headers["location"])
        dutch = await browser.get(WIZARD + "?lang=nl")  # the language sticks: last

    assert heading(start) == f"Create an invoice for deal {SHOWN}"
    assert heading(dutch) == f"Een factuur maken voor deal {SHOWN}"
    assert heading(details) == f"Create an invoice for deal {SHOWN}"
    # The details form carries the name (escaped in the page, the name itself when posted).
    assert f'name="deal_name" value="{SHOWN}"' in details.text
    assert review.status_code == 200 and "Review" in review.text
    assert heading(review) == f"Create an invoice for deal {SHOWN}"
    assert hidden(review)["deal_name"] == NAME
    # Only display text: invoice-builder is never sent the name.
    assert created.status_code == 303 and "deal_name" not in builder.sent[0]
    link = urlsplit(created.headers["location"])
    assert parse_qs(link.query) == {"deal": [DEAL]}
    assert heading(outcome) == f"Create an invoice for deal {SHOWN}"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "draft",
    [
        (200, Builder.drafted(None)),  # the deal has no name, or the CRM does not know it
        (200, Builder.drafted("   ")),
        (200, {k: v for k, v in Builder.drafted(NAME).items() if k != "deal_name"}),
        (409, {"error": "The portal's CRM is not connected", "code": "CRM_NOT_CONNECTED"}),
    ],
)
async def test_without_a_name_the_start_is_headed_with_the_deals_id(
    signed_in: Any, draft: tuple[int, dict[str, Any]]
) -> None:
    builder = Builder()
    builder.draft = draft
    async with signed(builder, signed_in) as browser:
        start = await browser.get(WIZARD)

    assert start.status_code == 200
    assert heading(start) == f"Create an invoice for deal {DEAL}"


@pytest.mark.asyncio
async def test_without_a_name_the_details_and_the_outcome_name_the_deal_by_its_id(
    signed_in: Any,
) -> None:
    builder = Builder()
    builder.draft, builder.named = (200, Builder.drafted(None)), None
    async with signed(builder, signed_in) as browser:
        details = await browser.get(f"{WIZARD}/details", params={"realm": REALM})
        created = await browser.post(f"{WIZARD}/review", data={**FORM, "action": "create"})
        outcome = await browser.get(created.headers["location"])

    assert heading(details) == f"Create an invoice for deal {DEAL}"
    assert hidden(details)["deal_name"] == ""
    assert created.headers["location"] == f"/portals/{PORTAL}/requests/{REQUEST}?deal={DEAL}"
    assert heading(outcome) == f"Create an invoice for deal {DEAL}"


@pytest.mark.asyncio
async def test_a_posted_name_never_outranks_the_drafts_and_is_only_ever_text(
    signed_in: Any,
) -> None:
    builder = Builder()
    tampered = '<script>alert("x")</script>'
    async with signed(builder, signed_in) as browser:
        review = await browser.post(f"{WIZARD}/review", data={**FORM, "deal_name": tampered})
        builder.down = True  # the resend page has no draft: the posted name, as text
        resend = await browser.post(f"{WIZARD}/review", data={**FORM, "deal_name": tampered})
        builder.down = False
        outcome = await browser.get(
            f"/portals/{PORTAL}/requests/{REQUEST}",
            params={"deal": "../1", "deal_name": tampered + "x" * 300},
        )

    assert heading(review) == f"Create an invoice for deal {SHOWN}"
    assert hidden(review)["deal_name"] == NAME
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert resend.status_code == 503
    assert heading(resend) == f"Create an invoice for deal {escaped}"
    assert "<script>alert" not in resend.text and "<script>alert" not in outcome.text
    # The outcome names the request's own deal, whatever its link says.
    assert heading(outcome) == f"Create an invoice for deal {SHOWN}"
    assert "xxx" not in outcome.text and "../1" not in outcome.text


@pytest.mark.asyncio
async def test_a_long_name_is_cut_to_what_a_heading_shows(signed_in: Any) -> None:
    builder = Builder()
    builder.named = "Renewal " + "x" * 300
    async with signed(builder, signed_in) as browser:
        outcome = await browser.get(f"/portals/{PORTAL}/requests/{REQUEST}")

    assert heading(outcome) == f"Create an invoice for deal Renewal {'x' * 192}"
