"""The wizard while invoice-builder restarts, over a stand-in invoice-builder (httpx's mock
transport): a submission is sent again with the same request id while the service does not
answer, the person then gets a page that keeps the whole form and sends it again, and the
outcome page stays pending instead of failing. The real restart, with a real browser and the
whole stack, is in tests/browser."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

PORTAL = "62515"
CSRF = "csrf-token-1"
REALM = "9341455731187204"
DEAL = "1203"
REQUEST = "5d0c7c1e-0000-4000-8000-000000000007"
BASE = f"/portals/{PORTAL}/accounts/{REALM}"
SUBMIT = f"/portals/{PORTAL}/deals/{DEAL}/invoices/new/review"
FORM = {
    "csrf_token": CSRF,
    "realm": REALM,
    "request_id": REQUEST,
    "customer": "new",
    "new_name": "Harbour Books",
    "item_0": "7",
    "customer_message": "Thank you & see you soon",
    "action": "create",
}

Answer = httpx.Response | type[Exception]


class Builder:
    """invoice-builder (`signed_in` answers the session); `submissions` answers each invoice
    request in turn (the last one for every further call), `down` makes every invoice-builder
    call fail to connect."""

    def __init__(self) -> None:
        self.submissions: list[Answer] = [httpx.Response(202, json={"request_id": REQUEST})]
        self.sent: list[dict[str, Any]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if path == f"{BASE}/invoice-requests" and request.method == "POST":
            self.sent.append(json.loads(request.content))
            answer = self.submissions[min(len(self.sent), len(self.submissions)) - 1]
            if isinstance(answer, type):
                raise answer("connection refused", request=request)
            return answer
        return httpx.Response(200, json=self._facts(path))

    def _facts(self, path: str) -> dict[str, Any]:
        if path == f"/portals/{PORTAL}/accounts":
            return {"accounts": [{"realm_id": REALM, "company_name": "Summit Ridge Outfitters",
                                  "country": "US", "is_us": True}]}  # fmt: skip
        if path.endswith("/draft"):
            return {"lines": [{"line_item_id": "11", "name": "Expedition tent", "quantity": "2",
                               "price": "205", "currency": "USD"}], "quotes": []}  # fmt: skip
        if path.endswith("/customers"):
            return {"customers": [], "proposal": None}
        if path.endswith("/items"):
            return {"items": [{"id": "7", "name": "Tents"}]}
        if path.endswith("/terms"):
            return {"terms": []}
        if path == f"/portals/{PORTAL}/invoice-requests/{REQUEST}":
            return {"status": "pending", "portal_id": PORTAL, "deal_id": DEAL}
        if path == f"/portals/{PORTAL}/records/deals/{DEAL}":  # status-tracker: no name
            return {"object_type": "deals", "object_id": DEAL, "name": None}
        raise AssertionError(f"unexpected call {path}")


@pytest.fixture
def builder() -> Builder:
    return Builder()


@pytest_asyncio.fixture
async def browser(builder: Builder, signed_in: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(
        builder,
        portal=PORTAL,
        csrf=CSRF,
        resend_patience_seconds=2.0,
        resend_wait_seconds=4,
        resend_automatic_attempts=3,
    ) as client:
        yield client


def hidden(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


@pytest.mark.asyncio
async def test_a_submission_is_sent_again_with_its_request_id_until_it_is_taken(
    browser: httpx.AsyncClient, builder: Builder
) -> None:
    builder.submissions = [
        httpx.ConnectError,
        httpx.Response(503, json={"error": "unavailable"}, headers={"Retry-After": "0.2"}),
        httpx.Response(202, json={"request_id": REQUEST}),
    ]
    answer = await browser.post(SUBMIT, data=FORM)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/portals/{PORTAL}/requests/{REQUEST}?deal={DEAL}"
    assert [sent["request_id"] for sent in builder.sent] == [REQUEST] * 3
    assert builder.sent[0] == builder.sent[2]  # the same request, unchanged


@pytest.mark.asyncio
async def test_a_service_still_down_gets_a_page_that_keeps_the_form_and_sends_it_again(
    browser: httpx.AsyncClient, builder: Builder
) -> None:
    builder.submissions = [httpx.ConnectError]
    page = await browser.post(SUBMIT, data=FORM)
    assert page.status_code == 503
    assert page.headers["retry-after"] == "4"
    assert "Waiting for the invoice service" in page.text
    assert "never gets a second invoice" in page.text
    kept = hidden(page.text)
    assert {k: kept[k] for k in FORM if k != "action"} == {
        **{k: v for k, v in FORM.items() if k != "action"},
        "customer_message": "Thank you &amp; see you soon",  # escaped in the page, kept as is
    }
    assert kept["attempt"] == "1"
    assert 'data-resend-after="4"' in page.text
    assert '<button type="submit" name="action" value="create"' in page.text
    assert len(builder.sent) > 1  # sent again within the patience before the page
    assert {sent["request_id"] for sent in builder.sent} == {REQUEST}

    # The page's own post, as its script or button sends it: still the same request.
    again = await browser.post(SUBMIT, data={**FORM, "attempt": kept["attempt"]})
    assert hidden(again.text)["attempt"] == "2"
    builder.submissions = [httpx.Response(202, json={"request_id": REQUEST})]
    builder.sent.clear()
    taken = await browser.post(SUBMIT, data={**FORM, "attempt": "2"})
    assert taken.status_code == 303 and builder.sent[0]["request_id"] == REQUEST


@pytest.mark.asyncio
async def test_after_its_automatic_attempts_the_page_waits_for_the_person(
    browser: httpx.AsyncClient, builder: Builder
) -> None:
    builder.down = True
    page = await browser.post(SUBMIT, data={**FORM, "attempt": "3"})
    assert page.status_code == 503
    assert "data-resend-after" not in page.text
    assert "tell your dealbooks admin" in page.text
    assert hidden(page.text)["attempt"] == "4"
    dutch = await browser.post(SUBMIT + "?lang=nl", data={**FORM, "attempt": "3"})
    assert "Wachten op de factuurdienst" in dutch.text


@pytest.mark.asyncio
async def test_a_review_that_cannot_read_the_deal_keeps_its_form_too(
    browser: httpx.AsyncClient, builder: Builder
) -> None:
    builder.down = True
    review = {k: v for k, v in FORM.items() if k != "action"}
    page = await browser.post(SUBMIT, data=review)
    assert page.status_code == 503
    assert "Nothing was created" in page.text
    assert '<button type="submit" name="action" value=""' in page.text  # the review again
    assert hidden(page.text)["new_name"] == "Harbour Books"
    assert builder.sent == []


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [409, 422])
async def test_a_refusal_is_not_sent_again(
    browser: httpx.AsyncClient, builder: Builder, status: int
) -> None:
    builder.submissions = [httpx.Response(status, json={"problem": None, "error": "refused"})]
    await browser.post(SUBMIT, data=FORM)
    assert len(builder.sent) == 1


@pytest.mark.asyncio
async def test_the_outcome_stays_pending_while_the_service_restarts(
    browser: httpx.AsyncClient, builder: Builder
) -> None:
    outcome = f"/portals/{PORTAL}/requests/{REQUEST}?deal={DEAL}"
    builder.down = True
    page = await browser.get(outcome)
    assert page.status_code == 503
    assert 'data-status="pending"' in page.text
    assert "The invoice service is restarting" in page.text
    builder.down = False
    page = await browser.get(outcome)
    assert page.status_code == 200 and "restarting" not in page.text
