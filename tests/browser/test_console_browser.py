"""The people's side in a real browser: Debian's Chromium, driven by Playwright, against the
whole local stack (every service its own process, both sandboxes over HTTP, the session's
Kafka and MongoDB-wire server).

A person signs in with the CRM (its consent page), connects QuickBooks companies, and then
does what sales reps and admins do: invoices from scratch and from a quote, a refusal and its
fix, stages that change as QuickBooks changes, existing invoices added to a contact, contact
sync with a new mapping after its dry run. Every page is checked with axe-core (no serious or
critical violation) and photographed under test-artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dealbooks_infra import testing
from dealbooks_infra.records import crm_record
from dealbooks_infra.stack import LocalStack
from dealbooks_infra.topology import PORTAL_ID

pytestmark = [pytest.mark.integration]

CHROMIUM = os.environ.get("DEALBOOKS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
US_REALM = "9341455322581846"  # Larry's Bakery (US)
GB_REALM = "4620816365044851490"  # Thames Joinery Ltd (GB), custom transaction numbers on
SUMMIT_REALM = "9341455731187204"  # Summit Ridge Outfitters (US), QuickBooks Online Advanced
WAIT = 30_000  # ms, for what the stack does in the background


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install Debian's chromium "
            "(apt-get install chromium); make test does so when it runs as root",
            pytrace=False,
        )


# ---------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    mongo_uri: str,
    kafka_supports_idempotence: bool,
) -> Iterator[LocalStack]:
    _require_browser()
    stack = LocalStack(
        tmp_path_factory.mktemp("browser-stack"),
        say=False,
        infra=testing.stack_infra(kafka_bootstrap, mongo_uri, kafka_supports_idempotence, "b"),
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


class World:
    """The sandboxes' control APIs: what the test seeds and what it reads back."""

    def __init__(self, stack: LocalStack) -> None:
        t = stack.topology
        self.t = t
        self.http = httpx.Client(timeout=30.0)
        self.console = t.url("console")
        self.crm_ctl = t.crm_control()
        self.qbo_ctl = f"{t.qbo}/_sandbox/companies"

    def ok(self, response: httpx.Response) -> Any:
        assert response.is_success, f"{response.status_code} {response.text[:300]}"
        return response.json() if response.content else None

    def crm_create(
        self, kind: str, props: dict[str, str], assocs: list[tuple[str, int]] | None = None
    ) -> str:
        body = crm_record(props, assocs or ())
        return str(self.ok(self.http.post(f"{self.crm_ctl}/objects/{kind}", json=body))["id"])

    def deal(
        self, lines: list[tuple[str, str, str]], currency: str = "USD", called: str = "Bookkeeping"
    ) -> dict[str, str]:
        """A deal with a contact at a company, and its line items (name, quantity, price); the
        deal is called `called` and its tag (`dealname` in the result)."""
        tag = uuid.uuid4().hex[:6]
        company = self.crm_create("companies", {"name": f"Harbour Books {tag}"})
        contact = self.crm_create(
            "contacts",
            {"email": f"ops-{tag}@harbour.example", "firstname": "Ada", "lastname": f"Lee {tag}"},
            [(company, 1)],
        )
        dealname = f"{called} {tag}"
        deal = self.crm_create("deals", {"dealname": dealname}, [(contact, 3), (company, 5)])
        for name, qty, price in lines:
            self.crm_create(
                "line_items",
                {"name": name, "quantity": qty, "price": price,
                 "hs_line_item_currency_code": currency},
                [(deal, 20)],
            )  # fmt: skip
        return {"deal": deal, "contact": contact, "company": company, "tag": tag,
                "dealname": dealname}  # fmt: skip

    def quote(self, deal: dict[str, str], lines: list[tuple[str, str, str]]) -> str:
        expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        quote = self.crm_create(
            "quotes",
            {"hs_title": f"Q-{deal['tag']}", "hs_status": "APPROVAL_NOT_NEEDED",
             "hs_expiration_date": expires},
            [(deal["deal"], 64), (deal["contact"], 69)],
        )  # fmt: skip
        for name, qty, price in lines:
            self.crm_create(
                "line_items", {"name": name, "quantity": qty, "price": price}, [(quote, 68)]
            )
        return quote

    def qbo(self, realm: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.ok(self.http.post(f"{self.qbo_ctl}/{realm}/{path}", json=body or {}))

    def crm_objects(self, kind: str) -> list[dict[str, Any]]:
        found = self.ok(self.http.get(f"{self.crm_ctl}/objects/{kind}"))
        return list(found.get("results", found) if isinstance(found, dict) else found)


@pytest.fixture(scope="module")
def world(running_stack: LocalStack) -> Iterator[World]:
    w = World(running_stack)
    try:
        yield w
    finally:
        w.http.close()


# ---------------------------------------------------------------------------- the browser


class Pages:
    """The person's browser tab, with the checks every page gets."""

    def __init__(self, page: Any, world: World) -> None:
        self.page = page
        self.world = world
        self.shots = 0
        from axe_playwright_python.sync_playwright import Axe

        self.axe = Axe()

    def url(self, path: str) -> str:
        return f"{self.world.console}{path}"

    def goto(self, path: str) -> None:
        self.page.goto(self.url(path))

    def check(self, name: str) -> None:
        """axe-core finds no serious or critical violation; the page is photographed."""
        self.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.shots:02d}-{name}.png"), full_page=True)
        results = self.axe.run(self.page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"]) for n in v["nodes"][:3])
            for v in results.response["violations"]
            if v.get("impact") in {"serious", "critical"}
        ]
        assert not bad, f"{name}: {bad}"
        text = self.page.inner_text("body")
        assert "Traceback" not in text and '{"error"' not in text, name

    def reload_until(self, pattern: str, timeout: float = WAIT / 1000) -> None:
        """Reload the page until its main text matches `pattern` (the stack works behind)."""

        def shows() -> bool | None:
            self.page.reload()
            return True if re.search(pattern, self.page.inner_text("main")) else None

        testing.eventually_sync(shows, timeout=timeout, interval=0.5)

    def reload_until_row(self, number: str, stage: str, *, shown: bool) -> None:
        """Reload until the invoice's row shows `stage` (and, with `shown`, that the deal's
        properties show this invoice)."""

        def row_reads() -> bool | None:
            self.page.reload()
            row = self.page.get_by_role("row", name=re.compile(re.escape(number)))
            if not row.count():
                return None
            staged = row.locator("td[data-label=Stage]").inner_text() == stage
            marked = "Shown on the deal" in row.locator("td[data-label=Number]").inner_text()
            return True if staged and (marked or not shown) else None

        testing.eventually_sync(row_reads, timeout=WAIT / 1000, interval=0.5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def person(browser: Any, world: World) -> Iterator[Pages]:
    """A signed-in admin with the US company connected, through the pages alone."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(WAIT)
    page = context.new_page()
    p = Pages(page, world)
    world.ok(
        world.http.post(
            f"{world.t.crm}/_sandbox/oauth/consent",
            json={**world.t.consent(PORTAL_ID), "mode": "page"},
        )
    )
    p.goto("/")
    p.check("landing")
    page.get_by_role("link", name="Sign in with HubSpot").click()
    page.get_by_role("button", name="Connect app").click()
    page.wait_for_url(re.compile(rf"/portals/{PORTAL_ID}$"))
    p.check("home")
    page.get_by_role("link", name="QuickBooks companies").first.click()
    page.get_by_role("link", name="Connect a QuickBooks company").click()
    page.wait_for_url(re.compile(r"/accounts\?account_id=" + US_REALM))
    page.get_by_text("The company is connected.").wait_for()
    assert page.get_by_role("cell", name=re.compile("^Larry's Bakery")).is_visible()
    p.check("accounts")
    try:
        yield p
    finally:
        context.close()


def _connect_another(p: Pages, world: World, company: str, realm: str) -> None:
    """Connect one more company, chosen on QuickBooks' own consent screen."""
    chooser = f"{world.t.qbo}/_sandbox/oauth/chooser"
    world.ok(world.http.post(chooser, json={"enabled": True}))
    try:
        p.goto(f"/portals/{PORTAL_ID}/accounts")
        p.page.get_by_role("link", name="Connect a QuickBooks company").click()
        p.page.get_by_label(company).check()
        p.page.get_by_role("button", name="Connect").click()
        p.page.wait_for_url(re.compile(r"account_id=" + realm))
    finally:
        world.ok(world.http.post(chooser, json={"enabled": False}))


def _wizard_to_details(p: Pages, deal: str, realm: str | None = None) -> None:
    p.goto(f"/portals/{PORTAL_ID}/deals/{deal}/invoices/new" + (f"?realm={realm}" if realm else ""))
    p.page.get_by_role("button", name="Next").click()
    p.page.wait_for_url(re.compile(r"/invoices/new/details"))


def _choose_products(p: Pages, names: list[str]) -> None:
    for index, name in enumerate(names):
        p.page.locator(f"#item-{index}").select_option(label=name)


def _create(p: Pages) -> str:
    """From the details step: review, create, and wait for the outcome; the invoice number."""
    p.page.get_by_role("button", name="Review").click()
    p.page.get_by_role("heading", name="Check and create").wait_for()
    p.check("wizard-review")
    p.page.get_by_role("button", name="Create invoice").click()
    p.page.get_by_role(
        "heading", name=re.compile("The invoice is created|was not created")
    ).wait_for()
    text = p.page.inner_text("main")
    found = re.search(r"Draft invoice (\S+) for", text)
    assert found, text
    return found.group(1)


# ---------------------------------------------------------------------------- scenarios


def test_an_invoice_from_scratch_through_the_wizard(person: Pages, world: World) -> None:
    d = world.deal([("Monthly bookkeeping", "2", "150"), ("Payroll run", "1", "80")])
    _wizard_to_details(person, d["deal"])
    person.check("wizard-details")
    page = person.page
    # Each step is headed with the deal's name in the CRM.
    headed = page.get_by_role(
        "heading", level=1, name=f"Create an invoice for deal {d['dealname']}"
    )
    assert headed.is_visible(), page.inner_text("main")
    # The deal's contact is not a QuickBooks customer yet: a new customer, named after it.
    page.get_by_label("A new customer").check()
    page.get_by_label("Name", exact=True).fill(f"Harbour Books {d['tag']}")
    # Nothing chosen yet: the review names what is missing, and links to it.
    page.get_by_role("button", name="Review").click()
    missing = page.get_by_role("link", name="Choose a QuickBooks product for line 1.")
    assert missing.is_visible(), page.inner_text("main")
    _choose_products(person, ["Services", "Onboarding package"])
    page.get_by_label("Terms").select_option(label="Net 30")
    due = page.get_by_label("Due date").input_value()
    invoice_date = page.get_by_label("Invoice date").input_value()
    assert due == (datetime.fromisoformat(invoice_date) + timedelta(days=30)).date().isoformat()
    page.get_by_text(f"Due {due}, from the terms.").wait_for()
    page.get_by_label("Message to the customer").fill("Thank you for your business.")
    number = _create(person)
    assert headed.is_visible(), page.inner_text("main")
    person.check("wizard-outcome")
    page.get_by_role("link", name="Back to the deal").click()
    row = page.get_by_role("row", name=re.compile(re.escape(number)))
    assert "$380.00" in row.locator("td[data-label=Amount]").inner_text()
    assert row.locator("td[data-label=Stage]").inner_text() == "Awaiting send"
    person.check("deal-invoices")


def test_an_invoice_from_a_published_quote(person: Pages, world: World) -> None:
    d = world.deal([("Ignored deal line", "1", "999")])
    world.quote(d, [("Oak table", "1", "1000"), ("Delivery", "2", "150")])
    person.goto(f"/portals/{PORTAL_ID}/deals/{d['deal']}/invoices/new")
    heading = f"Create an invoice for deal {d['dealname']}"
    assert person.page.get_by_role("heading", level=1, name=heading).is_visible()
    person.check("wizard-start")
    person.page.get_by_label(re.compile(f"Quote: Q-{d['tag']}")).check()
    person.page.get_by_role("button", name="Next").click()
    person.page.get_by_text("Oak table").wait_for()
    assert not person.page.get_by_text("Ignored deal line").is_visible()
    person.page.get_by_label("A new customer").check()
    person.page.get_by_label("Name", exact=True).fill(f"Quote client {d['tag']}")
    _choose_products(person, ["Services", "Onboarding package"])
    number = _create(person)
    person.page.get_by_role("link", name="Back to the deal").click()
    assert person.page.get_by_role("row", name=re.compile(re.escape(number))).is_visible()


def test_custom_transaction_numbers_are_refused_with_their_fix_then_allowed(
    person: Pages, world: World
) -> None:
    page = person.page
    _connect_another(person, world, "Thames Joinery Ltd", GB_REALM)
    d = world.deal([("Joinery", "1", "500")], currency="GBP")
    person.goto(f"/portals/{PORTAL_ID}/deals/{d['deal']}/invoices/new?realm={GB_REALM}")
    page.get_by_text("custom transaction numbers switched on").wait_for()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("A new customer").check()
    page.get_by_label("Name", exact=True).fill(f"Thames client {d['tag']}")
    _choose_products(person, ["Services"])
    page.locator("#tax-0").select_option(index=1)
    page.get_by_role("button", name="Review").click()
    # The review already says why, and how to fix it.
    page.get_by_text("switch off Custom transaction numbers").wait_for()
    person.check("wizard-refused")

    world.qbo(GB_REALM, "preferences", {"custom_txn_numbers": False})

    def fixed() -> bool | None:
        page.get_by_role("button", name="Review").click()
        return True if page.get_by_role("heading", name="Check and create").count() else None

    testing.eventually_sync(fixed, timeout=WAIT / 1000, interval=1.0)
    page.get_by_role("button", name="Create invoice").click()
    page.get_by_role("heading", name="The invoice is created").wait_for()


def test_payments_and_emails_in_quickbooks_change_the_stage_on_the_record(
    person: Pages, world: World
) -> None:
    d = world.deal([("Audit", "1", "200")])
    _wizard_to_details(person, d["deal"])
    person.page.get_by_label("A new customer").check()
    person.page.get_by_label("Name", exact=True).fill(f"Audit client {d['tag']}")
    _choose_products(person, ["Services"])
    first = _create(person)
    _wizard_to_details(person, d["deal"])
    person.page.get_by_label("A new customer").check()
    person.page.get_by_label("Name", exact=True).fill(f"Audit client two {d['tag']}")
    _choose_products(person, ["Services"])
    second = _create(person)

    record = f"/portals/{PORTAL_ID}/records/deals/{d['deal']}"
    person.goto(record)
    heading = f"Invoices of deal Bookkeeping {d['tag']}"
    assert person.page.get_by_role("heading", name=heading, exact=True).is_visible()
    invoices = {
        row["doc_number"]: row["invoice_id"]
        for row in world.ok(
            world.http.get(
                f"{world.t.url('status-tracker')}/portals/{PORTAL_ID}/records/deals/"
                f"{d['deal']}/invoices",
                headers=_grant_header(world),
            )
        )["invoices"]
    }
    # QuickBooks e-mails the first: it becomes "sent", and is the most recently updated.
    # QuickBooks stamps LastUpdatedTime to the second: a later second than the second invoice's
    # creation, or the tie goes to the higher id (the second invoice).
    world.ok(world.http.post(f"{world.t.qbo}/_sandbox/clock", json={"advance_seconds": 2}))
    world.qbo(US_REALM, f"invoices/{invoices[first]}/emailed")
    # The stage reaches the invoice first, then the deal's choice of invoice: wait for both.
    person.reload_until_row(first, "Sent", shown=True)
    row = person.page.get_by_role("row", name=re.compile(re.escape(first)))
    assert "Shown on the deal" in row.locator("td[data-label=Number]").inner_text()
    # The customer pays the second in part: "partially paid", and now it is the one shown.
    world.qbo(US_REALM, f"invoices/{invoices[second]}/payments", {"amount": "50.00"})
    person.reload_until_row(second, "Partially paid", shown=True)
    row = person.page.get_by_role("row", name=re.compile(re.escape(second)))
    assert "Shown on the deal" in row.locator("td[data-label=Number]").inner_text()
    # Then in full: "paid".
    world.qbo(US_REALM, f"invoices/{invoices[second]}/payments", {})
    person.reload_until("Paid")
    person.check("deal-paid")


def test_existing_invoices_are_added_to_a_contact(person: Pages, world: World) -> None:
    d = world.deal([("Consulting", "3", "100")])
    _wizard_to_details(person, d["deal"])
    person.page.get_by_label("A new customer").check()
    person.page.get_by_label("Name", exact=True).fill(f"Existing client {d['tag']}")
    _choose_products(person, ["Services"])
    number = _create(person)
    person.goto(f"/portals/{PORTAL_ID}/records/contacts/{d['contact']}")
    # The page names the contact as the CRM shows it, not by its id.
    heading = f"Invoices of contact Ada Lee {d['tag']}"
    assert person.page.get_by_role("heading", name=heading, exact=True).is_visible()
    assert person.page.get_by_role("heading", name="No invoices yet").is_visible()
    person.check("contact-empty")
    person.page.get_by_role("link", name="Add existing invoices").click()
    heading = f"Add existing invoices to contact Ada Lee {d['tag']}"
    person.page.get_by_role("heading", name=heading, exact=True).wait_for()
    person.page.get_by_label("Invoice number or customer").fill(number)
    person.page.get_by_role("button", name="Search").click()
    person.check("add-existing")
    person.page.get_by_label(f"Choose invoice {number}").check()
    with person.page.expect_navigation():  # the post and its redirect, before any reload
        person.page.get_by_role("button", name="Add to the contact").click()
    person.reload_until(re.escape(number))
    person.check("contact-invoices")


def test_contact_sync_with_a_mapping_added_after_its_dry_run(person: Pages, world: World) -> None:
    page = person.page
    person.goto(f"/portals/{PORTAL_ID}/sync")
    person.check("sync")
    section = page.get_by_role("region", name=re.compile("Customers to contacts · Larry"))
    section.get_by_label("Sync QuickBooks customers into CRM contacts").check()
    section.get_by_role("button", name="Save").click()
    page.get_by_text("The settings are saved.").wait_for()
    section = page.get_by_role("region", name=re.compile("Customers to contacts · Larry"))
    section.get_by_role("link", name="Field mappings").click()
    person.check("mappings")
    add = page.get_by_role("region", name="Add a mapping")
    add.get_by_label("QuickBooks field").select_option("Notes")
    add.get_by_label("CRM property").select_option("jobtitle")
    add.get_by_role("button", name="Check what it would do").click()
    page.get_by_role("heading", name="Check the change").wait_for()
    person.check("mapping-dry-run")
    page.get_by_role("button", name="Save the mapping").click()
    page.get_by_text("The mapping is saved").wait_for()
    assert page.get_by_role("cell", name="jobtitle").is_visible()

    tag = uuid.uuid4().hex[:6]
    world.qbo(
        US_REALM,
        "customers",
        {"DisplayName": f"Synced {tag}", "PrimaryEmailAddr": {"Address": f"s-{tag}@x.example"},
         "Notes": "Head of finance"},
    )  # fmt: skip

    def synced() -> dict[str, Any] | None:
        for contact in world.crm_objects("contacts"):
            props = contact.get("properties", {})
            if props.get("email") == f"s-{tag}@x.example":
                return dict(props)
        return None

    props = testing.eventually_sync(synced, timeout=WAIT / 1000, interval=0.5)
    assert props.get("jobtitle") == "Head of finance"
    person.goto(f"/portals/{PORTAL_ID}/sync/{US_REALM}/contacts/mappings")
    person.reload_until(r"jobtitle[\s\S]*synced")
    # Customers from before sync was on come with a run the admin starts.
    person.goto(f"/portals/{PORTAL_ID}/sync")
    section = page.get_by_role("region", name=re.compile("Customers to contacts · Larry"))
    section.get_by_role("button", name=re.compile("Sync existing records now")).click()
    page.get_by_text("Existing records are being synced").wait_for()

    def backfilled() -> bool | None:
        emails = {c.get("properties", {}).get("email") for c in world.crm_objects("contacts")}
        return True if "qbwebsamplecompany@yahoo.com" in emails else None

    testing.eventually_sync(backfilled, timeout=WAIT / 1000, interval=0.5)
    person.reload_until(r"Last run of existing records: done")


def test_the_app_card_lists_a_deals_invoices_and_opens_the_console_without_a_session(
    browser: Any, person: Pages, world: World
) -> None:
    d = world.deal([("Card work", "1", "75")])
    _wizard_to_details(person, d["deal"])
    person.page.get_by_label("A new customer").check()
    person.page.get_by_label("Name", exact=True).fill(f"Card client {d['tag']}")
    _choose_products(person, ["Services"])
    number = _create(person)
    # What the card's hubspot.fetch gets: HubSpot signs it, the console checks the signature.
    fetched = world.ok(
        world.http.post(
            f"{world.t.crm}/_sandbox/app/requests",
            json={"kind": "ui-fetch", "portalId": int(PORTAL_ID),
                  "url": f"{world.console}/crm/cards/deal?objectId={d['deal']}&locale=nl-nl"},
        )
    )  # fmt: skip
    assert fetched["status"] == 200, fetched
    card = json.loads(fetched["body"])
    assert [(i["number"], i["stage"]) for i in card["invoices"]] == [(number, "awaiting_send")]
    assert card["text"]["create"] == "Factuur maken"
    # A sales rep opens the wizard from the card: an iframe with no dealbooks session of its own.
    rep = browser.new_context(viewport={"width": 960, "height": 720})
    try:
        page = rep.new_page()
        rep_pages = Pages(page, world)
        rep_pages.shots = person.shots + 50
        page.goto(card["actions"]["create_invoice"])
        page.wait_for_url(re.compile(rf"/deals/{d['deal']}/invoices/new"))
        heading = f"Een factuur maken voor deal {d['dealname']}"
        assert page.get_by_role("heading", level=1, name=heading).count()
        rep_pages.check("card-launch-wizard")
        page.goto(card["actions"]["add_existing"])
        page.wait_for_url(re.compile(rf"/records/deals/{d['deal']}/add"))
        rep_pages.check("card-launch-add")
        # The ticket is for this portal only.
        page.goto(f"{world.console}/portals/99999/accounts")
        assert page.get_by_role("heading", name="Geen toegang").count()
    finally:
        rep.close()


def test_every_page_reads_in_dutch_and_at_360_pixels(
    browser: Any, person: Pages, world: World
) -> None:
    page = person.page
    page.set_viewport_size({"width": 360, "height": 780})
    person.goto(f"/portals/{PORTAL_ID}/accounts?lang=nl")
    assert page.get_by_role("heading", name="QuickBooks-bedrijven").is_visible()
    # The main links fold behind "Menu" on a phone, and open from it.
    rules = page.get_by_role("link", name="Regels voor conceptfacturen")
    assert not rules.is_visible()
    person.check("accounts-nl-360")
    page.get_by_text("Menu", exact=True).click()
    assert rules.is_visible()
    person.check("menu-nl-360")
    person.goto(f"/portals/{PORTAL_ID}/rules")
    person.check("rules-nl-360")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways at 360 px ({width})"
    for name in ("approvals", "reminders"):
        person.goto(f"/portals/{PORTAL_ID}/{name}")
        person.check(f"{name}-nl-360")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{name} scrolls sideways at 360 px ({width})"
    # The wizard is headed with the deal's name, however long, without scrolling sideways.
    d = world.deal([("Jaarrekening", "1", "640")], called="Harbour_Books_jaarrekening_2027")
    person.goto(f"/portals/{PORTAL_ID}/deals/{d['deal']}/invoices/new")
    heading = f"Een factuur maken voor deal {d['dealname']}"
    assert page.get_by_role("heading", level=1, name=heading).is_visible()
    person.check("wizard-start-nl-360")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the wizard scrolls sideways at 360 px ({width})"
    person.goto(f"/portals/{PORTAL_ID}/accounts?lang=en")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_an_advanced_company_approves_an_invoice_and_sets_its_reminders(
    browser: Any, person: Pages, world: World
) -> None:
    """QuickBooks Online Advanced through the pages: approval switched on, a request waits,
    the approver changes a quantity and approves, the draft is created; a reminder workflow is
    adjusted, switched on, and its task shows on the reminders page."""
    page = person.page
    # The menu offers approvals and reminders once a company on Advanced is connected.
    menu = page.get_by_role("navigation", name="Main")
    person.goto(f"/portals/{PORTAL_ID}/accounts")
    assert not menu.get_by_role("link", name=re.compile("^(Approvals|Reminders)$")).count()
    _connect_another(person, world, "Summit Ridge Outfitters", SUMMIT_REALM)
    assert menu.get_by_role("link", name="Approvals", exact=True).is_visible()
    assert menu.get_by_role("link", name="Reminders", exact=True).is_visible()
    person.check("menu-advanced")

    # Approval on (invoice-builder learns the edition from the connection's event).
    menu.get_by_role("link", name="Approvals", exact=True).click()
    person.reload_until("Invoices need approval before they go to QuickBooks")
    page.get_by_label("Invoices need approval before they go to QuickBooks").check()
    # The approver is picked by name from the portal's CRM owners (none: each deal's owner).
    approver = page.get_by_label("Approver", exact=True).locator("option").all_inner_texts()
    assert approver[0] == "Each deal's owner" and len(approver) >= 2, approver
    page.get_by_role("button", name="Save Summit Ridge Outfitters").click()
    page.get_by_text("The approval settings are saved.").wait_for()
    person.check("approvals-settings")

    # A request waits for approval instead of going to QuickBooks.
    d = world.deal([("Expedition tent", "2", "205")])
    _wizard_to_details(person, d["deal"], SUMMIT_REALM)
    page.get_by_label("A new customer").check()
    page.get_by_label("Name", exact=True).fill(f"Summit Trek {d['tag']}")
    _choose_products(person, ["Services"])
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name="Create invoice").click()
    page.get_by_role("heading", name="The invoice waits for approval").wait_for()
    person.check("outcome-awaiting-approval")
    # The deal's card shows it waiting, and its Review opens the approval with no session.
    fetched = world.ok(
        world.http.post(
            f"{world.t.crm}/_sandbox/app/requests",
            json={"kind": "ui-fetch", "portalId": int(PORTAL_ID),
                  "url": f"{world.console}/crm/cards/deal?objectId={d['deal']}&locale=en-us"},
        )
    )  # fmt: skip
    card = json.loads(fetched["body"])
    [waiting] = card["approvals"]
    assert waiting["customer"] == f"Summit Trek {d['tag']}" and waiting["subtotal"] == "410.00"
    assert card["text"]["waiting"] == "Waiting for approval"
    rep = browser.new_context(viewport={"width": 960, "height": 720})
    try:
        rep_page = rep.new_page()
        rep_page.goto(waiting["open"])
        rep_page.get_by_role("heading", name=f"Invoice for Summit Trek {d['tag']}").wait_for()
    finally:
        rep.close()
    page.get_by_role("link", name="Open the approval").click()
    page.get_by_role("heading", name=f"Invoice for Summit Trek {d['tag']}").wait_for()
    # Who asked, by the CRM owner of their user (the admin has no name: its e-mail).
    facts = page.locator("dl.facts").inner_text()
    assert re.search(rf"Requested by\s+admin@{PORTAL_ID}\.example\.com", facts), facts
    assert "(CRM user)" not in facts, facts
    # Its deal, by the deal's name in the CRM.
    assert page.get_by_role("link", name=f"Deal {d['dealname']}", exact=True).is_visible()
    person.check("approval")
    page.get_by_label("Quantity 1", exact=True).fill("3")
    page.get_by_role("button", name="Approve and create the draft").click()
    page.get_by_text("Approved. The draft invoice is being created in QuickBooks.").wait_for()
    person.reload_until(r"Draft invoice \S+")
    assert "Changed by the approver" in page.inner_text("main")
    assert "$615.00" in page.inner_text("main")  # 3 x $205, as approved
    person.check("approval-approved")

    # The reminders page: another edition is told why; the Advanced company's workflows.
    person.goto(f"/portals/{PORTAL_ID}/reminders?realm={US_REALM}")
    person.reload_until("Larry's Bakery is on QuickBooks Online Plus")
    person.goto(f"/portals/{PORTAL_ID}/reminders?realm={SUMMIT_REALM}")
    person.reload_until("Open reminder tasks")
    person.check("reminders")
    unsent = page.locator("#workflow-unsent")
    owners = unsent.get_by_label("Task owner", exact=True).locator("option").all_inner_texts()
    assert owners[0] == "The owner of the deal or company" and len(owners) >= 2, owners
    unsent.get_by_label("Days after the invoice date").fill("0")
    unsent.get_by_label("Switched on").check()
    unsent.get_by_role("button", name="Save Unsent invoice reminder").click()
    page.get_by_text("Unsent invoice reminder: saved.").wait_for()
    assert page.locator("#workflow-unsent").get_by_text("On", exact=True).is_visible()
    sweep = f"{world.t.url('reminders')}/sweeps/reminders"

    def task_listed() -> bool | None:
        world.ok(world.http.post(sweep, params={"realm_id": SUMMIT_REALM},
                                 headers=world.t.operator_auth))  # fmt: skip
        page.reload()
        # The task's deal, by its name in the CRM.
        return True if page.get_by_role("link", name=f"Deal {d['dealname']}").count() else None

    testing.eventually_sync(task_listed, timeout=WAIT / 1000, interval=1.0)
    person.check("reminders-task")


def test_a_submission_survives_invoice_builder_restarting(
    person: Pages, world: World, running_stack: LocalStack
) -> None:
    """Create is clicked while invoice-builder is down: the page keeps the form, says what is
    happening, and sends it again by itself (the same request id) once the service is back."""
    d = world.deal([("Annual accounts", "1", "640")])
    _wizard_to_details(person, d["deal"])
    page = person.page
    page.get_by_label("A new customer").check()
    page.get_by_label("Name", exact=True).fill(f"Harbour Books {d['tag']}")
    _choose_products(person, ["Services"])
    page.get_by_role("button", name="Review").click()
    page.get_by_role("heading", name="Check and create").wait_for()
    running_stack.processes["invoice-builder"].stop()
    try:
        page.get_by_role("button", name="Create invoice").click()
        page.get_by_role("heading", name="Waiting for the invoice service").wait_for()
        heading = f"Create an invoice for deal {d['dealname']}"
        assert page.get_by_role("heading", level=1, name=heading).is_visible()
        person.check("wizard-resend")
        assert "never gets a second invoice" in page.inner_text("main")
        assert page.get_by_text(re.compile(r"Sending again in \d+ s")).is_visible()
    finally:
        running_stack.start_process("invoice-builder")
    # No click: the page sends the kept form again by itself.
    page.get_by_role("heading", name="The invoice is created").wait_for(timeout=3 * WAIT)
    number = re.search(r"Draft invoice (\S+) for", page.inner_text("main"))
    assert number, page.inner_text("main")
    with page.expect_navigation():
        page.get_by_role("link", name="Back to the deal").click()
    person.reload_until_row(number.group(1), "Awaiting send", shown=False)
    rows = page.locator("tbody tr")
    assert rows.count() == 1, page.inner_text("main")  # one request, one invoice


def _grant_header(world: World) -> dict[str, str]:
    from dealbooks_kit.auth import mint_grant

    grant = mint_grant(world.t.secrets.grant_key, [PORTAL_ID], user_id="browser-test")
    return {"Authorization": f"Bearer {grant}"}


def test_signing_out_ends_the_session(person: Pages) -> None:
    """Last in the module: the person signs out, and the console no longer knows them."""
    page = person.page
    person.goto(f"/portals/{PORTAL_ID}")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"\?signed_out=1"))
    page.get_by_text("You are signed out.").wait_for()
    person.goto(f"/portals/{PORTAL_ID}/accounts")
    assert page.get_by_role("link", name="Sign in with HubSpot").is_visible()
