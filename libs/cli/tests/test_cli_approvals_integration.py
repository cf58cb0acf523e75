"""`dealbooks approvals list|show`: invoice-builder's approvals, read from its database (seeded on a
real MongoDB-wire server under a database prefix)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dealbooks_cli.approvals import waited
from dealbooks_cli.main import app
from dealbooks_contracts import InvoiceLineRequest, InvoiceRequested
from invoice_builder.approval import ApprovalDecision, approval_doc, decision_fields
from invoice_builder.domain import AccountFacts
from pymongo import MongoClient
from typer.testing import CliRunner

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def approval(
    request_id: str, portal: str, status: str, minutes: int, **extra: Any
) -> dict[str, Any]:
    return {
        "_id": request_id,
        "portal_id": portal,
        "realm_id": "r1",
        "company_name": "Summit Ridge Outfitters",
        "deal_id": "77",
        "customer_name": "Amy's Bird Sanctuary",
        "subtotal": "1840.00",
        "currency": "USD",
        "status": status,
        "requested_at": T0 + timedelta(minutes=minutes),
        "reminded_at": None,
        "approver_id": "900000001",
        "task_id": "5",
        **extra,
    }


@pytest.mark.integration
def test_approvals_list_shows_a_portals_waiting_approvals_oldest_first(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["approvals"].insert_many(
            [
                approval("req-2", "p1", "pending", 5),
                approval("req-1", "p1", "pending", 1),
                approval("req-3", "p2", "pending", 2),
                approval(
                    "req-4", "p1", "rejected", 3, decided_by="u9", reason="wrong price",
                    decided_by_name="boss@summit.example",
                ),
            ]
        )  # fmt: skip
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    listed = runner.invoke(app, ["approvals", "list", "--portal", "p1", "--json"], env=env)
    every = runner.invoke(app, ["approvals", "list", "--status", "all", "--json"], env=env)
    shown = runner.invoke(app, ["approvals", "list", "--status", "rejected"], env=env)
    wrong = runner.invoke(app, ["approvals", "list", "--status", "maybe"], env=env)

    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["request_id"] for r in rows] == ["req-1", "req-2"]
    assert rows[0]["waiting"] and rows[0]["subtotal"] == "1840.00"
    assert len(json.loads(every.stdout)) == 4
    assert shown.exit_code == 0, shown.stderr
    assert "boss@summit.example (wrong price)" in shown.stdout
    assert "req-1" not in shown.stdout
    assert wrong.exit_code != 0


def test_waiting_reads_in_days_hours_and_minutes() -> None:
    assert waited(T0, T0 + timedelta(days=3, hours=4, minutes=9)) == "3d 4h"
    assert waited(T0, T0 + timedelta(hours=5, minutes=12)) == "5h 12m"
    assert waited(T0, T0 + timedelta(minutes=7)) == "7m"
    assert waited(None, T0) == ""


@pytest.mark.integration
def test_approvals_are_narrowed_to_one_company_and_an_empty_list_says_what_it_looked_for(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["approvals"].insert_many(
            [
                approval("req-1", "p1", "pending", 1),
                approval("req-2", "p1", "pending", 2, realm_id="r2"),
                approval("req-3", "p1", "approved", 3, realm_id="r2"),
            ]
        )
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    one = runner.invoke(app, ["approvals", "list", "--realm", "r2", "--json"], env=env)
    none = runner.invoke(app, ["approvals", "list", "--realm", "r3"], env=env)
    wrong = runner.invoke(app, ["approvals", "list", "--status", "maybe"], env=env)

    assert one.exit_code == 0, one.stderr
    assert [r["request_id"] for r in json.loads(one.stdout)] == ["req-2"]
    assert none.exit_code == 0, none.stderr
    assert none.stdout.strip() == "no pending approvals (--status all: any)"
    assert wrong.exit_code == 2
    assert "--status" in wrong.stderr


REQ_1 = "0f9c2a1e-0000-7000-8000-000000000001"
REQ_2 = "0f9c2a1e-0000-7000-8000-000000000002"


def stored_approval(request_id: str, **decided: Any) -> dict[str, Any]:
    """An approval as invoice-builder stores it once opened (its own `approval_doc`), then
    decided with `decided` (invoice-builder's `decision_fields` and the decider)."""
    request = InvoiceRequested.model_validate(
        {
            "request_id": request_id,
            "deal_id": "77",
            "origin": "wizard",
            "customer": {"kind": "existing", "qbo_customer_id": "58"},
            "lines": [
                {"qbo_item_id": "1", "quantity": "8", "description": "Expedition tent",
                 "unit_price": {"amount": "205", "currency": "USD"}},
                {"qbo_item_id": "2", "quantity": "1", "description": "Fitting and delivery",
                 "unit_price": {"amount": "200", "currency": "USD"}},
            ],
            "terms_id": "3",
            "requested_by": "2001",
        }
    )  # fmt: skip
    account = AccountFacts("p1", "r1", "Summit Ridge Outfitters", "US", "USD", False, False)
    doc = approval_doc("p1", request, account, "Amy's Bird Sanctuary", "900000001", "5")
    return {
        "_id": request_id,
        **doc,
        "status": "pending",
        "requested_at": T0,
        "reminded_at": T0 + timedelta(hours=25),
        **decided,
    }


@pytest.mark.integration
def test_approvals_show_gives_one_approval_with_its_lines_approver_and_decision(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    pending = stored_approval(REQ_1)
    request = InvoiceRequested.model_validate(pending["request"])
    fewer = [InvoiceLineRequest.model_validate(request.lines[0].model_dump(mode="json"))]
    account = AccountFacts("p1", "r1", "Summit Ridge Outfitters", "US", "USD", False, False)
    edited = decision_fields(
        ApprovalDecision.APPROVED, request, account, lines=fewer, reason=None, today=T0.date()
    )
    assert isinstance(edited, dict)
    approved = stored_approval(
        REQ_2,
        **edited,
        status="approved",
        decided_by="u9",
        decided_by_name="boss@summit.example",
        decided_at=T0 + timedelta(days=2),
        qbo_invoice_id="145",
        doc_number="1042",
    )
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["approvals"].insert_many([pending, approved])
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    waiting = runner.invoke(app, ["approvals", "show", REQ_1, "--json"], env=env)
    decided = runner.invoke(app, ["approvals", "show", REQ_2], env=env)
    missing = runner.invoke(app, ["approvals", "show", "req-9"], env=env)

    assert waiting.exit_code == 0, waiting.stderr
    shown = json.loads(waiting.stdout)
    assert (shown["status"], shown["requested_by"], shown["approver_id"]) == (
        "pending",
        "2001",
        "900000001",
    )
    assert shown["subtotal"] == "1840.00" and shown["waiting"]
    assert [(line["description"], line["amount"]) for line in shown["lines"]] == [
        ("Expedition tent", "1640.00"),
        ("Fitting and delivery", "200.00"),
    ]
    assert shown["decided_at"] is None and shown["edited"] is False
    assert decided.exit_code == 0, decided.stderr
    text = decided.stdout
    assert "requested by  2001" in text and "approver      900000001" in text
    assert "1640.00 USD before tax (edited by the approver)" in text
    assert "approved by boss@summit.example at 2026-03-04T10:00:00+00:00" in text
    assert "QuickBooks invoice 145 (number 1042)" in text
    # Only the line the approver kept.
    assert "Expedition tent" in text and "Fitting and delivery" not in text
    assert missing.exit_code == 1
    assert missing.stderr.startswith("dealbooks: no approval of request req-9")
