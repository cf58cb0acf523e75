"""`dealbooks reconcile`, `sweep overdue` (status-tracker's operator routes over HTTP) and
`accounts list` (connector-auth's accounts on a real MongoDB-wire server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dealbooks_cli.main import app
from pymongo import MongoClient
from pymongo.database import Database
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner


def status_tracker_stand_in(calls: list[tuple[str, dict[str, str]]]) -> list[Route]:
    """The two sweep routes as status-tracker answers them, for the operator's bearer only."""

    async def sweep(request: Request) -> Any:
        if request.headers.get("authorization") != "Bearer op-1":
            return JSONResponse({"error": "operator only"}, status_code=403)
        calls.append((request.url.path, dict(request.query_params)))
        if request.url.path == "/sweeps/overdue":
            return JSONResponse({"moved": 2, "failed_portals": []})
        return JSONResponse({"changes": 3, "failed_realms": ["realm-9"]})

    return [
        Route("/sweeps/overdue", sweep, methods=["POST"]),
        Route("/sweeps/reconcile", sweep, methods=["POST"]),
    ]


def test_sweeps_call_status_tracker_with_the_operator_credential(served: Any) -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    with served("op-1,op-2", status_tracker=status_tracker_stand_in(calls)) as env:
        runner = CliRunner()
        overdue = runner.invoke(app, ["sweep", "overdue", "--json"], env=env)
        assert overdue.exit_code == 0
        assert json.loads(overdue.stdout) == {"moved": 2, "failed_portals": []}

        one = runner.invoke(app, ["reconcile", "--realm", "realm-1"], env=env)
        # The stand-in reports a realm it could not reconcile: said, and a non-zero exit.
        assert one.exit_code == 1
        assert "changes: 3" in one.stdout and "realm-9" in one.stdout

        wrong = runner.invoke(
            app, ["sweep", "overdue"], env={**env, "DEALBOOKS_OPERATOR_CREDENTIALS": "nope"}
        )
        assert wrong.exit_code == 1
        assert wrong.stderr.startswith("dealbooks: status-tracker answered 403")
    assert calls == [("/sweeps/overdue", {}), ("/sweeps/reconcile", {"realm_id": "realm-1"})]


def test_the_reminders_pass_is_run_on_the_reminders_service(served: Any) -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    async def run_pass(request: Request) -> Any:
        if request.headers.get("authorization") != "Bearer op-1":
            return JSONResponse({"error": "operator only"}, status_code=403)
        calls.append((request.url.path, dict(request.query_params)))
        return JSONResponse({"changed": 4, "failed_realms": {}})

    with served(reminders=[Route("/sweeps/reminders", run_pass, methods=["POST"])]) as env:
        done = CliRunner().invoke(app, ["sweep", "reminders", "--realm", "r-7", "--json"], env=env)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"changed": 4, "failed_realms": {}}
    assert calls == [("/sweeps/reminders", {"realm_id": "r-7"})]


def test_a_sync_reconciliation_is_run_on_the_sync_service_of_its_kind(served: Any) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []

    def service(name: str) -> list[Route]:
        async def run_pass(request: Request) -> Any:
            if request.headers.get("authorization") != "Bearer op-1":
                return JSONResponse({"error": "operator only"}, status_code=403)
            calls.append((name, request.url.path, dict(request.query_params)))
            failed = {"r-9": "disconnected"} if name == "product-sync" else {}
            return JSONResponse({"changes": 2, "failed_realms": failed})

        return [Route("/sweeps/reconcile", run_pass, methods=["POST"])]

    with served(contact_sync=service("contact-sync"), product_sync=service("product-sync")) as env:
        runner = CliRunner()
        one = runner.invoke(app, ["sweep", "sync", "contacts", "--realm", "r-7", "--json"], env=env)
        every = runner.invoke(app, ["sweep", "sync", "products"], env=env)
    assert one.exit_code == 0, one.stderr
    assert json.loads(one.stdout) == {"changes": 2, "failed_realms": {}}
    assert every.exit_code == 1 and "r-9" in every.stdout  # a company it could not reconcile
    assert every.stdout.splitlines() == ["changes: 2", "failed_realms: r-9 (disconnected)"]
    assert calls == [
        ("contact-sync", "/sweeps/reconcile", {"realm_id": "r-7"}),
        ("product-sync", "/sweeps/reconcile", {}),
    ]


def stored_account(
    portal: str, realm: str, status: str, connected_at: datetime, company: str
) -> dict[str, Any]:
    """An account as connector-auth stores it, with the secrets (tokens, an outbox entry) the
    CLI must never print."""
    return {
        "_id": f"{portal}:{realm}",
        "portal_id": portal,
        "realm_id": realm,
        "status": status,
        "environment": "sandbox",
        "company": {"company_name": company, "country": "US"},
        "tokens": {"refresh_token": "SECRET-REFRESH", "access_token": "SECRET-A"},
        "outbox": [{"event": "SECRET-OUTBOX"}],
        "connected_at": connected_at,
    }


ServiceDb = Callable[[str], Database[Any]]


@pytest.fixture
def service_db(mongo_uri: str, namespace: str) -> Iterator[ServiceDb]:
    """`service_db("contact_sync")`: that service's database of this test (the test's namespace,
    then the service's name), on a client that reads datetimes as aware ones."""
    with MongoClient(mongo_uri, tz_aware=True) as client:
        yield lambda service: client[f"{namespace}_{service}"]


@pytest.mark.integration
def test_accounts_are_listed_per_portal_with_their_state_and_never_their_tokens(
    service_db: ServiceDb, mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    now = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    service_db("connector_auth")["accounts"].insert_many(
        [
            stored_account(f"portal-{p}", f"realm-{r}", status, now, company=f"Company {r}")
            for p, r, status in [(2, 1, "connected"), (1, 2, "reauth_required")]
        ]
    )
    env = {
        "DEALBOOKS_ROOT": str(tmp_path),
        "MONGODB_URI": mongo_uri,
        "CONNECTOR_AUTH_MONGODB_DATABASE": f"{namespace}_connector_auth",
    }
    runner = CliRunner()
    listed = runner.invoke(app, ["accounts", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["portal_id"], r["realm_id"], r["status"]) for r in rows] == [
        ("portal-1", "realm-2", "reauth_required"),
        ("portal-2", "realm-1", "connected"),
    ]
    assert rows[0]["company_name"] == "Company 2"
    assert rows[0]["connected_at"] == now.isoformat()
    table = runner.invoke(app, ["accounts", "list", "--portal", "portal-2"], env=env)
    assert table.exit_code == 0
    assert "realm-1" in table.stdout and "realm-2" not in table.stdout
    for output in (listed.stdout, table.stdout):
        assert "SECRET" not in output
    # Those that need a person to sign in to QuickBooks again, across portals.
    waiting = runner.invoke(app, ["accounts", "list", "--status", "reauth_required"], env=env)
    assert waiting.exit_code == 0, waiting.stderr
    assert "realm-2" in waiting.stdout and "realm-1" not in waiting.stdout
    wrong = runner.invoke(app, ["accounts", "list", "--status", "broken"], env=env)
    assert wrong.exit_code == 2 and "--status" in wrong.stderr


@pytest.mark.integration
def test_accounts_show_gives_each_company_its_state_last_syncs_and_errors(
    service_db: ServiceDb, mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    minutes = [t + timedelta(minutes=n) for n in range(10)]
    service_db("connector_auth")["accounts"].insert_many(
        [
            stored_account("p-1", realm, status, minutes[n], company=f"Company {realm}")
            for n, (realm, status) in enumerate([("r-1", "connected"), ("r-2", "reauth_required")])
        ]
        + [{"_id": "p-2:r-3", "portal_id": "p-2", "realm_id": "r-3", "status": "connected"}]
    )
    tracker = service_db("status_tracker")
    tracker["cdc_watermarks"].insert_one({"_id": "r-1", "since": minutes[3]})
    tracker["periodic_leases"].insert_many(
        [
            {"_id": "status-tracker:reconciliation", "job": "reconciliation",
             "acquired_at": minutes[4]},
            {"_id": "status-tracker:overdue-clock", "job": "overdue-clock",
             "acquired_at": minutes[9]},
        ]
    )  # fmt: skip
    contacts = service_db("contact_sync")
    contacts["cdc_watermarks"].insert_one({"_id": "r-1", "since": minutes[5]})
    contacts["periodic_leases"].insert_one(
        {
            "_id": "contact-sync:reconciliation",
            "job": "reconciliation",
            "acquired_at": minutes[6],
        }
    )
    contacts["mapping_sets"].insert_one(
        {"realm_id": "r-1", "object_type": "contacts", "settings": {"enabled": True}}
    )
    contacts["backfills"].insert_one(
        {
            "_id": "r-1",
            "run_id": "run-7",
            "state": "failed",
            "reason": None,
            "error": "QuickBooks answered 500",
            "read": 40,
            "created": 39,
            "started_at": minutes[1],
            "finished_at": minutes[2],
        }
    )
    service_db("mapping_registry")["mapping_status"].insert_many(
        [
            {
                "_id": "r-1:contacts:m-email",
                "realm_id": "r-1",
                "object_type": "contacts",
                "mapping_id": "m-email",
                "last_error": "email is not valid",
                "last_error_at": minutes[7],
            },
            {"_id": "r-1:contacts:m-name", "realm_id": "r-1", "object_type": "contacts",
             "mapping_id": "m-name", "last_synced_at": minutes[7]},
            {"_id": "r-3:products:m-sku", "realm_id": "r-3", "object_type": "products",
             "mapping_id": "m-sku", "last_error": "other company's", "last_error_at": t},
        ]
    )  # fmt: skip
    env = {
        "DEALBOOKS_ROOT": str(tmp_path),
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE_PREFIX": f"{namespace}_",
    }
    runner = CliRunner()

    shown = runner.invoke(app, ["accounts", "show", "p-1", "--json"], env=env)

    assert shown.exit_code == 0, shown.stderr
    one, two = json.loads(shown.stdout)
    assert (one["realm_id"], one["status"], one["company_name"]) == (
        "r-1",
        "connected",
        "Company r-1",
    )
    assert one["sync"]["invoices"] == {
        "service": "status-tracker",
        "watermark": minutes[3].isoformat(),
        "last_cdc_pass": minutes[4].isoformat(),
    }
    contacts_state = one["sync"]["contacts"]
    assert (contacts_state["enabled"], contacts_state["watermark"]) == (
        True,
        minutes[5].isoformat(),
    )
    assert contacts_state["last_cdc_pass"] == minutes[6].isoformat()
    assert contacts_state["last_backfill"]["run_id"] == "run-7"
    assert contacts_state["last_backfill"]["finished_at"] == minutes[2].isoformat()
    assert one["sync"]["products"] == {
        "service": "product-sync",
        "watermark": None,
        "last_cdc_pass": None,
        "enabled": False,
        "last_backfill": None,
    }
    assert [(e["source"], e["error"]) for e in one["errors"]] == [
        ("contact-sync backfill run-7", "QuickBooks answered 500"),
        ("mapping-registry contacts mapping m-email", "email is not valid"),
    ]
    assert (two["realm_id"], two["status"]) == ("r-2", "reauth_required")
    assert two["sync"]["invoices"]["watermark"] is None
    assert [e["error"] for e in two["errors"]] == ["company is reauth_required"]

    only = runner.invoke(app, ["accounts", "show", "p-1", "r-2", "--json"], env=env)
    assert [d["realm_id"] for d in json.loads(only.stdout)] == ["r-2"]
    text = runner.invoke(app, ["accounts", "show", "p-1", "r-1"], env=env)
    assert text.exit_code == 0, text.stderr
    assert "contact-sync backfill run-7: QuickBooks answered 500" in text.stdout
    assert minutes[5].isoformat() in text.stdout
    for output in (shown.stdout, text.stdout):
        assert "SECRET" not in output
    missing = runner.invoke(app, ["accounts", "show", "p-1", "r-3"], env=env)
    assert missing.exit_code == 1
    assert missing.stderr.startswith("dealbooks: no company r-3 in portal p-1")


@pytest.mark.integration
def test_a_pass_for_a_company_not_connected_says_so_and_exits_1(
    served: Any, service_db: ServiceDb, mongo_uri: str, namespace: str
) -> None:
    """A pass asked for one company that did nothing: a realm no portal has (mistyped) or one
    disconnected is said on stderr with exit 1; a connected one that had nothing to do is 0."""
    at = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    service_db("connector_auth")["accounts"].insert_many(
        [
            stored_account("p-1", "r-on", "connected", at, company="On"),
            stored_account("p-1", "r-off", "disconnected", at, company="Off"),
        ]
    )

    async def nothing(request: Request) -> Any:
        return JSONResponse({"changes": 0})

    routes = [Route("/sweeps/reconcile", nothing, methods=["POST"])]
    with served(status_tracker=routes, contact_sync=routes) as env:
        env |= {
            "MONGODB_URI": mongo_uri,
            "CONNECTOR_AUTH_MONGODB_DATABASE": f"{namespace}_connector_auth",
        }
        runner = CliRunner()
        unknown = runner.invoke(app, ["reconcile", "--realm", "r-typo"], env=env)
        unknown_sync = runner.invoke(
            app, ["sweep", "sync", "contacts", "--realm", "r-typo", "--json"], env=env
        )
        off = runner.invoke(app, ["sweep", "reconcile", "--realm", "r-off"], env=env)
        on = runner.invoke(app, ["reconcile", "--realm", "r-on"], env=env)
        every = runner.invoke(app, ["reconcile"], env=env)
    assert unknown.exit_code == 1
    assert unknown.stdout == "changes: 0\n"
    assert unknown.stderr.startswith("dealbooks: no company r-typo is connected to dealbooks")
    assert "dealbooks accounts list" in unknown.stderr
    assert unknown_sync.exit_code == 1
    assert json.loads(unknown_sync.stdout) == {"changes": 0}
    assert "no company r-typo" in unknown_sync.stderr
    assert off.exit_code == 1
    assert "company r-off is not connected: disconnected in portal p-1" in off.stderr
    assert (on.exit_code, on.stderr) == (0, "")
    assert (every.exit_code, every.stderr) == (0, "")
