"""The reminder pages over a stand-in reminders service and invoice-builder (httpx's mock
transport): what they show for an Advanced company and for another edition, what a save sends,
and how a refusal reads with what the person typed. The reminders service's own behaviour is
tested with it (services/reminders) and in the browser test on the whole stack."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from console.reminders import BadDays, days_of, workflow_change
from starlette.datastructures import FormData

PORTAL = "62515"
CSRF = "csrf-token-1"
ADVANCED = "9341455731187204"
PLUS = "9341455322581846"


def workflow(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "workflow": name, "enabled": False, "days_before": [3] if name in ("payment", "vendor")
        else [], "days_after": [1, 7], "subject": f"{name} {{doc_number}}", "body": "Follow up.",
        "owner_id": None, "send_invoice_email": False, "records_only": name == "payment",
        **extra,
    }  # fmt: skip


TASK = {
    "workflow": "payment", "subject_type": "invoice", "subject_id": "145", "doc_number": "1042",
    "party": "Amy's Bird Sanctuary", "period": "after-1", "state": "open", "crm_task_id": "77",
    "subject": "Payment reminder: invoice 1042 for Amy's Bird Sanctuary 1 day overdue",
    "object_type": "deals", "object_id": "1203", "owner_id": "900000001", "amount": "250.00",
    "currency": "USD", "due_date": "2026-12-01", "opened_at": "2026-12-02T08:00:00+00:00",
}  # fmt: skip


class Services:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse: dict[str, Any] | None = None
        self.unknown = False
        self.owners: dict[str, Any] | None = None  # invoice-builder's answer; None: a 404
        self.names: dict[str, Any] | None = None  # status-tracker's names; None: a 404

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body))
        if path == f"/portals/{PORTAL}/accounts":
            return httpx.Response(200, json={"accounts": [
                {"realm_id": ADVANCED, "company_name": "Summit Ridge Outfitters"},
                {"realm_id": PLUS, "company_name": "Larry's Bakery"},
            ]})  # fmt: skip
        if path == f"/portals/{PORTAL}/owners" and self.owners is not None:
            return httpx.Response(200, json=self.owners)
        if path == f"/portals/{PORTAL}/records/deals" and self.names is not None:
            return httpx.Response(200, json={"object_type": "deals", "names": self.names})
        base = f"/portals/{PORTAL}/accounts"
        if self.unknown and "/reminders/" in path:
            return httpx.Response(404, json={"error": "unknown_company", "message": "No."})
        if path == f"{base}/{ADVANCED}/reminders/workflows":
            names = ("payment", "vendor", "deposit", "unsent")
            return httpx.Response(200, json={
                "realm_id": ADVANCED, "edition": "QuickBooks Online Advanced", "available": True,
                "reason": None, "placeholders": ["amount", "doc_number"],
                "workflows": [workflow(n, enabled=n == "payment") for n in names],
            })  # fmt: skip
        if path == f"{base}/{PLUS}/reminders/workflows":
            return httpx.Response(200, json={
                "realm_id": PLUS, "edition": "QuickBooks Online Plus", "available": False,
                "reason": "Reminder workflows come with QuickBooks Online Advanced; this "
                "company is on QuickBooks Online Plus.", "placeholders": [], "workflows": [],
            })  # fmt: skip
        if path.endswith("/reminders/tasks"):
            tasks = [TASK] if ADVANCED in path else []
            return httpx.Response(200, json={"realm_id": path.split("/")[4], "reminders": tasks})
        if request.method == "PUT" and "/reminders/workflows/" in path:
            if self.refuse is not None:
                return httpx.Response(400, json=self.refuse)
            return httpx.Response(200, json=workflow(path.rsplit("/", 1)[1], **body))
        return httpx.Response(404, json={"error": "not here"})

    def saved(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.calls if method == "PUT"]


@pytest.fixture
def services() -> Services:
    return Services()


@pytest_asyncio.fixture
async def browser(services: Services, signed_in: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(
        services, portal=PORTAL, csrf=CSRF, reminders_url="http://reminders"
    ) as client:
        yield client


FORM = {
    "csrf_token": CSRF,
    "enabled": "on",
    "days_before": "5, 2",
    "days_after": "1,7 , 30",
    "subject": "Invoice {doc_number} is due",
    "body": "Call the customer.",
    "owner_id": "",
    "send_invoice_email": "on",
}


def test_days_are_read_from_a_comma_list() -> None:
    assert days_of(" 1, 7 ,14,", "days_after") == [1, 7, 14]
    assert days_of("", "days_before") == []
    with pytest.raises(BadDays, match="days_before"):
        days_of("1, soon", "days_before")


def test_a_form_becomes_the_whole_change_of_its_workflow() -> None:
    form = FormData(list(FORM.items()))
    assert workflow_change("payment", form) == {
        "enabled": True, "days_before": [5, 2], "days_after": [1, 7, 30],
        "subject": "Invoice {doc_number} is due", "body": "Call the customer.",
        "owner_id": None, "records_only": False, "send_invoice_email": True,
    }  # fmt: skip
    deposit = workflow_change("deposit", form)
    assert "days_before" not in deposit and "send_invoice_email" not in deposit


@pytest.mark.asyncio
async def test_an_advanced_company_shows_its_open_tasks_and_four_workflows(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get(f"/portals/{PORTAL}/reminders")
    assert page.status_code == 200
    text = page.text
    assert "Summit Ridge Outfitters" in text and "Open reminder tasks" in text
    assert "Payment reminder: invoice 1042 for Amy&#39;s Bird Sanctuary" in text
    assert f'href="/portals/{PORTAL}/records/deals/1203"' in text
    assert "$250.00" in text
    for name in ("payment", "vendor", "deposit", "unsent"):
        assert f'action="/portals/{PORTAL}/reminders/{ADVANCED}/{name}"' in text
    assert text.count('name="days_before"') == 2  # payment and vendor only
    assert text.count('name="send_invoice_email"') == 1
    assert 'value="1, 7"' in text
    assert "{amount}, {doc_number}" in text
    dutch = await browser.get(f"/portals/{PORTAL}/reminders?lang=nl")
    assert "Herinneringsworkflows" in dutch.text and "Betalingsherinnering" in dutch.text


@pytest.mark.asyncio
async def test_a_task_names_its_deal_where_the_crm_gives_the_name(
    browser: httpx.AsyncClient, services: Services
) -> None:
    link = f'<a href="/portals/{PORTAL}/records/deals/1203">Deal'
    unnamed = await browser.get(f"/portals/{PORTAL}/reminders")  # status-tracker: 404
    services.names = {"1203": "Tents for <Summit>"}
    named = await browser.get(f"/portals/{PORTAL}/reminders")

    assert f"{link} 1203</a>" in unnamed.text
    assert f"{link} Tents for &lt;Summit&gt;</a>" in named.text
    asked = [path for _, path, _ in services.calls if "/records/" in path]
    assert asked == [f"/portals/{PORTAL}/records/deals"] * 2


@pytest.mark.asyncio
async def test_each_workflows_task_owner_is_picked_by_name_where_the_owners_can_be_listed(
    browser: httpx.AsyncClient, services: Services
) -> None:
    services.owners = {"owners": [{"id": "900000002", "name": "Ada Lee", "email": None}]}
    listed = await browser.get(f"/portals/{PORTAL}/reminders")
    plus = await browser.get(f"/portals/{PORTAL}/reminders?realm={PLUS}")
    services.owners = {"owners": None, "reason": "no scope"}
    unreadable = await browser.get(f"/portals/{PORTAL}/reminders")

    assert listed.text.count('<option value="900000002">Ada Lee</option>') == 4
    assert listed.text.count(">The owner of the deal or company</option>") == 4
    # A company without the workflows has no owners to pick, and the CRM is not asked.
    asked = [path for _, path, _ in services.calls if path.endswith("/owners")]
    assert plus.status_code == 200 and len(asked) == 2
    assert unreadable.text.count('name="owner_id" inputmode="numeric"') == 4
    assert "lacks crm.objects.owners.read" in unreadable.text


@pytest.mark.asyncio
async def test_another_edition_gets_the_reason_and_no_forms(browser: httpx.AsyncClient) -> None:
    page = await browser.get(f"/portals/{PORTAL}/reminders?realm={PLUS}")
    assert page.status_code == 200
    assert (
        "Larry&#39;s Bakery is on QuickBooks Online Plus: reminder workflows come with "
        "QuickBooks Online Advanced." in page.text
    )
    dutch = await browser.get(f"/portals/{PORTAL}/reminders?realm={PLUS}&lang=nl")
    assert "Larry&#39;s Bakery gebruikt QuickBooks Online Plus" in dutch.text
    assert '<form method="post" action="/portals/' not in page.text.split("</header>")[1]
    unknown = await browser.get(f"/portals/{PORTAL}/reminders?realm=123")
    assert unknown.status_code == 404


@pytest.mark.asyncio
async def test_a_company_the_service_has_not_heard_of_yet_says_so(
    browser: httpx.AsyncClient, services: Services
) -> None:
    services.unknown = True
    page = await browser.get(f"/portals/{PORTAL}/reminders?realm={ADVANCED}")
    assert page.status_code == 200
    assert "still reading this company from QuickBooks" in page.text


@pytest.mark.asyncio
async def test_a_save_sends_the_form_and_comes_back_saying_so(
    browser: httpx.AsyncClient, services: Services
) -> None:
    answer = await browser.post(f"/portals/{PORTAL}/reminders/{ADVANCED}/payment", data=FORM)
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"/portals/{PORTAL}/reminders?realm={ADVANCED}&saved=payment#workflow-payment"
    )
    [(path, body)] = services.saved()
    assert path == f"/portals/{PORTAL}/accounts/{ADVANCED}/reminders/workflows/payment"
    assert body["days_after"] == [1, 7, 30] and body["enabled"] is True
    shown = await browser.get(answer.headers["location"])
    assert "Payment reminder: saved." in shown.text


@pytest.mark.asyncio
async def test_a_refusal_shows_the_reasons_beside_what_was_typed(
    browser: httpx.AsyncClient, services: Services
) -> None:
    services.refuse = {"error": "invalid_settings", "message": "The workflow was not changed.",
                       "problems": ["subject: unknown placeholder {nope}"]}  # fmt: skip
    typed = {**FORM, "subject": "Pay {nope}"}
    page = await browser.post(f"/portals/{PORTAL}/reminders/{ADVANCED}/payment", data=typed)
    assert page.status_code == 422
    assert "The workflow was not changed:" in page.text
    assert "subject: unknown placeholder {nope}" in page.text
    assert 'value="Pay {nope}"' in page.text
    assert 'value="1,7 , 30"' in page.text  # as typed, not as stored

    services.calls.clear()
    bad = await browser.post(
        f"/portals/{PORTAL}/reminders/{ADVANCED}/vendor", data={**FORM, "days_after": "1, soon"}
    )
    assert bad.status_code == 422
    assert "Days are whole numbers separated by commas:" in bad.text
    assert services.saved() == []
    section = re.search(r'id="workflow-vendor".*?</section>', bad.text, re.S)
    assert section and 'value="1, soon"' in section.group(0)
