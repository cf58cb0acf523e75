"""How `dealbooks` tells an operator what went wrong with a service's answer, which services
are up (`status`), and the names it answers to besides its own (stand-ins served over HTTP)."""

from __future__ import annotations

import json
import re
from typing import Any

import typer
from dealbooks_cli.main import app
from dealbooks_infra import testing
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner

BACKFILL = "/portals/p1/accounts/r1/backfill"
WHERE = ["--kind", "contacts", "--portal", "p1", "--realm", "r1"]


def refusing_contact_sync() -> list[Route]:
    """contact-sync's backfill routes as the service refuses them: its JSON error, with a
    long run attached to one, and 401 without the operator's bearer."""

    async def status(request: Request) -> Any:
        if request.headers.get("authorization") != "Bearer op-1":
            body = {"error": "unauthenticated", "message": "A valid credential is required."}
            return JSONResponse(body, status_code=401)
        return JSONResponse({"error": "account not connected to this portal"}, status_code=404)

    async def resume(request: Request) -> Any:
        run = {"run_id": "run-1", "cursor": {"last_id": "x" * 400}}
        body = {"error": "no paused backfill of this account, or it is running", "run": run}
        return JSONResponse(body, status_code=409)

    return [
        Route(BACKFILL, status, methods=["GET"]),
        Route(BACKFILL + "/resume", resume, methods=["POST"]),
    ]


def one_line(result: Any) -> str:
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    return str(line)


def test_a_refusal_is_said_in_the_services_own_words_on_one_line(served: Any) -> None:
    with served(contact_sync=refusing_contact_sync()) as env:
        runner = CliRunner()
        missing = runner.invoke(app, ["backfill", "status", *WHERE, "--json"], env=env)
        busy = runner.invoke(app, ["backfill", "resume", *WHERE], env=env)
        wrong = runner.invoke(
            app,
            ["backfill", "status", *WHERE],
            env={**env, "DEALBOOKS_OPERATOR_CREDENTIALS": "nope"},
        )
    assert (missing.exit_code, missing.stdout) == (1, "")
    assert (
        one_line(missing)
        == "dealbooks: contact-sync answered 404: account not connected to this portal"
    )
    assert busy.exit_code == 1
    # The refusal's reason, not the JSON of the run it carries.
    assert one_line(busy) == (
        "dealbooks: contact-sync answered 409: no paused backfill of this account, or it is running"
    )
    assert wrong.exit_code == 1
    line = one_line(wrong)
    assert line.startswith("dealbooks: contact-sync answered 401: unauthenticated")
    assert "DEALBOOKS_OPERATOR_CREDENTIALS" in line


def test_an_answer_that_is_not_the_services_names_the_address_it_came_from(served: Any) -> None:
    """A URL pointing at another server (a proxy's login page, the console): one line naming
    the setting to check, not a traceback."""

    async def page(request: Request) -> Any:
        return HTMLResponse("<html><body>Sign in</body></html>")

    async def not_here(request: Request) -> Any:
        return PlainTextResponse("Not Found", status_code=404)

    routes = [Route("/sweeps/overdue", page, methods=["POST"])]
    with served(status_tracker=routes, contact_sync=[Route(BACKFILL, not_here)]) as env:
        runner = CliRunner()
        swept = runner.invoke(app, ["sweep", "overdue"], env=env)
        status = runner.invoke(app, ["backfill", "status", *WHERE], env=env)
    assert swept.exit_code == 1
    line = one_line(swept)
    assert line.startswith("dealbooks: status-tracker answered 200 with no JSON (text/html")
    assert "STATUS_TRACKER_URL" in line and env["STATUS_TRACKER_URL"] in line
    assert status.exit_code == 1
    line = one_line(status)
    assert line.startswith("dealbooks: contact-sync answered 404: Not Found")
    assert "CONTACT_SYNC_URL" in line


def test_status_says_which_service_is_down_or_not_ready(served: Any) -> None:
    async def not_ready(request: Request) -> Any:
        body = {"ready": False, "checks": {"started": True, "kafka": False, "mongodb": True}}
        return JSONResponse(body, status_code=503)

    # contact-sync behind a path prefix, whose probe says Kafka does not answer.
    sick = [Route("/sick/readyz", not_ready)]
    with served(status_tracker=[], contact_sync=sick) as env:
        ready = dict(env)
        env["CONTACT_SYNC_URL"] += "/sick"
        env["CONSOLE_URL"] = f"http://127.0.0.1:{testing.free_port()}"  # nothing listens
        runner = CliRunner()
        shown = runner.invoke(app, ["status", "--json"], env=env)
        table = runner.invoke(app, ["status"], env=env)
        only_ready = runner.invoke(app, ["status"], env=ready)
    assert shown.exit_code == 1
    rows = {r["service"]: r for r in json.loads(shown.stdout)}
    assert rows["status-tracker"]["state"] == "ready"
    assert (rows["contact-sync"]["state"], rows["contact-sync"]["detail"]) == (
        "not ready",
        "failing: kafka",
    )
    assert rows["console"]["state"] == "unreachable"
    # A service whose address is not given is said to be unknown, and fails nothing.
    assert (rows["reminders"]["state"], rows["reminders"]["detail"]) == (
        "unknown",
        "REMINDERS_URL is not set",
    )
    assert table.exit_code == 1
    assert [line.split()[:2] for line in table.stdout.splitlines()[1:4]] == [
        ["connector-auth", "unknown"],
        ["webhook-gateway", "unknown"],
        ["invoice-builder", "unknown"],
    ]
    assert "unreachable" in table.stdout
    assert only_ready.exit_code == 0, only_ready.output


def test_status_trackers_reconciliation_is_also_a_sweep(served: Any) -> None:
    calls: list[dict[str, str]] = []

    async def reconcile(request: Request) -> Any:
        calls.append(dict(request.query_params))
        return JSONResponse({"changes": 1, "failed_realms": {}})

    routes = [Route("/sweeps/reconcile", reconcile, methods=["POST"])]
    with served(status_tracker=routes) as env:
        done = CliRunner().invoke(app, ["sweep", "reconcile", "--realm", "r-1", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"changes": 1, "failed_realms": {}}
    assert calls == [{"realm_id": "r-1"}]


def test_the_top_level_help_names_what_every_group_is_for() -> None:
    shown = CliRunner().invoke(app, ["--help"])
    assert shown.exit_code == 0
    summary = " ".join(shown.stdout.split("Options:")[0].split())
    for words in ("status", "dead letters", "sweeps", "accounts", "replays", "audit trails",
                  "backfills", "approvals"):  # fmt: skip
        assert words in summary, words


def every_command(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    commands = getattr(group, "commands", None)
    if commands is None:
        return [path]
    return [c for name, sub in commands.items() for c in every_command(sub, (*path, name))]


def test_help_names_arguments_and_values_as_metavars_and_lists_choices() -> None:
    runner = CliRunner()
    commands = every_command(typer.main.get_command(app))
    assert ("replay", "record") in commands and ("backfill", "status") in commands
    for command in commands:
        shown = runner.invoke(app, [*command, "--help"])
        assert shown.exit_code == 0, command
        # No `{realm}` in a usage line, no `<str>` after an option or argument.
        assert not re.search(r"[{}]|<(str|int|float|bool)", shown.stdout), (command, shown.stdout)
    record = runner.invoke(app, ["replay", "record", "--help"]).stdout
    assert "replay record [OPTIONS] KIND REALM RECORD_ID\n" in record
    assert "KIND [invoice|customer|item]" in record
    dlq_replay = runner.invoke(app, ["dlq", "replay", "--help"]).stdout
    assert "[OPTIONS] [DLQ_TOPIC] [POSITIONS...]" in dlq_replay
    assert "--since TIME" in dlq_replay and "--wait SECONDS" in dlq_replay
    backfill = runner.invoke(app, ["backfill", "status", "--help"]).stdout
    assert "--kind [contacts|products]" in backfill and "--portal TEXT" in backfill
    listed = runner.invoke(app, ["approvals", "list", "--help"]).stdout
    assert "--status [pending|approved|rejected|all]" in listed


def test_a_kind_or_state_not_among_the_choices_is_refused_naming_them() -> None:
    runner = CliRunner()
    where = ["--portal", "p1", "--realm", "r1"]
    kind = runner.invoke(app, ["backfill", "status", "--kind", "deals", *where])
    record = runner.invoke(app, ["replay", "record", "deal", "r1", "7"])
    status = runner.invoke(app, ["approvals", "list", "--status", "maybe"])
    for refused, option in ((kind, "--kind"), (record, "KIND"), (status, "--status")):
        assert refused.exit_code == 2
        assert option in refused.stderr
    assert "contacts" in kind.stderr and "products" in kind.stderr
    assert "customer" in record.stderr
    assert "rejected" in status.stderr
