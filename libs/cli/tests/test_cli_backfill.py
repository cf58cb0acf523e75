"""`dealbooks backfill plan|start|status|resume|cancel` against contact-sync's backfill routes
(a stand-in answering as the service does, for the operator's bearer only)."""

from __future__ import annotations

import json
from typing import Any

from dealbooks_cli.main import app
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

BASE = "/portals/p1/accounts/r1/backfill"
RUN = {
    "run_id": "run-1",
    "state": "paused",
    "reason": "cap reached",
    "read": 100,
    "created": 99,
    "updated": 0,
    "unchanged": 0,
    "failed": 1,
    "calls": {"qbo": 2, "crm": 1},
    "caps": {"qbo": 10, "crm": 1},
    "cursor": {"start": 101, "last_id": "100"},
}


def contact_sync_stand_in(calls: list[tuple[str, str, dict[str, str]]]) -> list[Route]:
    async def route(request: Request) -> Any:
        if request.headers.get("authorization") != "Bearer op-1":
            return JSONResponse({"error": "operator only"}, status_code=401)
        calls.append((request.method, request.url.path, dict(request.query_params)))
        if request.url.path.endswith("/cancel"):
            return JSONResponse({"error": "no active backfill of this account"}, status_code=409)
        if request.query_params.get("dry_run") == "true":
            plan = {"state": "planned", "records": 250, "within_caps": True}
            return JSONResponse({**plan, "caps": {"qbo": 10, "crm": 20}})
        state = "running" if request.url.path.endswith("/resume") else RUN["state"]
        return JSONResponse({**RUN, "state": state})

    return [
        Route(BASE, route, methods=["GET", "POST"]),
        Route(BASE + "/resume", route, methods=["POST"]),
        Route(BASE + "/cancel", route, methods=["POST"]),
    ]


def test_backfill_commands_call_the_kinds_service_and_print_json(served: Any) -> None:
    calls: list[tuple[str, str, dict[str, str]]] = []
    where = ["--kind", "contacts", "--portal", "p1", "--realm", "r1"]
    with served(contact_sync=contact_sync_stand_in(calls)) as env:
        runner = CliRunner()
        plan = runner.invoke(app, ["backfill", "plan", *where, "--json"], env=env)
        assert plan.exit_code == 0, plan.output
        assert json.loads(plan.stdout)["records"] == 250
        shown = runner.invoke(app, ["backfill", "plan", *where], env=env)
        assert shown.exit_code == 0, shown.output
        assert "caps            qbo 10, crm 20" in shown.stdout.splitlines()

        start = runner.invoke(
            app, ["backfill", "start", *where, "--max-crm-calls", "1", "--json"], env=env
        )
        assert start.exit_code == 0, start.output
        assert json.loads(start.stdout)["reason"] == "cap reached"

        status = runner.invoke(app, ["backfill", "status", *where], env=env)
        assert status.exit_code == 0
        assert "paused" in status.stdout and "crm calls  1 of 1" in status.stdout

        resume = runner.invoke(
            app, ["backfill", "resume", *where, "--max-crm-calls", "5", "--json"], env=env
        )
        assert json.loads(resume.stdout)["state"] == "running"

        cancel = runner.invoke(app, ["backfill", "cancel", *where], env=env)
        assert cancel.exit_code == 1
        assert cancel.stderr.startswith("dealbooks: contact-sync answered 409")

        wrong = runner.invoke(app, ["backfill", "status", "--kind", "deals", *where[2:]], env=env)
        assert wrong.exit_code == 2
    assert calls == [
        ("POST", BASE, {"dry_run": "true"}),
        ("POST", BASE, {"dry_run": "true"}),
        ("POST", BASE, {"max_crm_calls": "1"}),
        ("GET", BASE, {}),
        ("POST", BASE + "/resume", {"max_crm_calls": "5"}),
        ("POST", BASE + "/cancel", {}),
    ]
