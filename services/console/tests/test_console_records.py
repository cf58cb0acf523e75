"""A record's pages over stand-in services (httpx's mock transport): headed with the record's
name as status-tracker reads it from the CRM, by its id when it cannot."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PORTAL = "62515"
CSRF = "csrf-token-1"
RECORD = f"/portals/{PORTAL}/records/contacts/901"
RECORDS = f"{RECORD}/invoices"


class Services:
    """invoice-builder and status-tracker as the console sees them; `tracker` is
    status-tracker's answer for the record (status, body), its invoices or its name alone;
    `asked` the status-tracker paths read."""

    def __init__(self) -> None:
        self.tracker: tuple[int, Any] = (200, {"invoices": [], "name": "Ada Lee"})
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in (RECORD, RECORDS):
            self.asked.append(path)
            status, body = self.tracker
            return httpx.Response(status, json=body)
        if path == f"/portals/{PORTAL}/accounts":
            return httpx.Response(200, json={"accounts": [
                {"realm_id": "9341455322581846", "company_name": "Larry's Bakery"}]})  # fmt: skip
        if path.endswith("/invoices"):
            return httpx.Response(200, json={"invoices": [], "more": False})
        return httpx.Response(404, json={"error": "not here"})


@pytest.mark.asyncio
async def test_a_records_pages_name_it_and_the_add_page_falls_back_to_its_id(
    signed_in: Any,
) -> None:
    services = Services()
    async with signed_in(
        services, portal=PORTAL, csrf=CSRF, status_tracker_url="http://tracker"
    ) as browser:
        page = await browser.get(f"/portals/{PORTAL}/records/contacts/901")
        add = await browser.get(f"/portals/{PORTAL}/records/contacts/901/add")
        services.tracker = (200, {"invoices": [], "name": None})
        unnamed = await browser.get(f"/portals/{PORTAL}/records/contacts/901")
        services.tracker = (503, {"error": "status-tracker is restarting"})
        add_without = await browser.get(f"/portals/{PORTAL}/records/contacts/901/add")

    assert "<h1>Invoices of contact Ada Lee</h1>" in page.text
    assert "<h1>Add existing invoices to contact Ada Lee</h1>" in add.text
    # The record page lists its invoices; the add page asks for the name alone.
    assert services.asked == [RECORDS, RECORD, RECORDS, RECORD]
    assert "<h1>Invoices of contact 901</h1>" in unnamed.text
    # The add page needs status-tracker only for its heading: without it, the id.
    assert add_without.status_code == 200
    assert "<h1>Add existing invoices to contact 901</h1>" in add_without.text
