"""`make demo`: the whole product on this machine, start to finish, in about a minute.

Starts a real Kafka broker, a MongoDB-wire server, both API sandboxes and every service as its
own process; installs the app into a CRM portal through the CRM's OAuth, which signs its admin
in; connects a US and a UK QuickBooks company to that portal; creates deals, a
contact, a company and quotes in the CRM; asks for invoices from scratch and from a quote;
shows two rejections; pays one invoice in two parts in QuickBooks and lets another fall
overdue; connects a QuickBooks Online Advanced company with invoice approval on, whose
request waits for approval until it is approved; then prints what the CRM now shows and
stops everything it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from crm_sandbox.state import OWNER_ID_OFFSET
from dealbooks_infra.people import Person
from dealbooks_infra.records import association as assoc
from dealbooks_infra.stack import LocalStack
from dealbooks_infra.topology import PORTAL_ID

US_REALM = "9341455322581846"  # Larry's Bakery (QBO sandbox demo seed)
UK_REALM = "4620816365044851490"  # Thames Joinery Ltd, custom transaction numbers on
SUMMIT_REALM = "9341455731187204"  # Summit Ridge Outfitters, QuickBooks Online Advanced
T = TypeVar("T")


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def until(check: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise DemoFailed(f"timed out waiting for {what}")


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise DemoFailed(f"{response.request.method} {response.request.url} -> "
                         f"{response.status_code}: {response.text[:300]}")  # fmt: skip
    return response.json() if response.content else None


class Demo:
    def __init__(self, stack: LocalStack) -> None:
        t = stack.topology
        self.t = t
        self.http = httpx.Client(timeout=30.0)
        self.crm_ctl = t.crm_control()
        self.qbo_ctl = f"{t.qbo}/_sandbox/companies"
        self.wizard = t.wizard()
        self.person = Person(t, self.http)
        self.operator_auth = t.operator_auth
        self.tracker = t.url("status-tracker")
        self.deals: dict[str, str] = {}
        self.invoices: dict[str, dict[str, Any]] = {}

    # --- 1. connect -------------------------------------------------------------------------

    def connect_companies(self) -> None:
        say("== 1. Install dealbooks into CRM portal " + PORTAL_ID + " and connect QuickBooks")
        session = self.person.install()
        say(f"   installed through the CRM's OAuth; signed in as user {session.user_id} "
            f"for portal(s) {', '.join(session.portals)}")  # fmt: skip
        for realm in (US_REALM, UK_REALM):
            self.person.connect(realm)
        accounts = ok(
            self.http.get(
                f"{self.t.url('connector-auth')}/v1/portals/{PORTAL_ID}/accounts",
                headers=self.person.auth(),
            )
        )["results"]
        for a in accounts:
            say(f"   connected {a['company_name']} ({a['country']}, {a['currency']}), "
                f"realm {a['account_id']}, status {a['status']}")  # fmt: skip

        def builder_knows_both() -> bool:
            found = self.http.get(f"{self.wizard}/accounts", headers=self.person.auth())
            return found.status_code == 200 and len(found.json()["accounts"]) == 2

        until(builder_knows_both, "invoice-builder to learn both companies from Kafka")

    # --- 2. CRM records ---------------------------------------------------------------------

    def crm_create(self, kind: str, props: dict[str, str], assocs: list[Any] | None = None) -> str:
        body: dict[str, Any] = {"properties": props}
        if assocs:
            body["associations"] = assocs
        return str(ok(self.http.post(f"{self.crm_ctl}/objects/{kind}", json=body))["id"])

    def quote(self, deal: str, contact: str, company: str, title: str, expires: datetime) -> str:
        quote = self.crm_create(
            "quotes",
            {"hs_title": title, "hs_status": "APPROVAL_NOT_NEEDED",
             "hs_expiration_date": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
            [assoc(deal, 64), assoc(contact, 69), assoc(company, 71)],
        )  # fmt: skip
        for name, qty, price in (("Oak dining table", "1", "1000"), ("Delivery", "2", "150")):
            self.crm_create(
                "line_items",
                {"name": name, "quantity": qty, "price": price,
                 "hs_line_item_currency_code": "GBP"},
                [assoc(quote, 68)],
            )  # fmt: skip
        return quote

    def create_crm_records(self) -> None:
        say("== 2. CRM: a contact at a company, deals, and two quotes")
        company = self.crm_create("companies", {"name": "Amy's Bird Sanctuary"})
        contact = self.crm_create(
            "contacts",
            {"email": "birds@intuit.com", "firstname": "Amy", "lastname": "Lauterbach"},
            [assoc(company, 1)],
        )
        people = [assoc(contact, 3), assoc(company, 5)]
        self.us_people = people
        self.deals["us"] = self.crm_create(
            "deals", {"dealname": "Bird sanctuary consulting", "amount": "1500"}, people
        )
        self.deals["overdue"] = self.crm_create(
            "deals", {"dealname": "Spring feeder install", "amount": "400"}, people
        )
        uk_company = self.crm_create("companies", {"name": "Thames Clients Ltd"})
        uk_contact = self.crm_create(
            "contacts", {"email": "eve@thames-clients.example", "firstname": "Eve",
                         "lastname": "Hart"}, [assoc(uk_company, 1)],
        )  # fmt: skip
        self.deals["uk"] = self.crm_create(
            "deals", {"dealname": "Joinery for Thames Clients", "amount": "1300"},
            [assoc(uk_contact, 3), assoc(uk_company, 5)],
        )  # fmt: skip
        now = datetime.now(UTC)
        self.uk_quote = self.quote(
            self.deals["uk"], uk_contact, uk_company, "Q-1001", now + timedelta(days=30)
        )
        self.expired_quote = self.quote(
            self.deals["uk"], uk_contact, uk_company, "Q-0999", now - timedelta(days=3)
        )
        say(f"   deals: {', '.join(f'{k}={v}' for k, v in self.deals.items())}; "
            f"quotes Q-1001 (valid), Q-0999 (expired)")  # fmt: skip

    # --- 3-6. invoice requests --------------------------------------------------------------

    def submit(self, realm: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit through the wizard and wait for the outcome (drafted or rejected)."""
        sent = self.http.post(
            f"{self.wizard}/accounts/{realm}/invoice-requests",
            json=body,
            headers=self.person.auth(),
        )
        if sent.status_code == 422:  # refused before anything was requested
            return {"status": "rejected", **sent.json()["problem"]}
        request_id = ok(sent)["request_id"]

        def outcome() -> dict[str, Any] | None:
            polled = ok(
                self.http.get(
                    f"{self.wizard}/invoice-requests/{request_id}", headers=self.person.auth()
                )
            )
            return polled if polled.get("status") in {"drafted", "rejected"} else None

        return until(outcome, f"the outcome of request {request_id}")

    def show(self, label: str, outcome: dict[str, Any]) -> None:
        if outcome["status"] == "drafted":
            say(f"   {label}: DRAFTED invoice {outcome.get('doc_number')} "
                f"(QBO id {outcome.get('qbo_invoice_id')}), total {outcome.get('total')} "
                f"{outcome.get('currency')}")  # fmt: skip
        else:
            say(f"   {label}: REJECTED [{outcome.get('code')}] {outcome.get('message')}")

    def us_lines(self, quantity: str, price: str) -> list[dict[str, Any]]:
        return [{"qbo_item_id": "1", "quantity": quantity, "description": "Consulting hours",
                 "unit_price": {"amount": price, "currency": "USD"}}]  # fmt: skip

    def request_invoices(self) -> None:
        say("== 3. Invoice from scratch for the US deal (customer matched from the contact)")
        us_body = {
            "deal_id": self.deals["us"],
            "lines": self.us_lines("10", "150"),
            "terms_id": "3",
            "customer_message": "Thank you!",
        }
        us = self.submit(US_REALM, us_body)
        self.show("US deal", us)
        self.invoices["us"] = us

        say("== 4. Invoice from the UK quote, with VAT codes")
        items = ok(
            self.http.get(f"{self.wizard}/accounts/{UK_REALM}/items", headers=self.person.auth())
        )
        line_items = ok(self.http.get(f"{self.crm_ctl}/objects/line_items"))
        ids = sorted((li["id"] for li in line_items.get("results", line_items)), key=int)[:2]
        body = {"deal_id": self.deals["uk"], "quote_id": self.uk_quote, "default_tax_code": "2",
                "terms_id": "3", "chosen_items": {ids[0]: items["items"][1]["id"],
                                                  ids[1]: items["items"][0]["id"]}}  # fmt: skip
        first = self.submit(UK_REALM, body)
        self.show("UK quote, custom transaction numbers on", first)
        if first["status"] != "rejected":
            raise DemoFailed("the UK company has custom transaction numbers on; expected a refusal")
        say("   ...turning custom transaction numbers off in QuickBooks (a Preferences webhook "
            "reaches connector-auth through the gateway)")  # fmt: skip
        ok(self.http.post(f"{self.qbo_ctl}/{UK_REALM}/preferences",
                          json={"custom_txn_numbers": False}))  # fmt: skip

        def custom_numbers_off() -> bool:
            accounts = ok(self.http.get(f"{self.wizard}/accounts", headers=self.person.auth()))
            uk = [a for a in accounts["accounts"] if a["realm_id"] == UK_REALM]
            return bool(uk) and not uk[0].get("custom_transaction_numbers")

        until(custom_numbers_off, "invoice-builder to learn that custom numbers are off")
        uk = self.submit(UK_REALM, body)
        self.show("UK quote, after the switch", uk)
        self.invoices["uk"] = uk

        say("== 5. An expired quote is refused")
        expired = self.submit(UK_REALM, {**body, "quote_id": self.expired_quote})
        self.show("expired quote Q-0999", expired)

        say("== 6. An invoice whose due date has passed")
        today = date.today()
        late = self.submit(US_REALM, {"deal_id": self.deals["overdue"],
                                      "lines": self.us_lines("4", "100"),
                                      "invoice_date": str(today - timedelta(days=45)),
                                      "due_date": str(today - timedelta(days=15))})  # fmt: skip
        self.show("feeder install", late)
        self.invoices["overdue"] = late
        ok(self.http.post(f"{self.tracker}/sweeps/overdue", headers=self.operator_auth))
        self.outcomes = {"us": us, "uk": uk, "custom": first, "expired": expired, "late": late}

    # --- 7. payments ------------------------------------------------------------------------

    def stage(self, realm: str, invoice_id: str) -> str | None:
        found = self.http.get(
            f"{self.tracker}/portals/{PORTAL_ID}/accounts/{realm}/invoices/{invoice_id}",
            headers=self.person.auth(),
        )
        return found.json().get("stage") if found.status_code == 200 else None

    def timeline(self, deal: str) -> list[dict[str, Any]]:
        events = ok(self.http.get(f"{self.crm_ctl}/timeline-events?objectId={deal}"))
        return list(events.get("results", events))

    def pay(self) -> None:
        say("== 7. The customer pays the US invoice in two parts (in QuickBooks)")
        invoice_id = str(self.invoices["us"]["qbo_invoice_id"])
        total = self.invoices["us"]["total"]
        deal = self.deals["us"]
        for n, (amount, expected) in enumerate(
            (("500.00", "partially_paid"), (None, "paid")), start=1
        ):
            ok(
                self.http.post(
                    f"{self.qbo_ctl}/{US_REALM}/invoices/{invoice_id}/payments",
                    json={"amount": amount} if amount else {},
                )
            )
            until(
                lambda e=expected: self.stage(US_REALM, invoice_id) == e,  # type: ignore[misc]
                f"status-tracker to see the invoice {expected}",
            )
            until(lambda n=n: len(self.timeline(deal)) >= n, f"payment {n} on the deal timeline")  # type: ignore[misc]
            say(f"   paid {amount or 'the rest of ' + str(total)} -> stage {expected}")

    # --- 8. invoice approval (QuickBooks Online Advanced) -------------------------------

    def approval(self, operator_view: Callable[[], None] | None = None) -> dict[str, Any]:
        """An Advanced company with approval on: a request waits for approval (a task on the
        deal asks its owner), is approved (twice: one draft), and becomes a draft."""
        say("== 8. QuickBooks Online Advanced: invoice approval (Summit Ridge Outfitters)")
        auth = self.person.auth
        self.person.connect(SUMMIT_REALM)
        settings_url = f"{self.wizard}/accounts/{SUMMIT_REALM}/approval-settings"

        def advanced() -> dict[str, Any] | None:
            found = self.http.get(settings_url, headers=auth())
            return found.json() if found.status_code == 200 and found.json()["advanced"] else None

        facts = until(advanced, "invoice-builder to learn Summit Ridge and its edition")
        say(f"   connected {facts['company_name']}: edition '{facts['edition']}'")
        plain = self.http.put(
            f"{self.wizard}/accounts/{US_REALM}/approval-settings",
            json={"enabled": True},
            headers=auth(),
        )
        say(f"   approval for the US company (not Advanced): {plain.status_code} "
            f"{plain.json().get('code')}: {plain.json().get('error')}")  # fmt: skip
        ok(self.http.put(settings_url, json={"enabled": True, "remind_after_hours": 24},
                         headers=auth()))  # fmt: skip
        say("   approval switched on for Summit Ridge: approver = each deal's owner, "
            "one reminder after 24 hours")  # fmt: skip

        admin = ok(self.http.get(f"{self.crm_ctl}/users"))["results"][0]
        owner = str(int(admin["userId"]) + OWNER_ID_OFFSET)  # the sandbox's owner of that user
        deal = self.crm_create(
            "deals",
            {"dealname": "Expedition tents", "amount": "1840", "hubspot_owner_id": owner},
            self.us_people,
        )
        body = {"deal_id": deal, "terms_id": "3", "lines": [
            {"qbo_item_id": "1", "quantity": "8", "description": "Expedition tent",
             "unit_price": {"amount": "205", "currency": "USD"}},
            {"qbo_item_id": "1", "quantity": "1", "description": "Fitting and delivery",
             "unit_price": {"amount": "200", "currency": "USD"}}]}  # fmt: skip
        sent = ok(self.http.post(f"{self.wizard}/accounts/{SUMMIT_REALM}/invoice-requests",
                                 json=body, headers=auth()))  # fmt: skip
        request_id = sent["request_id"]
        polled = until(lambda: self._status(request_id, {"awaiting_approval", "drafted",
                                                         "rejected"}),
                       f"request {request_id} to wait for approval")  # fmt: skip
        say(f"   request {request_id[:8]}... for deal {deal}: {polled['status'].upper()} "
            f"(nothing sent to QuickBooks)")  # fmt: skip
        waiting = ok(self.http.get(f"{self.wizard}/approvals", headers=auth()))["approvals"]
        shown = ok(self.http.get(f"{self.wizard}/approvals/{request_id}", headers=auth()))
        say(f"   pending approvals in the portal: {len(waiting)}; this one, as it would be "
            f"created:")  # fmt: skip
        invoice = shown["invoice"]
        say(f"      customer  {invoice['customer'].get('name')}")
        for line in invoice["lines"]:
            say(f"      line      {line['quantity']:>3} x {line['unit_price']['amount']:>8} "
                f"{line.get('description') or '':<24} {line['amount']:>10}")  # fmt: skip
        say(f"      subtotal  {invoice['subtotal']} {invoice['currency']} (tax by QuickBooks)")
        if operator_view is not None:
            operator_view()
        task = ok(self.http.get(f"{self.crm_ctl}/objects/tasks/{shown['crm_task_id']}"))
        props = task.get("properties", {})
        subject, status = props.get("hs_task_subject"), props.get("hs_task_status")
        assigned = props.get("hubspot_owner_id")
        say(f"   CRM task on the deal: '{subject}', assigned to owner {assigned} (the deal's), "
            f"{status}")  # fmt: skip

        url = f"{self.wizard}/approvals/{request_id}/approve"
        first = ok(self.http.post(url, headers=auth()))
        second = ok(self.http.post(url, headers=auth()))
        say(f"   approved by user {first.get('decided_by')}; approved again: "
            f"already_decided={second.get('already_decided')}")  # fmt: skip
        drafted = until(lambda: self._status(request_id, {"drafted", "rejected"}),
                        f"the draft of request {request_id}")  # fmt: skip
        self.show("approved request", drafted)
        done = ok(self.http.get(f"{self.crm_ctl}/objects/tasks/{shown['crm_task_id']}"))
        say(f"   CRM task now {done.get('properties', {}).get('hs_task_status')}")
        return {"waited": polled["status"], "outcome": drafted["status"],
                "refused": plain.status_code, "again": second.get("already_decided"),
                "invoice": drafted.get("qbo_invoice_id"), "deal": deal}  # fmt: skip

    def reminder(self, invoice_id: str, deal: str) -> dict[str, Any]:
        """An Advanced company's unsent-invoice reminder: a CRM task on the deal for the
        approved draft nobody e-mailed yet, completed once QuickBooks has sent it."""
        say("== 9. QuickBooks Online Advanced: a reminder workflow (Summit Ridge Outfitters)")
        auth = self.person.auth
        reminders = self.t.url("reminders")
        company = f"{reminders}/portals/{PORTAL_ID}/accounts/{SUMMIT_REALM}/reminders"
        unsent = {"enabled": True, "days_after": [0]}  # not e-mailed by the day it was made
        ok(self.http.put(f"{company}/workflows/unsent", json=unsent, headers=auth()))
        say("   unsent-invoice reminder switched on: invoices not e-mailed on the day they "
            "were made")  # fmt: skip
        sweep = f"{reminders}/sweeps/reminders"
        params = {"realm_id": SUMMIT_REALM}

        def opened() -> dict[str, Any] | None:
            ok(self.http.post(sweep, params=params, headers=self.operator_auth))
            found = ok(self.http.get(f"{company}/tasks", headers=auth()))["reminders"]
            return next((r for r in found if r.get("subject_id") == invoice_id), None)

        task = until(opened, "the reminder pass to open a task for the unsent invoice")
        crm = ok(self.http.get(f"{self.crm_ctl}/objects/tasks/{task['crm_task_id']}"))
        props = crm.get("properties", {})
        say(f"   CRM task on deal {deal}: '{props.get('hs_task_subject')}', assigned to "
            f"owner {props.get('hubspot_owner_id')}, {props.get('hs_task_status')}")  # fmt: skip
        ok(self.http.post(f"{self.qbo_ctl}/{SUMMIT_REALM}/invoices/{invoice_id}/emailed"))
        say("   ...the invoice is e-mailed from QuickBooks")

        def closed() -> dict[str, Any] | None:
            ok(self.http.post(sweep, params=params, headers=self.operator_auth))
            done = ok(self.http.get(f"{self.crm_ctl}/objects/tasks/{task['crm_task_id']}"))
            status = done.get("properties", {}).get("hs_task_status")
            return done if status == "COMPLETED" else None

        until(closed, "the reminder pass to complete the task")
        say("   CRM task now COMPLETED (the condition cleared: sent)")
        return {"opened": True, "closed": True}

    def _status(self, request_id: str, wanted: set[str]) -> dict[str, Any] | None:
        polled = ok(
            self.http.get(
                f"{self.wizard}/invoice-requests/{request_id}", headers=self.person.auth()
            )
        )
        return polled if polled.get("status") in wanted else None

    # --- 9. what the CRM shows --------------------------------------------------------------

    def report(self) -> list[str]:
        say("== 10. What the CRM shows now")
        stages = []
        for key, deal in self.deals.items():
            record = ok(self.http.get(f"{self.crm_ctl}/objects/deals/{deal}"))
            props = record.get("properties", {})
            say(f"   deal {deal} '{props.get('dealname')}':")
            for name in ("acct_invoice_number", "acct_invoice_status", "acct_amount_billed",
                         "acct_invoice_recipient", "acct_invoice_due_date"):  # fmt: skip
                say(f"      {name:<24} {props.get(name) or '-'}")
            for event in self.timeline(deal):
                tokens = event.get("tokens", {})
                say(f"      timeline: payment {tokens.get('amount')} {tokens.get('currency')} "
                    f"on invoice {tokens.get('invoiceNumber')}")  # fmt: skip
            projection = self.http.get(
                f"{self.tracker}/portals/{PORTAL_ID}/deals/{deal}", headers=self.person.auth()
            )
            view = (projection.json().get("projection") or {}) if projection.is_success else {}
            reason = view.get("skipped_reason")
            stage = props.get("acct_invoice_status")
            if reason:
                say(f"      not written to the deal: {reason}")
                tracked = projection.json().get("invoices") or [{}]
                stage = f"{tracked[0].get('stage')} (kept off the deal: currency)"
            stages.append(f"{key}={stage or '-'}")
        return stages


def waiting_approvals(stack: LocalStack, workdir: Path) -> None:
    """`dealbooks approvals list`: what waits for approval, as the operator's CLI shows it."""
    say(f"   the operator's view: dealbooks approvals list --portal {PORTAL_ID}")
    env = {**os.environ, **stack.topology.infra, "DEALBOOKS_ROOT": str(workdir)}
    cli = Path(sys.executable).with_name("dealbooks")
    done = subprocess.run(
        [str(cli), "approvals", "list", "--portal", PORTAL_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dealbooks approvals list failed: {done.stderr.strip()[:300]}")
    for line in done.stdout.splitlines():
        say(f"      {line}")


def audit_trail(stack: LocalStack, workdir: Path, realm: str, invoice_id: str) -> list[str]:
    """`dealbooks audit invoice`: the invoice's life as the operator's CLI shows it, from the
    services' audit trails (this stack's servers, none of a `make up` stack's)."""
    say(f"== 11. The US invoice's life, from the audit trail: dealbooks audit invoice {realm} "
        f"{invoice_id}")  # fmt: skip
    env = {**os.environ, **stack.topology.infra, "DEALBOOKS_ROOT": str(workdir)}
    cli = Path(sys.executable).with_name("dealbooks")
    done = subprocess.run(
        [str(cli), "audit", "invoice", realm, invoice_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dealbooks audit invoice failed: {done.stderr.strip()[:300]}")
    rows = json.loads(done.stdout)
    for row in rows:
        call = (row.get("detail") or {}).get("call") or {}
        made = f"  -> {call.get('system')} {call.get('method')} {call.get('path')}" if call else ""
        say(f"   {row['at'][11:23]}  {row['service']:<15} {row['action']:<30} "
            f"{(row.get('event_type') or '-'):<26}{made}")  # fmt: skip
    return [str(row["action"]) for row in rows]


def main() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="dealbooks-demo-"))
    say("== Starting Kafka, a MongoDB-wire server, both sandboxes and every service")
    stack = LocalStack(workdir)
    try:
        stack.start()
        demo = Demo(stack)
        demo.connect_companies()
        demo.create_crm_records()
        demo.request_invoices()
        demo.pay()
        approval = demo.approval(lambda: waiting_approvals(stack, workdir))
        reminder = demo.reminder(str(approval["invoice"]), str(approval["deal"]))
        stages = demo.report()
        life = audit_trail(stack, workdir, US_REALM, str(demo.invoices["us"]["qbo_invoice_id"]))
        t = stack.topology
        say("== Where to look next (while the stack runs: `make up`)")
        for name in ("invoice-builder", "status-tracker", "connector-auth", "webhook-gateway"):
            say(f"   {name:<16} {t.url(name)}/healthz  /readyz  /metrics  /docs/asyncapi")
        say(f"   logs of this run: {workdir / 'logs'}")
        say(f"   the console (people's pages): {t.url('console')}/ -- `make up` keeps it open")
        o = demo.outcomes
        expected = (
            o["us"]["status"] == "drafted"
            and o["uk"]["status"] == "drafted"
            and o["custom"]["status"] == "rejected"
            and o["expired"]["status"] == "rejected"
            and "us=paid" in stages
            and "overdue=overdue" in stages
            # The trail holds the request, the invoice made, and both payments.
            and {"request.received", "invoice.created", "payment.recorded"} <= set(life)
            # Advanced: the request waited, was approved once (twice sent), and was drafted;
            # the company on another edition could not switch approval on.
            and approval["waited"] == "awaiting_approval"
            and approval["outcome"] == "drafted"
            and approval["again"] is True
            and approval["refused"] == 422
            and reminder == {"opened": True, "closed": True}
        )
        elapsed = time.monotonic() - started
        if not expected:
            say(f"demo: FAILED after {elapsed:.0f}s: stages {', '.join(stages)}")
            return 1
        say(f"demo: ok in {elapsed:.0f}s: 3 invoices drafted, 2 rejections shown, "
            f"1 invoice approved and drafted, 1 reminder task opened and completed, "
            f"stages {', '.join(stages)}")  # fmt: skip
        return 0
    except Exception as exc:
        say(f"demo: FAILED: {type(exc).__name__}: {exc} (logs in {workdir / 'logs'})")
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
