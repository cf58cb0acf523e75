"""`dealbooks reconcile`, `sweep overdue` (status-tracker's operator routes over HTTP) and
`accounts list` (connector-auth's accounts on a real MongoDB-wire server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dealbooks_cli.main import app
from dealbooks_infra import testing
from pymongo import MongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner


def status_tracker_stand_in(calls: list[tuple[str, dict[str, str]]]) -> Starlette:
    """The two sweep routes as status-tracker answers them, for the operator's bearer only."""

    async def sweep(request: Request) -> Any:
        if request.headers.get("authorization") != "Bearer op-1":
            return JSONResponse({"error": "operator only"}, status_code=403)
        calls.append((request.url.path, dict(request.query_params)))
        if request.url.path == "/sweeps/overdue":
            return JSONResponse({"moved": 2, "failed_portals": []})
        return JSONResponse({"changes": 3, "failed_realms": ["realm-9"]})

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/sweeps/overdue", sweep, methods=["POST"]),
            Route("/sweeps/reconcile", sweep, methods=["POST"]),
            Route("/readyz", ready),
        ]
    )


def test_sweeps_call_status_tracker_with_the_operator_credential(tmp_path: Path) -> None:
    calls: list[tuple[str, dict[str, str]]] = []
    port = testing.free_port()
    with testing.ServedApp(status_tracker_stand_in(calls), port, "status-tracker"):
        env = {
            "DEALBOOKS_ROOT": str(tmp_path),
            "STATUS_TRACKER_URL": f"http://127.0.0.1:{port}",
            "DEALBOOKS_OPERATOR_CREDENTIALS": "op-1,op-2",
        }
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


@pytest.mark.integration
def test_accounts_are_listed_per_portal_with_their_state_and_never_their_tokens(
    mongo_uri: str, namespace: str, tmp_path: Path
) -> None:
    database = f"{namespace}_connector_auth"
    now = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    with MongoClient(mongo_uri, tz_aware=True) as client:
        client[database]["accounts"].insert_many(
            [
                {
                    "_id": f"portal-{p}:realm-{r}",
                    "portal_id": f"portal-{p}",
                    "realm_id": f"realm-{r}",
                    "status": status,
                    "environment": "sandbox",
                    "company": {"company_name": f"Company {r}", "country": "US"},
                    "tokens": {"refresh_token": "SECRET-REFRESH", "access_token": "SECRET-A"},
                    "outbox": [{"event": "SECRET-OUTBOX"}],
                    "connected_at": now,
                }
                for p, r, status in [(2, 1, "connected"), (1, 2, "reauth_required")]
            ]
        )
    env = {
        "DEALBOOKS_ROOT": str(tmp_path),
        "MONGODB_URI": mongo_uri,
        "CONNECTOR_AUTH_MONGODB_DATABASE": database,
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
