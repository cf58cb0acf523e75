"""`dealbooks audit invoice`: invoice-builder's and status-tracker's audit trails, merged
(seeded on a real MongoDB-wire server under a database prefix)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dealbooks_cli.main import app
from pymongo import MongoClient
from typer.testing import CliRunner

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def entry(n: int, kind: str, subject: str, action: str, **detail: Any) -> dict[str, Any]:
    return {
        "_id": f"e{n}",
        "subject_kind": kind,
        "subject_id": subject,
        "at": T0 + timedelta(seconds=n),
        "action": action,
        "result": "ok",
        "detail": detail,
        "event": {"id": f"ev-{n}", "type": "t", "correlation_id": "c-1"},
    }


@pytest.mark.integration
def test_audit_invoice_lists_the_invoice_and_its_request_in_time_order(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    call = {"system": "qbo", "method": "POST", "path": "/v3/company/r1/invoice", "requestid": "q1"}
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["audit"].insert_many(
            [
                {**entry(1, "request", "req-1", "request.received"), "service": "invoice-builder"},
                {**entry(2, "request", "req-1", "customer.found"), "service": "invoice-builder"},
                {
                    **entry(
                        3, "invoice", "r1:42", "invoice.created", request_id="req-1", call=call
                    ),
                    "service": "invoice-builder",
                },
                {**entry(9, "invoice", "r1:43", "invoice.created"), "service": "invoice-builder"},
            ]
        )
        client[f"{prefix}status_tracker"]["audit"].insert_many(
            [
                {**entry(5, "invoice", "r1:42", "payment.recorded"), "service": "status-tracker"},
                {**entry(4, "invoice", "r1:42", "stage.changed"), "service": "status-tracker"},
            ]
        )
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    listed = runner.invoke(app, ["audit", "invoice", "r1", "42", "--json"], env=env)

    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["service"], r["action"], r["event_id"]) for r in rows] == [
        ("invoice-builder", "request.received", "ev-1"),
        ("invoice-builder", "customer.found", "ev-2"),
        ("invoice-builder", "invoice.created", "ev-3"),
        ("status-tracker", "stage.changed", "ev-4"),
        ("status-tracker", "payment.recorded", "ev-5"),
    ]
    assert rows[2]["detail"]["call"]["requestid"] == "q1"
    assert rows[0]["subject"] == "request:req-1"
    table = runner.invoke(app, ["audit", "invoice", "r1", "42"], env=env)
    assert table.exit_code == 0, table.stderr
    assert "qbo POST /v3/company/r1/invoice requestid=q1" in table.stdout


@pytest.mark.integration
def test_audit_deal_and_customer_find_the_entries_that_name_them_across_services(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    deal = ["deal:p1:77"]
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["audit"].insert_many(
            [
                {**entry(1, "deal", "p1:77", "auto-draft.requested"), "service": "invoice-builder"},
                {
                    **entry(2, "request", "req-7", "customer.created"),
                    "service": "invoice-builder",
                    "related": [*deal, "customer:r1:5"],
                },
                {
                    **entry(3, "invoice", "r1:42", "invoice.created"),
                    "service": "invoice-builder",
                    "related": deal,
                },
                {
                    **entry(4, "invoice", "r1:43", "invoice.created"),
                    "service": "invoice-builder",
                    "related": ["deal:p1:78"],
                },
            ]
        )
        client[f"{prefix}status_tracker"]["audit"].insert_one(
            {**entry(5, "invoice", "r1:42", "deal.properties-written"), "related": deal}
            | {"service": "status-tracker"}
        )
        client[f"{prefix}contact_sync"]["audit"].insert_one(
            {**entry(6, "customer", "r1:5", "contact.updated"), "service": "contact-sync"}
        )
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    deal_rows = runner.invoke(app, ["audit", "deal", "p1", "77", "--json"], env=env)
    customer_rows = runner.invoke(app, ["audit", "customer", "r1", "5", "--json"], env=env)

    assert deal_rows.exit_code == 0, deal_rows.stderr
    assert [r["action"] for r in json.loads(deal_rows.stdout)] == [
        "auto-draft.requested",
        "customer.created",
        "invoice.created",
        "deal.properties-written",
    ]
    assert customer_rows.exit_code == 0, customer_rows.stderr
    assert [(r["service"], r["action"]) for r in json.loads(customer_rows.stdout)] == [
        ("invoice-builder", "customer.created"),
        ("contact-sync", "contact.updated"),
    ]


@pytest.mark.integration
def test_a_requests_trail_and_an_invoice_asked_for_by_its_number(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["audit"].insert_many(
            [
                {**entry(1, "request", "req-9", "request.received"), "service": "invoice-builder"},
                {**entry(2, "request", "req-8", "request.received"), "service": "invoice-builder"},
                {
                    **entry(
                        3,
                        "invoice",
                        "r1:42",
                        "invoice.created",
                        request_id="req-9",
                        doc_number="1007",
                    ),
                    "service": "invoice-builder",
                },
            ]
        )
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()

    request = runner.invoke(app, ["audit", "request", "req-9", "--json"], env=env)
    by_number = runner.invoke(app, ["audit", "invoice", "r1", "1007"], env=env)
    elsewhere = runner.invoke(app, ["audit", "invoice", "r2", "1007"], env=env)

    assert request.exit_code == 0, request.stderr
    # The request's own entries and the invoice it drafted, none of another request's.
    assert [(r["subject"], r["action"]) for r in json.loads(request.stdout)] == [
        ("request:req-9", "request.received"),
        ("invoice:r1:42", "invoice.created"),
    ]
    assert by_number.exit_code == 0, by_number.stderr
    assert by_number.stdout.strip().endswith(
        "invoice number 1007 is QuickBooks invoice 42: dealbooks audit invoice r1 42"
    )
    assert elsewhere.stdout.strip() == "no audit entries"


@pytest.mark.integration
def test_a_long_trail_is_read_since_a_time_or_by_its_last_entries(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{namespace}_"
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[f"{prefix}invoice_builder"]["audit"].insert_many(
            [
                {**entry(1, "deal", "p1:77", "request.received"), "service": "invoice-builder"},
                {**entry(2, "deal", "p1:77", "invoice.created"), "service": "invoice-builder"},
            ]
        )
        client[f"{prefix}status_tracker"]["audit"].insert_many(
            [
                {**entry(n, "deal", "p1:77", f"stage.changed.{n}"), "service": "status-tracker"}
                for n in range(3, 8)
            ]
        )
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": mongo_uri}
    env["MONGODB_DATABASE_PREFIX"] = prefix
    runner = CliRunner()
    deal = ["audit", "deal", "p1", "77"]

    since = runner.invoke(app, [*deal, "--since", "2026-03-02T10:00:05", "--json"], env=env)
    last = runner.invoke(app, [*deal, "--limit", "2", "--json"], env=env)
    both = runner.invoke(app, [*deal, "--since", "2026-03-02T10:00:02", "--limit", "3"], env=env)
    later = runner.invoke(app, [*deal, "--since", "2026-03-03"], env=env)
    wrong = runner.invoke(app, [*deal, "--since", "yesterday"], env=env)
    zero = runner.invoke(app, [*deal, "--limit", "0"], env=env)

    assert since.exit_code == 0, since.stderr
    assert [r["event_id"] for r in json.loads(since.stdout)] == ["ev-5", "ev-6", "ev-7"]
    assert last.exit_code == 0, last.stderr
    assert [r["event_id"] for r in json.loads(last.stdout)] == ["ev-6", "ev-7"]
    assert both.exit_code == 0, both.stderr
    lines = both.stdout.splitlines()
    assert [line.split()[3] for line in lines[1:4]] == [
        "stage.changed.5",
        "stage.changed.6",
        "stage.changed.7",
    ]
    assert lines[4] == "(the last 3 of 6 entries)"
    assert later.stdout.strip() == "no audit entries since 2026-03-03T00:00:00+00:00"
    assert wrong.exit_code == 2 and "--since" in wrong.stderr
    assert zero.exit_code == 2 and "--limit" in zero.stderr
