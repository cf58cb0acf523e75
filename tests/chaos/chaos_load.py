"""The set-up and the steady mixed load of a chaos run.

Set-up, as a portal's admin would do it: install the app into the CRM portal through the CRM's
OAuth (no static token anywhere), connect QuickBooks companies through connector-auth, switch
contact and product sync on for one of them (and backfill it), and save an auto-draft rule
("a deal entering closedwon gets a draft") for that company, whose deals carry line items of
synced products.

Load, open loop at `rate` events a second (fired by the clock, never held back by slow
answers), each event one of:
- `invoice`: a new deal (a new contact and company, or an earlier one) and an invoice request
  from scratch through the wizard; some name an existing QuickBooks customer, some are dated
  in the past so they are overdue at once, a few are due before their invoice date (accepted,
  then rejected with a reason);
- `quote`: a deal with a published quote of two line items, and a request from the quote;
- `payment`: a QuickBooks payment of part or all of a drafted invoice's balance;
- `customer` / `item`: a QuickBooks user creates, changes or inactivates a customer or an item
  of the synced company;
- `deal-stage`: a CRM user creates a deal with a line item of a synced product and moves it
  into the rule's stage (sometimes out and back in again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chaos_world import (
    PIPELINE_START,
    RULE_ID,
    RULE_STAGE,
    Client,
    Drafted,
    DriverError,
    Figures,
    Ledger,
    Submitted,
    say,
)
from dealbooks_infra.topology import PORTAL_ID
from invoice_builder.domain import auto_draft_request_id

KINDS = {"invoice": 30, "quote": 10, "payment": 25, "customer": 12, "item": 8, "deal-stage": 15}
DEMO_ITEMS = ("1", "2", "3")  # Services, Onboarding package, Hardware kit (QBO demo data)
PRICES = ("80", "99.50", "150", "240", "312.25")
NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald")
CITIES = ("Mountain View", "Oakland", "Fresno", "San Diego", "Sacramento")
MAX_IN_FLIGHT = 200
CENT = Decimal("0.01")


def _tag(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


class Load:
    def __init__(
        self, client: Client, ledger: Ledger, figures: Figures, seed: int, rate: float
    ) -> None:
        self.c = client
        self.ledger = ledger
        self.figures = figures
        self.seed = seed
        self.rate = rate
        self.stage_changes = asyncio.Event()
        self.stage_changes.set()
        self._moving = 0
        self._paying: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.auto_outcomes: dict[str, dict[str, Any]] = {}  # deal -> outcome
        self.errors: list[str] = []

    # --- set-up ---------------------------------------------------------------------------

    async def set_up(self, realms: int) -> None:
        c, ledger = self.c, self.ledger
        session = await c.person.install()
        say(f"[setup] app installed in CRM portal {PORTAL_ID} through its OAuth; "
            f"signed in as user {session.user_id}")  # fmt: skip
        for i in range(realms):
            company = await c.json(
                "POST",
                f"{c.qbo_ctl}/companies",
                json={"name": f"Chaos Company {i + 1}", "country": "US", "demo_data": True},
            )
            realm = str(company["realm_id"])
            await c.person.connect(realm)
            ledger.realms.append(realm)
        ledger.sync_realm = ledger.realms[0]
        say(f"[setup] QuickBooks companies connected through connector-auth: {ledger.realms}")

        async def builder_knows_all() -> bool:
            found = await c.json("GET", c.wizard("/accounts"), as_person=True)
            return {a["realm_id"] for a in found["accounts"]} >= set(ledger.realms)

        await until(builder_knows_all, "invoice-builder to learn every company", 90)
        for object_type, service in (("contacts", "contact-sync"), ("products", "product-sync")):
            await self._switch_sync_on(object_type, service)
        await self._rule()

    async def _switch_sync_on(self, object_type: str, service: str) -> None:
        c, realm = self.c, self.ledger.sync_realm
        settings = c.mappings(realm, object_type, "/settings")

        async def registry_knows() -> bool:
            found = await c.call("GET", settings, as_person=True, final=(404,))
            return found.status_code == 200

        await until(registry_knows, f"mapping-registry to learn {realm}", 90)
        await c.call("PATCH", settings, as_person=True, json={"enabled": True})

        async def sync_knows() -> bool:
            found = await c.call(
                "POST",
                f"{c.backfill(service, realm)}?dry_run=true",
                as_person=True,
                final=(404, 409),
            )
            return found.status_code == 200

        await until(sync_knows, f"{service} to see sync switched on", 90)
        run = await backfill(c, service, realm)
        say(f"[setup] {object_type} sync on for {realm}; backfill {run['state']}: "
            f"{run['read']} read, {run['created']} created")  # fmt: skip

    async def _rule(self) -> None:
        """Items whose synced products the rule's deals carry, and the rule itself."""
        c, ledger, realm = self.c, self.ledger, self.ledger.sync_realm
        items: list[str] = []
        for k in (1, 2, 3):
            created = await c.json(
                "POST",
                f"{c.qbo_ctl}/companies/{realm}/items",
                json={"Name": f"Chaos Rule Item {k}", "Type": "Service", "UnitPrice": 100 * k,
                      "Sku": f"RULE-{k}", "Description": f"Retainer, tier {k}"},
            )  # fmt: skip
            items.append(str(created["Item"]["Id"]))
            ledger.items[items[-1]] = True

        async def synced() -> dict[str, str] | None:
            products = await c.crm_objects("products")
            found = {
                str(p["id"]): p["properties"].get("dealbooks_qbo_item_id")
                for p in products
                if p["properties"].get("dealbooks_qbo_item_id") in items and not p["archived"]
            }
            return found if len(found) == len(items) else None

        ledger.rule_products = await until(synced, "product-sync to create the rule products", 90)
        await c.call(
            "PUT",
            c.wizard(f"/auto-draft-rules/{RULE_ID}"),
            as_person=True,
            json={"realm_id": realm, "deal_stage": RULE_STAGE, "terms_id": "3"},
        )
        probe = await c.crm_create(
            "deals", {"dealname": "Chaos probe", "dealstage": PIPELINE_START}
        )
        for product in ledger.rule_products:
            await c.crm_create("line_items", {"hs_product_id": product, "quantity": "1"},
                               [(probe, 20)])  # fmt: skip

        async def linked() -> bool:
            preview = await c.json(
                "POST",
                c.wizard(f"/accounts/{realm}/preview"),
                as_person=True,
                json={"deal_id": probe},
            )
            return preview.get("problem") is None

        await until(linked, "invoice-builder to link the synced products", 90)
        say(f"[setup] auto-draft rule: deals entering {RULE_STAGE} get a draft in {realm}, "
            f"lines from products {sorted(ledger.rule_products)}")  # fmt: skip

    # --- the load -------------------------------------------------------------------------

    async def run(self, seconds: float) -> None:
        """Fire events by the clock for `seconds`; in-flight ones finish in `finish`."""
        kinds, weights = list(KINDS), list(KINDS.values())
        pick = random.Random(self.seed)
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / self.rate
            if due > start + seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            kind = pick.choices(kinds, weights)[0]
            n += 1
            if len(self._tasks) >= MAX_IN_FLIGHT:
                self.figures.load_errors["not fired: driver saturated"] += 1
                continue
            task = asyncio.create_task(self._one(kind, random.Random(f"{self.seed}:{n}")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def finish(self, patience: float) -> None:
        """Let the events still in flight finish (each retries while services restart)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=patience)
        for task in list(self._tasks):
            task.cancel()
            self.figures.load_errors["unfinished at the end"] += 1

    async def _one(self, kind: str, rng: random.Random) -> None:
        try:
            if kind == "payment" and not await self.payment(rng):
                kind = "invoice"  # nothing to pay yet
            if kind == "invoice":
                roll = rng.random()
                variant = "overdue" if roll < 0.1 else "bad-dates" if roll < 0.15 else "scratch"
                await self.invoice(rng, variant)
            elif kind == "quote":
                await self.quote(rng)
            elif kind == "customer":
                await self.customer(rng)
            elif kind == "item":
                await self.item(rng)
            elif kind == "deal-stage":
                await self.deal_stage(rng)
            self.figures.events[kind] += 1
        except DriverError as exc:
            self.figures.load_errors[kind] += 1
            if len(self.errors) < 20:
                self.errors.append(f"{kind}: {exc}")

    async def _party(self, rng: random.Random) -> tuple[str, str]:
        """A contact at a company: an earlier one now and then, else a new pair."""
        if self.ledger.contacts and rng.random() < 0.2:
            return rng.choice(self.ledger.contacts)
        tag = _tag(rng)
        company = await self.c.crm_create("companies", {"name": f"Chaos Books {tag}"})
        contact = await self.c.crm_create(
            "contacts",
            {"email": f"ops-{tag}@chaos.example", "firstname": rng.choice(NAMES),
             "lastname": f"T{tag}"},
            [(company, 1)],
        )  # fmt: skip
        self.ledger.contacts.append((contact, company))
        return contact, company

    async def _deal(self, rng: random.Random, contact: str, company: str) -> str:
        return await self.c.crm_create(
            "deals",
            {"dealname": f"Chaos deal {_tag(rng)}", "amount": rng.choice(PRICES),
             "dealstage": PIPELINE_START},
            [(contact, 3), (company, 5)],
        )  # fmt: skip

    async def invoice(self, rng: random.Random, kind: str = "scratch") -> None:
        """`overdue`: dated in the past; `bad-dates`: due before its invoice date, which
        invoice-builder accepts (202) and then rejects with a reason."""
        realm = rng.choice(self.ledger.realms)
        contact, company = await self._party(rng)
        deal = await self._deal(rng, contact, company)
        lines = [
            {"qbo_item_id": rng.choice(DEMO_ITEMS), "quantity": str(rng.randint(1, 5)),
             "description": "Chaos bookkeeping",
             "unit_price": {"amount": rng.choice(PRICES), "currency": "USD"}}
            for _ in range(rng.randint(1, 2))
        ]  # fmt: skip
        body: dict[str, Any] = {"deal_id": deal, "lines": lines, "terms_id": "3",
                                "customer_message": "Thank you for your business."}  # fmt: skip
        if rng.random() < 0.25:
            body["customer"] = {"kind": "existing", "qbo_customer_id": rng.choice(("1", "2"))}
        today = date.today()
        if kind == "overdue":
            body["invoice_date"] = str(today - timedelta(days=45))
            body["due_date"] = str(today - timedelta(days=15))
        elif kind == "bad-dates":
            body["invoice_date"] = str(today)
            body["due_date"] = str(today - timedelta(days=1))
        await self._submit(realm, deal, body, kind)

    async def quote(self, rng: random.Random) -> None:
        realm = rng.choice(self.ledger.realms)
        contact, company = await self._party(rng)
        deal = await self._deal(rng, contact, company)
        expires = datetime.now(UTC) + timedelta(days=30)
        quote = await self.c.crm_create(
            "quotes",
            {"hs_title": f"Q-{_tag(rng)}", "hs_status": "APPROVAL_NOT_NEEDED",
             "hs_expiration_date": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
            [(deal, 64), (contact, 69), (company, 71)],
        )  # fmt: skip
        chosen: dict[str, str] = {}
        for name in ("Set-up", "Monthly close"):
            line = await self.c.crm_create(
                "line_items",
                {"name": name, "quantity": str(rng.randint(1, 3)), "price": rng.choice(PRICES),
                 "hs_line_item_currency_code": "USD"},
                [(quote, 68)],
            )  # fmt: skip
            chosen[line] = rng.choice(DEMO_ITEMS)
        body = {"deal_id": deal, "quote_id": quote, "chosen_items": chosen, "terms_id": "3"}
        await self._submit(realm, deal, body, "quote")

    async def _submit(self, realm: str, deal: str, body: dict[str, Any], kind: str) -> None:
        """Submit through the wizard; a call that got no answer is sent again with the same
        request id, as the CRM card does (the id makes a submission idempotent)."""
        request_id = str(uuid.uuid4())
        sent = Submitted(request_id, realm, deal, kind)
        self.ledger.submitted[request_id] = sent
        began = time.monotonic()
        try:
            answer = await self.c.call(
                "POST",
                self.c.wizard(f"/accounts/{realm}/invoice-requests"),
                as_person=True,
                json={**body, "request_id": request_id},
                final=(422,),
                patience=180,
            )
        except DriverError:
            sent.in_doubt = True
            raise
        sent.answered_in = time.monotonic() - began
        if answer.status_code == 422:
            sent.outcome = {"status": "refused", **answer.json().get("problem", {})}
            self.figures.outcomes["refused at submission (422)"] += 1
            return
        sent.accepted = True

    async def payment(self, rng: random.Random) -> bool:
        """Pay part or all of an open drafted invoice in QuickBooks; False if there is none."""
        open_ = sorted(
            key
            for key, d in self.ledger.drafted.items()
            if d.balance > 0 and key not in self._paying
        )
        if not open_:
            return False
        key = rng.choice(open_)
        drafted = self.ledger.drafted[key]
        self._paying.add(key)
        try:
            amount = drafted.balance
            if amount > 50 and rng.random() < 0.6:
                amount = (amount * Decimal(rng.choice(("0.3", "0.5")))).quantize(CENT)
            paid = await self.c.json(
                "POST",
                f"{self.c.qbo_ctl}/companies/{drafted.realm}/invoices/{drafted.invoice_id}/payments",
                json={"amount": str(amount)},
            )
            drafted.balance = Decimal(str(paid["Invoice"]["Balance"]))
            self.ledger.payments += 1
        finally:
            self._paying.discard(key)
        return True

    async def customer(self, rng: random.Random) -> None:
        """A QuickBooks user adds, changes or inactivates a customer of the synced company."""
        base = f"{self.c.qbo_ctl}/companies/{self.ledger.sync_realm}/customers"
        active = sorted(cid for cid, on in self.ledger.customers.items() if on)
        tag = _tag(rng)
        address = {"Line1": f"{rng.randint(1, 999)} Chaos Way", "City": rng.choice(CITIES),
                   "CountrySubDivisionCode": "CA", "PostalCode": f"9{rng.randint(4000, 5999)}",
                   "Country": "USA"}  # fmt: skip
        if not active or rng.random() < 0.5:
            created = await self.c.json(
                "POST",
                base,
                json={"DisplayName": f"Chaos Client {tag}", "GivenName": rng.choice(NAMES),
                      "FamilyName": f"C{tag}", "CompanyName": f"Chaos Client Co {tag}",
                      "PrimaryEmailAddr": {"Address": f"client-{tag}@chaos.example"},
                      "PrimaryPhone": {"FreeFormNumber": f"(650) 555-{rng.randint(1000, 9999)}"},
                      "BillAddr": address},
            )  # fmt: skip
            self.ledger.customers[str(created["Customer"]["Id"])] = True
            return
        cid = rng.choice(active)
        roll = rng.random()
        change: dict[str, Any]
        if roll < 0.1:
            change = {"Active": False}
            self.ledger.customers[cid] = False
        elif roll < 0.3:
            change = {"PrimaryEmailAddr": {"Address": f"moved-{tag}@chaos.example"}}
        elif roll < 0.6:
            change = {"BillAddr": address}
        else:
            phone = f"(415) 555-{rng.randint(1000, 9999)}"
            change = {"GivenName": rng.choice(NAMES), "PrimaryPhone": {"FreeFormNumber": phone}}
        await self.c.call("POST", f"{base}/{cid}", json=change)

    async def item(self, rng: random.Random) -> None:
        """A QuickBooks user adds, changes or inactivates an item of the synced company."""
        base = f"{self.c.qbo_ctl}/companies/{self.ledger.sync_realm}/items"
        rule_items = set(self.ledger.rule_products.values())
        active = sorted(i for i, on in self.ledger.items.items() if on and i not in rule_items)
        tag = _tag(rng)
        price = rng.choice(PRICES)
        if not active or rng.random() < 0.5:
            created = await self.c.json(
                "POST",
                base,
                json={"Name": f"Chaos Item {tag}", "Type": "Service", "UnitPrice": price,
                      "Sku": f"CH-{tag[:6]}", "Description": f"Chaos service {tag}"},
            )  # fmt: skip
            self.ledger.items[str(created["Item"]["Id"])] = True
            return
        item = rng.choice(active)
        roll = rng.random()
        change: dict[str, Any]
        if roll < 0.1:
            change = {"Active": False}
            self.ledger.items[item] = False
        elif roll < 0.5:
            change = {"UnitPrice": price}
        else:
            change = {"Description": f"Chaos service, revised {tag}", "Sku": f"CR-{tag[:6]}"}
        await self.c.call("POST", f"{base}/{item}", json=change)

    async def deal_stage(self, rng: random.Random) -> None:
        """A deal with a line item of a synced product enters the rule's stage."""
        contact, company = await self._party(rng)
        deal = await self._deal(rng, contact, company)
        product = rng.choice(sorted(self.ledger.rule_products))
        await self.c.crm_create(
            "line_items", {"hs_product_id": product, "quantity": str(rng.randint(1, 3))},
            [(deal, 20)],
        )  # fmt: skip
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        self.ledger.auto_deals[deal] = str(auto_draft_request_id(PORTAL_ID, deal))
        await self._move(deal, RULE_STAGE)
        if rng.random() < 0.2:  # out of the stage and back in: still one draft
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await self._move(deal, "contractsent")
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await self._move(deal, RULE_STAGE)

    async def _move(self, deal: str, stage: str) -> None:
        await self.stage_changes.wait()
        self._moving += 1  # no await since the gate opened: the monkey sees this move
        try:
            await self.c.crm_update("deals", deal, {"dealstage": stage})
        finally:
            self._moving -= 1

    async def stage_changes_idle(self) -> None:
        """Until no stage change is being sent (the gate is closed by the caller)."""
        while self._moving:
            await asyncio.sleep(0.1)

    # --- outcomes -------------------------------------------------------------------------

    async def poll_outcomes(self) -> None:
        """Poll the wizard for the outcome of every accepted (or unanswered) request and
        auto-draft, as the CRM card does; drafted invoices become payable."""
        while True:
            with contextlib.suppress(DriverError):
                await self.poll_once()
            await asyncio.sleep(2)

    async def poll_once(self) -> int:
        """One pass; returns how many outcomes are still unknown."""
        waiting = 0
        for sent in list(self.ledger.submitted.values()):
            if (sent.accepted or sent.in_doubt) and sent.outcome is None:
                found = await self._outcome(sent.request_id)
                if found is None:
                    waiting += 1
                    continue
                sent.outcome = found
                self._record(found, sent.realm, sent.deal)
        for deal, request_id in list(self.ledger.auto_deals.items()):
            if deal not in self.auto_outcomes:
                found = await self._outcome(request_id)
                if found is None:
                    waiting += 1
                    continue
                self.auto_outcomes[deal] = found
                self._record(found, self.ledger.sync_realm, deal, auto=True)
        return waiting

    async def status_of(self, request_id: str) -> str:
        """What the wizard says of a request now: pending, drafted, rejected, or unknown."""
        answer = await self.c.call(
            "GET", self.c.wizard(f"/invoice-requests/{request_id}"), as_person=True,
            final=(404,), patience=30,
        )  # fmt: skip
        return "unknown" if answer.status_code == 404 else str(answer.json().get("status"))

    async def _outcome(self, request_id: str) -> dict[str, Any] | None:
        answer = await self.c.call(
            "GET", self.c.wizard(f"/invoice-requests/{request_id}"), as_person=True,
            final=(404,), patience=30,
        )  # fmt: skip
        if answer.status_code == 404:
            return None
        body: dict[str, Any] = answer.json()
        return body if body.get("status") in {"drafted", "rejected"} else None

    def _record(self, outcome: dict[str, Any], realm: str, deal: str, auto: bool = False) -> None:
        label = "auto-draft " if auto else ""
        if outcome["status"] == "drafted":
            self.figures.outcomes[f"{label}drafted"] += 1
            key = (realm, str(outcome["qbo_invoice_id"]))
            self.ledger.drafted.setdefault(
                key, Drafted(realm, key[1], Decimal(str(outcome["total"])), deal)
            )
        else:
            self.figures.outcomes[f"{label}rejected {outcome.get('code')}"] += 1


async def backfill(c: Client, service: str, realm: str) -> dict[str, Any]:
    """Start a backfill as the portal's admin and wait for its end."""
    started = await c.json("POST", c.backfill(service, realm), as_person=True)

    async def done() -> dict[str, Any] | None:
        report: dict[str, Any] = await c.json(
            "GET", f"{c.backfill(service, realm)}/{started['run_id']}", as_person=True
        )
        return report if report["state"] != "running" else None

    return await until(done, f"the {service} backfill of {realm}", 300)


async def until(check: Any, what: str, patience: float) -> Any:
    """Poll `check` until it returns something truthy; DriverError after `patience` s."""
    deadline = time.monotonic() + patience
    while True:
        with contextlib.suppress(DriverError):
            if found := await check():
                return found
        if time.monotonic() > deadline:
            raise DriverError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)
