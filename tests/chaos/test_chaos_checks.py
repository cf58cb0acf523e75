"""The chaos run's invariants catch what they are there for: each broken world below breaks
the invariant meant for it, and a sound one breaks none (no servers needed)."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

from chaos_checks import Checks, Records, sync_without_backfill
from chaos_world import Ledger, Submitted
from dealbooks_contracts import SyncObjectType
from dealbooks_sync.domain import default_mappings

REALM = "9130"
DEAL = "11"
REQUEST = str(uuid.uuid4())
DUE = str(date.today() + timedelta(days=30))


def world() -> tuple[Ledger, Any, Records]:
    """One drafted, partly paid invoice on a deal, and one synced customer, all as they
    should be."""
    ledger = Ledger(sync_realm=REALM, realms=[REALM])
    outcome = {"status": "drafted", "qbo_invoice_id": "130"}
    ledger.submitted[REQUEST] = Submitted(REQUEST, REALM, DEAL, "scratch", True, outcome)
    invoice = {"Id": "130", "TotalAmt": 300, "Balance": 100, "DueDate": DUE, "DocNumber": "1001",
               "PrivateNote": f"dealbooks: deal {DEAL}, request {REQUEST}"}  # fmt: skip
    paid = {"Amount": 200, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}
    payment = {"Id": "7", "Line": [paid]}
    customer = {"Id": "58", "DisplayName": "Harbour Books", "GivenName": "Ada",
                "PrimaryEmailAddr": {"Address": "ada@harbour.example"}}  # fmt: skip
    records = Records(
        invoices={REALM: [invoice]},
        customers={REALM: [customer]},
        items={REALM: []},
        payments={REALM: [payment]},
        deals={DEAL: {"id": DEAL, "properties": {
            "acct_invoice_status": "partially_paid", "acct_amount_billed": "300.00",
            "acct_invoice_number": "1001", "acct_invoice_due_date": DUE}}},
        contacts=[{"id": "901", "archived": False, "properties": {
            "email": "ada@harbour.example", "firstname": "Ada",
            "dealbooks_qbo_customer_id": "58"}}],
        products=[],
        timeline={DEAL: [{"objectId": int(DEAL), "tokens": {"amount": "200.00"}}]},
        mappings={t.value: default_mappings(t) for t in SyncObjectType},
    )  # fmt: skip
    return ledger, SimpleNamespace(auto_outcomes={}), records


def broken(ledger: Ledger, load: Any, records: Records) -> list[str]:
    return [i.name.split(" (")[0] for i in Checks(ledger, load, records).all() if not i.ok]


def test_a_sound_world_breaks_no_invariant() -> None:
    assert broken(*world()) == []


def test_a_second_invoice_for_one_request_is_a_duplicate() -> None:
    ledger, load, records = world()
    records.invoices[REALM].append({**records.invoices[REALM][0], "Id": "131"})
    assert "no duplicate QuickBooks invoice" in broken(ledger, load, records)


def test_an_accepted_request_without_outcome_is_lost() -> None:
    ledger, load, records = world()
    ledger.submitted[REQUEST].outcome = None
    assert "no accepted request lost" in broken(ledger, load, records)


def test_a_rejection_while_quickbooks_holds_the_invoice_disagrees() -> None:
    ledger, load, records = world()
    ledger.submitted[REQUEST].outcome = {"status": "rejected", "code": "QBO_UNAVAILABLE",
                                         "message": "QuickBooks did not respond"}  # fmt: skip
    assert "each outcome agrees with QuickBooks" in broken(ledger, load, records)


def test_a_payment_shown_twice_or_not_at_all_on_the_timeline_is_caught() -> None:
    ledger, load, records = world()
    records.timeline[DEAL].append({"objectId": DEAL, "tokens": {"amount": "200.00"}})
    assert broken(ledger, load, records) == ["each payment on its deal's timeline exactly once"]
    records.timeline[DEAL] = []
    assert broken(ledger, load, records) == ["each payment on its deal's timeline exactly once"]


def test_a_deal_showing_an_older_stage_is_caught() -> None:
    ledger, load, records = world()
    records.deals[DEAL]["properties"]["acct_invoice_status"] = "awaiting_send"
    assert broken(ledger, load, records) == [
        "every deal shows its invoice's true stage, amount, number, due date"
    ]


def test_a_contact_behind_its_customer_or_left_live_after_inactivation_is_caught() -> None:
    ledger, load, records = world()
    records.customers[REALM][0]["GivenName"] = "Grace"
    assert broken(ledger, load, records) == [
        "every synced contact matches its QuickBooks customer under the mappings"
    ]
    records.customers[REALM][0].update(GivenName="Ada", Active=False)
    assert broken(ledger, load, records) == [
        "every synced contact matches its QuickBooks customer under the mappings"
    ]


def test_two_live_contacts_for_one_customer_are_duplicates() -> None:
    ledger, load, records = world()
    twin = {**records.contacts[0], "id": "902"}
    twin["properties"] = {**twin["properties"], "email": "ada.2@harbour.example"}
    records.contacts.append(twin)
    assert "no duplicate CRM contact or product" in broken(ledger, load, records)


def test_a_stale_contact_whose_change_was_delivered_is_a_break_and_a_dropped_one_is_not() -> None:
    ledger, load, records = world()
    customer = records.customers[REALM][0]
    customer.update(GivenName="Grace", MetaData={"LastUpdatedTime": "2026-01-15T10:30:00-08:00"})
    stale = Checks(ledger, load, records).synced_match()
    change = {"name": "Customer", "id": "58", "operation": "Update",
              "lastUpdated": "2026-01-15T18:30:00.412Z"}  # fmt: skip
    body = {"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [change]}}]}
    delivered = [{"status": 200, "body": json.dumps(body)}]

    carried, dropped = sync_without_backfill(stale, records, REALM, delivered)
    assert (len(carried.failures), dropped) == (1, 0)
    carried, dropped = sync_without_backfill(stale, records, REALM, [{"dropped": True}])
    assert (carried.failures, dropped) == ([], 1)
