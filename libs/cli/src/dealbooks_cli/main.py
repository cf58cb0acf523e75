"""`dealbooks`: the operator's command line against a running stack (see libs/cli/README.md)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from dealbooks_kit import configure_logging
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from dealbooks_cli import account_detail, backfills, operations, rerun
from dealbooks_cli import approvals as approval_list
from dealbooks_cli import audit as audit_trail
from dealbooks_cli import lag as consumer_lag
from dealbooks_cli.deadletters import DeadLetter, DeadLetterTopics, Filters, dead_letter_topics
from dealbooks_cli.helptext import Typer
from dealbooks_cli.output import emit_json, table
from dealbooks_cli.replay import DEFAULT_RETENTION, Replays, operator_db, replay, replay_key
from dealbooks_cli.stack import CliError, Stack

T = TypeVar("T")
AUTH_FAILED = 18  # MongoDB's AuthenticationFailed

app = Typer(
    help="Operate a running dealbooks: service status, dead letters, sweeps, connected "
    "accounts, replays, audit trails, backfills, approvals. Addresses come from the "
    "environment, else from .local/endpoints.env written by `make up`.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: docstring paragraphs are rewrapped to the terminal.
    rich_markup_mode=None,
)
dlq = Typer(help="Dead letters: list, show, replay.", no_args_is_help=True)
sweep = Typer(
    help="Passes run now: status-tracker's overdue clock and reconciliation (also "
    "`dealbooks reconcile`), the reminder workflows, a sync service's reconciliation.",
    no_args_is_help=True,
)
accounts = Typer(help="Connected QuickBooks companies.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(sweep, name="sweep")
app.add_typer(accounts, name="accounts")
replays = Typer(help="Run QuickBooks records through their consumers again.", no_args_is_help=True)
app.add_typer(replays, name="replay")
audit = Typer(
    help="Audit trails: what happened to an invoice, a deal, a customer or an item, and why.",
    no_args_is_help=True,
)
app.add_typer(audit, name="audit")
backfill = Typer(
    help="Backfills of QuickBooks customers (contacts) or items (products) into the CRM: one "
    "run per account at a time, capped in QuickBooks and CRM calls.",
    no_args_is_help=True,
)
app.add_typer(backfill, name="backfill")
approvals = Typer(
    help="Invoice approvals of QuickBooks Online Advanced companies (invoice-builder's).",
    no_args_is_help=True,
)
app.add_typer(approvals, name="approvals")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Topic = Annotated[
    str | None,
    typer.Option(help="Event type, topic or dead-letter topic, e.g. invoice.drafted."),
]
Consumer = Annotated[
    str | None, typer.Option(help="The consumer that gave up, <service>.<consumer>.")
]
Portal = Annotated[str | None, typer.Option(help="CRM portal id of the event's tenant.")]
Realm = Annotated[str | None, typer.Option(help="QuickBooks realm id of the event's tenant.")]
Since = Annotated[
    str | None,
    typer.Option(metavar="TIME", help="Only dead letters written at or after this ISO 8601 time."),
]
EventId = Annotated[str | None, typer.Option("--event-id", help="The dead-lettered event's id.")]
NotReplayed = Annotated[
    bool,
    typer.Option(
        "--not-replayed",
        help="Only dead letters never replayed (a replay that failed again left a new one).",
    ),
]
RealmArg = Annotated[str, typer.Argument(help="QuickBooks realm id.")]
PortalArg = Annotated[str, typer.Argument(help="CRM portal id.")]

LIST_COLUMNS = [
    ("dlq_topic", "DLQ TOPIC"),
    ("position", "P:OFFSET"),
    ("failed_at", "FAILED AT"),
    ("consumer", "CONSUMER"),
    ("portal_id", "PORTAL"),
    ("realm_id", "REALM"),
    ("event_id", "EVENT"),
    ("replayed", "REPLAYED"),
    ("reason", "REASON"),
]


def _run(make: Callable[[Stack], Coroutine[Any, Any, T]]) -> T:
    """Run one command against the stack; a CliError ends it with one line and exit 1."""
    # Library lines go to stderr, and only warnings: stdout is the command's answer.
    configure_logging("dealbooks-operator", "WARNING", json=False)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(make(Stack.load()))
    except CliError as exc:
        typer.echo(f"dealbooks: {exc}", err=True)
        raise typer.Exit(1) from None


def _read(query: Callable[[Stack, AsyncMongoClient[dict[str, Any]]], Coroutine[Any, Any, T]]) -> T:
    """Run one command that reads MongoDB: `query` gets the stack and a client it reached."""

    async def go(stack: Stack) -> T:
        async with _mongo(stack) as client:
            return await query(stack, client)

    return _run(go)


@asynccontextmanager
async def _mongo(stack: Stack) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = stack.mongo()
    try:
        where = re.sub(r"//[^@/]*@", "//", stack.mongodb_uri)
        try:
            await client.admin.command("ping")
        except OperationFailure as exc:
            # Reached, and refused: say so, not that it could not be reached.
            said = str((exc.details or {}).get("errmsg") or exc).splitlines()[0]
            whom = "the credentials in MONGODB_URI" if exc.code == AUTH_FAILED else "the ping"
            raise CliError(f"MongoDB at {where} refused {whom}: {said}") from exc
        except PyMongoError as exc:
            raise CliError(f"cannot reach MongoDB at {where}: {type(exc).__name__}") from exc
        yield client
    finally:
        await client.close()


def _filters(
    topic: str | None,
    consumer: str | None,
    portal: str | None,
    realm: str | None,
    since: str | None,
    event_id: str | None,
) -> Filters:
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(
                f"{since!r} is not an ISO 8601 time", param_hint="--since"
            ) from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return Filters(topic, consumer, portal, realm, when, event_id)


def _position(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise typer.BadParameter(f"{text!r} is not <partition>:<offset>, e.g. 0:42")
    return int(partition), int(offset)


async def _with_replays(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], letters: list[DeadLetter]
) -> list[dict[str, Any]]:
    replays = await Replays(operator_db(stack, client)).of([replay_key(d) for d in letters])
    # A replay recorded before its new dead letter's position was kept: found among these.
    by_event = {(d.consumer, d.event_id): d for d in letters}
    rows = []
    for letter in letters:
        done = replays.get(replay_key(letter))
        replayed = None
        if done:
            replayed = {"new_event_id": done.get("new_event_id"), "outcome": done.get("outcome")}
            again = done.get("dead_letter")
            left = by_event.get((letter.consumer, str(done.get("new_event_id"))))
            if again is None and done.get("outcome") == "dead_lettered" and left is not None:
                again = {k: getattr(left, k) for k in ("dlq_topic", "partition", "offset")}
            if again:
                replayed["dead_letter"] = again
        rows.append({**letter.summary(), "replayed": replayed})
    return rows


def _replayed(replayed: dict[str, Any] | None, dlq_topic: str) -> str:
    """A replay as a list reads it: its outcome, and where a replay that failed again left its
    new dead letter (its position, with its topic when that is another)."""
    if not replayed:
        return ""
    again = replayed.get("dead_letter")
    if not again:
        return str(replayed["outcome"])
    topic = "" if again.get("dlq_topic") in (None, dlq_topic) else f"{again['dlq_topic']} "
    return f"{replayed['outcome']}, again at {topic}{again['partition']}:{again['offset']}"


@dlq.command("list")
def dlq_list(
    topic: Topic = None,
    consumer: Consumer = None,
    portal: Portal = None,
    realm: Realm = None,
    since: Since = None,
    event_id: EventId = None,
    not_replayed: NotReplayed = False,
    json: Json = False,
) -> None:
    """List dead letters, oldest first per topic and partition, with any replay of each."""
    filters = _filters(topic, consumer, portal, realm, since, event_id)

    async def go(stack: Stack) -> list[dict[str, Any]]:
        async with dead_letter_topics(stack) as topics, _mongo(stack) as client:
            return await _with_replays(stack, client, await topics.matching(filters))

    rows = [r for r in _run(go) if not (not_replayed and r["replayed"])]
    if json:
        emit_json(rows)
        return
    shown = [
        {
            **r,
            "position": f"{r['partition']}:{r['offset']}",
            "replayed": _replayed(r["replayed"], r["dlq_topic"]),
        }
        for r in rows
    ]
    typer.echo(table(shown, LIST_COLUMNS) if rows else "no dead letters")


@dlq.command("show")
def dlq_show(
    dlq_topic: Annotated[
        str,
        typer.Argument(help="The dead-letter topic (invoice.drafted.v1.dlq) or its event type."),
    ],
    position: Annotated[str, typer.Argument(help="<partition>:<offset>")],
    json: Json = False,
) -> None:
    """One dead letter: the original envelope, the error and the consumer that gave up."""
    partition, offset = _position(position)

    async def go(stack: Stack) -> dict[str, Any]:
        async with dead_letter_topics(stack) as topics, _mongo(stack) as client:
            letter = await topics.get(dlq_topic, partition, offset)
            [row] = await _with_replays(stack, client, [letter])
            return {**row, **letter.detail(), "replayed": row["replayed"]}

    detail = _run(go)
    if json:
        emit_json(detail)
        return
    for key in ("dlq_topic", "partition", "offset", "failed_at", "consumer", "error_type"):
        typer.echo(f"{key:<12} {detail[key]}")
    typer.echo(f"{'attempts':<12} {detail['attempts']}")
    original = detail["original"]
    typer.echo(f"{'original':<12} {original['topic']} {original['partition']}:{original['offset']}")
    replayed = detail["replayed"]
    if replayed:
        shown = _replayed(replayed, detail["dlq_topic"])
        typer.echo(f"{'replayed':<12} as {replayed['new_event_id']} ({shown})")
    typer.echo(f"{'reason':<12} {detail['reason']}\n")
    if detail["envelope"] is not None:
        emit_json(detail["envelope"])
    else:
        typer.echo(detail["raw"])


@dlq.command("replay")
def dlq_replay(
    dlq_topic: Annotated[
        str | None,
        typer.Argument(help="The dead-letter topic of the positions, or its event type."),
    ] = None,
    positions: Annotated[
        list[str] | None, typer.Argument(help="<partition>:<offset> of each dead letter.")
    ] = None,
    topic: Topic = None,
    consumer: Consumer = None,
    portal: Portal = None,
    realm: Realm = None,
    since: Since = None,
    event_id: EventId = None,
    not_replayed: NotReplayed = False,
    again: Annotated[
        bool, typer.Option("--again", help="Replay even if it was replayed before.")
    ] = False,
    wait: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for each replay's outcome.")
    ] = 30.0,
    retention_days: Annotated[
        float,
        typer.Option(
            "--retention-days",
            min=0.0,
            metavar="DAYS",
            envvar="DEALBOOKS_DLQ_REPLAY_RETENTION_DAYS",
            help="Keep replay records this many days; older ones are deleted as this one is "
            "recorded.",
        ),
    ] = DEFAULT_RETENTION.days,
    json: Json = False,
) -> None:
    """Run dead-lettered events again: by position, or every dead letter the filters match.

    Each is published on its original topic as a copy of its envelope with a new id, and
    causation_id set to the dead-lettered event's id (so no consumer skips it as a
    duplicate, and the link is kept). A replay-for header names the consumer that gave up;
    the kit's consumers hand the copy to that consumer only, so the consumers of the topic
    that handled the original do not see it. Each replay is recorded in
    dealbooks_operator.dlq_replays: the same dead letter (or another dead letter of the
    same event for the same consumer) is not replayed twice without --again, for the
    retention (--retention-days, 30; records past it are deleted). Then it waits
    for the consumer's processed record or a new dead letter of the copy, and says which.
    With --not-replayed, dead letters replayed before are left out instead of refused.
    Exits 1 if any was refused, failed again or gave no outcome in time.
    """
    if dlq_topic is not None and not positions:
        raise typer.BadParameter("give <partition>:<offset> after the dead-letter topic")
    coordinates = [_position(p) for p in positions or []]
    filters = _filters(topic, consumer, portal, realm, since, event_id)
    if dlq_topic is None and filters == Filters():
        raise typer.BadParameter("name dead letters by position or by at least one filter")

    async def go(stack: Stack) -> list[dict[str, Any]]:
        async with dead_letter_topics(stack) as topics, _mongo(stack) as client:
            letters = await _chosen(topics, dlq_topic, coordinates, filters)
            if not_replayed:
                letters = await _not_replayed(stack, client, letters)
            if not letters:
                raise CliError("no dead letter matches")
            retention = timedelta(days=retention_days)
            return await _replay_each(
                letters,
                lambda letter: replay(
                    stack, client, topics, letter, again=again, wait=wait, retention=retention
                ),
                quiet=json,
            )

    results = _run(go)
    if json:
        emit_json(results)
    else:
        for r in results:
            where = f"{r['dlq_topic']} {r['partition']}:{r['offset']}"
            typer.echo(f"{where}: {r['outcome']}: {r['detail']}")
    if any(r["outcome"] not in {"ok", "settled"} for r in results):
        raise typer.Exit(1)


async def _not_replayed(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], letters: list[DeadLetter]
) -> list[DeadLetter]:
    """The dead letters that were never replayed."""
    done_before = await Replays(operator_db(stack, client)).of([replay_key(d) for d in letters])
    return [d for d in letters if replay_key(d) not in done_before]


async def _replay_each(
    letters: list[DeadLetter],
    attempt: Callable[[DeadLetter], Coroutine[Any, Any, dict[str, Any]]],
    *,
    quiet: bool,
) -> list[dict[str, Any]]:
    """Each dead letter's replay in turn, with a progress line on stderr (the results go on
    stdout) unless `quiet`."""
    done: list[dict[str, Any]] = []
    for n, letter in enumerate(letters, start=1):
        if len(letters) > 1 and not quiet:
            typer.echo(f"\rreplaying {n}/{len(letters)}", err=True, nl=False)
        done.append(await _refused_or(letter, attempt(letter)))
    if len(letters) > 1 and not quiet:
        typer.echo("", err=True)
    return done


async def _chosen(
    topics: DeadLetterTopics,
    dlq_topic: str | None,
    coordinates: list[tuple[int, int]],
    filters: Filters,
) -> list[DeadLetter]:
    if dlq_topic is None:
        return await topics.matching(filters)
    letters = [await topics.get(dlq_topic, p, o) for p, o in coordinates]
    return [d for d in letters if filters.matches(d)]


async def _refused_or(
    letter: DeadLetter, attempt: Coroutine[Any, Any, dict[str, Any]]
) -> dict[str, Any]:
    """The replay's result, or the letter marked refused with the reason the replay gave."""
    try:
        return await attempt
    except CliError as exc:
        summary = letter.summary()
        return {
            **{k: summary[k] for k in ("dlq_topic", "partition", "offset", "consumer")},
            "event_id": summary["event_id"],
            "outcome": "refused",
            "detail": str(exc),
        }


class RecordKind(StrEnum):
    invoice = "invoice"
    customer = "customer"
    item = "item"


@replays.command("record")
def replay_record(
    kind: Annotated[
        RecordKind,
        typer.Argument(help="invoice (status-tracker), customer (contact-sync) or item."),
    ],
    realm: RealmArg,
    record_id: Annotated[str, typer.Argument(help="The record's QuickBooks id.")],
    portal: Annotated[
        str | None,
        typer.Option(help="CRM portal id, when the company is connected to more than one."),
    ] = None,
    wait: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for the outcome.")
    ] = 30.0,
    json: Json = False,
) -> None:
    """Run one record through its consumer again: publishes a qbo.entity-changed (Update,
    stamped now) for it under the company's tenant, as a webhook would, so status-tracker
    (invoices), contact-sync (customers) or product-sync (items) reads it from QuickBooks
    again and applies it (idempotently: a record already right stays as it is). Then waits
    for the consumer's outcome: the tracked invoice, or the contact.synced/product.synced
    event it caused. Exits 1 if the consumer failed or gave no outcome in time."""

    async def go(stack: Stack) -> dict[str, Any]:
        async with dead_letter_topics(stack) as topics, _mongo(stack) as client:
            return await rerun.rerun(
                stack, client, topics, kind, realm, record_id, portal=portal, wait=wait
            )

    result = _run(go)
    if json:
        emit_json(result)
    else:
        typer.echo(f"{kind} {realm} {record_id}: {result['outcome']}: {result['detail']}")
        for key in ("tracked_invoice", "synced"):
            if result.get(key):
                shown = ", ".join(f"{k}={v}" for k, v in result[key].items() if v is not None)
                typer.echo(f"{key}: {shown}")
        if kind == "invoice" and "tracked_invoice" in result and not result["tracked_invoice"]:
            typer.echo("tracked_invoice: none (status-tracker follows no such invoice)")
    if result["outcome"] not in rerun.SETTLED:
        raise typer.Exit(1)


@app.command("status", short_help="Whether each service answers and is ready.")
def status(json: Json = False) -> None:
    """Whether each service answers and is ready (its /readyz: its Kafka and MongoDB answer).
    Exits 1 when one that has an address is unreachable or not ready."""
    rows = _run(operations.readiness)
    if json:
        emit_json(rows)
    else:
        columns = [("service", "SERVICE"), ("state", "STATE"), ("url", "URL"), ("detail", "")]
        typer.echo(table(rows, columns))
    if any(r["state"] in {"unreachable", "not ready"} for r in rows):
        raise typer.Exit(1)


@app.command("lag", short_help="How far each consumer group is behind its topics.")
def lag(
    consumer: Annotated[
        str | None,
        typer.Option(help="Only this consumer group, <service>.<consumer> (as dlq names it)."),
    ] = None,
    json: Json = False,
) -> None:
    """How far each consumer group is behind, per topic it reads: the records not yet
    committed, and on how many partitions. KEDA scales a service on this (a replica per 100,
    at most one per partition with lag; deploy/k8s/README.md); lag that stays on one
    partition is one tenant's records waiting, which more replicas would not drain. A group
    that has committed nothing yet is not listed."""
    rows = _run(lambda stack: consumer_lag.consumer_lag(stack, consumer))
    if json:
        emit_json(rows)
        return
    for r in rows:
        r["behind"] = f"{r['partitions_behind']}/{r['partitions']}"
    columns = [
        ("group", "GROUP"),
        ("topic", "TOPIC"),
        ("lag", "LAG"),
        ("behind", "PARTITIONS BEHIND"),
    ]
    typer.echo(table(rows, columns) if rows else "no consumer groups")


@app.command("reconcile", short_help="Run status-tracker's reconciliation pass now.")
@sweep.command("reconcile", short_help="Run status-tracker's reconciliation pass now.")
def reconcile(
    realm: Annotated[
        str | None, typer.Option(help="Only this QuickBooks realm (default: every one).")
    ] = None,
    json: Json = False,
) -> None:
    """Run status-tracker's reconciliation pass now (POST /sweeps/reconcile). Exits 1 when
    the pass reports realms it could not reconcile."""
    params = {"realm_id": realm} if realm else None
    answer = _run(lambda stack: operations.sweep(stack, "/sweeps/reconcile", params))
    _sweep_answer(answer, json, realm=realm)


@sweep.command("overdue")
def sweep_overdue(json: Json = False) -> None:
    """Run status-tracker's overdue sweep now (POST /sweeps/overdue). Exits 1 when the sweep
    reports portals it could not sweep."""
    _sweep_answer(_run(lambda stack: operations.sweep(stack, "/sweeps/overdue")), json)


@sweep.command("reminders")
def sweep_reminders(
    realm: Annotated[
        str | None, typer.Option("--realm", help="Only this QuickBooks company.")
    ] = None,
    json: Json = False,
) -> None:
    """Run the reminder workflows' pass now (reminders: POST /sweeps/reminders), for QuickBooks
    Online Advanced companies with a workflow on. Exits 1 when companies failed."""
    params = {"realm_id": realm} if realm else None
    answer = _run(
        lambda stack: operations.sweep(stack, "/sweeps/reminders", params, service="reminders")
    )
    _sweep_answer(answer, json, realm=realm)


class SyncKind(StrEnum):
    contacts = "contacts"
    products = "products"


@sweep.command("sync")
def sweep_sync(
    kind: Annotated[SyncKind, typer.Argument(help="contacts (contact-sync) or products.")],
    realm: Annotated[
        str | None, typer.Option("--realm", help="Only this QuickBooks company.")
    ] = None,
    json: Json = False,
) -> None:
    """Run a sync service's reconciliation pass now (POST /sweeps/reconcile): every change of
    QuickBooks customers or items since its watermark goes through, an inactivation whose
    webhook was lost included (a backfill sees active records only). Exits 1 when companies
    failed."""
    params = {"realm_id": realm} if realm else None
    service = {SyncKind.contacts: "contact-sync", SyncKind.products: "product-sync"}[kind]
    answer = _run(
        lambda stack: operations.sweep(stack, "/sweeps/reconcile", params, service=service)
    )
    _sweep_answer(answer, json, realm=realm)


def _plain(value: Any) -> str:
    """A value of a service's answer as a person reads it: a mapping as `key (value)` pairs, a
    list by its items, an empty one as none."""
    if isinstance(value, dict):
        return ", ".join(f"{k} ({_plain(v)})" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "none"
    return str(value)


def _sweep_answer(answer: dict[str, Any], as_json: bool, *, realm: str | None = None) -> None:
    """Print a sweep's answer; exit 1 when it failed somewhere, or when it was asked for one
    company, did nothing, and that company is not connected (a mistyped realm included)."""
    if as_json:
        emit_json(answer)
    else:
        for key, value in answer.items():
            typer.echo(f"{key}: {_plain(value)}")
    if any(value for key, value in answer.items() if key.startswith("failed")):
        raise typer.Exit(1)
    did_nothing = not any(v for v in answer.values() if isinstance(v, int))
    if realm and did_nothing:
        said = _not_connected(realm)
        if said:
            typer.echo(f"dealbooks: {said}", err=True)
            raise typer.Exit(1)


def _not_connected(realm: str) -> str | None:
    """Why `realm` is not a connected company, from connector-auth's accounts; None when it
    is connected, or the accounts cannot be read (nothing is said then)."""
    try:
        found = _run_quietly(
            lambda stack: _reading(stack, lambda c: operations.realm_states(stack, c, realm))
        )
    except CliError:
        return None
    if "connected" in found.values():
        return None
    listed = "`dealbooks accounts list` shows every company"
    if not found:
        return f"no company {realm} is connected to dealbooks: no portal has it ({listed})"
    states = ", ".join(f"{state} in portal {portal}" for portal, state in sorted(found.items()))
    return f"company {realm} is not connected: {states} ({listed})"


async def _reading(
    stack: Stack, query: Callable[[AsyncMongoClient[dict[str, Any]]], Coroutine[Any, Any, T]]
) -> T:
    async with _mongo(stack) as client:
        return await query(client)


@accounts.command("list")
def accounts_list(
    portal: Portal = None,
    status: Annotated[
        operations.AccountState | None, typer.Option(help="Only accounts in this state.")
    ] = None,
    json: Json = False,
) -> None:
    """Each portal's QuickBooks companies and their state (never their tokens)."""
    rows = _read(
        lambda stack, client: operations.accounts(stack, client, portal, status and status.value)
    )
    if json:
        emit_json(rows)
        return
    columns = [
        ("portal_id", "PORTAL"),
        ("realm_id", "REALM"),
        ("status", "STATUS"),
        ("company_name", "COMPANY"),
        ("country", "COUNTRY"),
        ("home_currency", "CURRENCY"),
        ("connected_at", "CONNECTED AT"),
    ]
    typer.echo(table(rows, columns) if rows else "no accounts")


@accounts.command("show")
def accounts_show(
    portal: PortalArg,
    realm: Annotated[str | None, typer.Argument(help="Only this QuickBooks realm.")] = None,
    json: Json = False,
) -> None:
    """One portal's companies: state, where each healing pass stands (reconciliation
    watermark) and when it last ran, the last backfill runs, and the errors recorded.
    Exits 1 when the portal has no such company."""
    details = _read(lambda stack, client: account_detail.show(stack, client, portal, realm))
    if json:
        emit_json(details)
        return
    typer.echo("\n\n".join(_account_text(d) for d in details))


def _account_text(detail: dict[str, Any]) -> str:
    lines = [f"{detail['realm_id']}  {detail['company_name']}  ({detail['status']})"]
    for key in ("environment", "country", "home_currency", "connected_at", "last_refresh_at"):
        lines.append(f"  {key:<16} {detail.get(key) or ''}")
    rows = []
    for kind, state in detail["sync"].items():
        run = state.get("last_backfill") or {}
        when = run.get("finished_at") or run.get("started_at")
        backfill = f"{run['state']} {when}" if run else ""
        enabled = state.get("enabled")
        rows.append(
            {
                "kind": kind,
                "service": state["service"],
                "enabled": "" if enabled is None else ("on" if enabled else "off"),
                "watermark": state["watermark"],
                "last_cdc_pass": state["last_cdc_pass"],
                "backfill": backfill,
            }
        )
    columns = [
        ("kind", "SYNC"),
        ("service", "SERVICE"),
        ("enabled", "ON"),
        ("watermark", "WATERMARK"),
        ("last_cdc_pass", "LAST CDC PASS"),
        ("backfill", "LAST BACKFILL"),
    ]
    lines += ["  " + line for line in table(rows, columns).splitlines()]
    lines.append("  errors" if detail["errors"] else "  no errors")
    lines += [f"    {e['at'] or ''}  {e['source']}: {e['error']}" for e in detail["errors"]]
    return "\n".join(lines)


InvoiceId = Annotated[str, typer.Argument(help="QuickBooks invoice id.")]
CustomerId = Annotated[str, typer.Argument(help="QuickBooks customer id.")]
ItemId = Annotated[str, typer.Argument(help="QuickBooks item id.")]
DealId = Annotated[str, typer.Argument(help="CRM deal id.")]


AuditSince = Annotated[
    str | None,
    typer.Option(metavar="TIME", help="Only entries written at or after this ISO 8601 time."),
]
AuditLimit = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="Only the last N entries (still oldest first)."),
]


@audit.command("invoice")
def audit_invoice(
    realm: RealmArg,
    invoice_id: InvoiceId,
    since: AuditSince = None,
    limit: AuditLimit = None,
    json: Json = False,
) -> None:
    """An invoice's life, oldest first: each change, the event that caused it and the external
    call it made, from invoice-builder's and status-tracker's audit trails."""
    _audit("invoice", f"{realm}:{invoice_id}", json, since, limit)


@audit.command("customer")
def audit_customer(
    realm: RealmArg,
    customer_id: CustomerId,
    since: AuditSince = None,
    limit: AuditLimit = None,
    json: Json = False,
) -> None:
    """A customer's syncs to its CRM contact (contact-sync), and where invoice-builder created
    or matched it for a request."""
    _audit("customer", f"{realm}:{customer_id}", json, since, limit)


@audit.command("item")
def audit_item(
    realm: RealmArg,
    item_id: ItemId,
    since: AuditSince = None,
    limit: AuditLimit = None,
    json: Json = False,
) -> None:
    """An item's syncs to its CRM product (product-sync)."""
    _audit("item", f"{realm}:{item_id}", json, since, limit)


@audit.command("request")
def audit_request(
    request_id: Annotated[str, typer.Argument(help="The invoice request's id.")],
    since: AuditSince = None,
    limit: AuditLimit = None,
    json: Json = False,
) -> None:
    """An invoice request's life in invoice-builder: received, its customer found or created,
    the invoice it drafted (`audit invoice` follows that invoice on), or why it failed."""
    _audit("request", request_id, json, since, limit)


@audit.command("deal")
def audit_deal(
    portal: PortalArg,
    deal_id: DealId,
    since: AuditSince = None,
    limit: AuditLimit = None,
    json: Json = False,
) -> None:
    """A deal's requests, auto-drafts, invoices, property writes and payments on its
    timeline, oldest first."""
    _audit("deal", f"{portal}:{deal_id}", json, since, limit)


def _audit(
    kind: str, subject_id: str, json: bool, since: str | None = None, limit: int | None = None
) -> None:
    when = _filters(None, None, None, None, since, None).since

    async def query(stack: Stack, client: AsyncMongoClient[dict[str, Any]]) -> Any:
        rows = await audit_trail.trail(stack, client, kind, subject_id, since=when)
        if rows or kind != "invoice" or when:
            return rows, None
        realm, _, number = subject_id.partition(":")
        return rows, await audit_trail.invoice_numbered(stack, client, realm, number)

    rows, numbered = _read(query)
    found = len(rows)
    if limit is not None:
        rows = rows[-limit:]
    if json:
        emit_json(rows)
        return
    if numbered:
        realm, _, number = subject_id.partition(":")
        typer.echo(
            f"no audit entries of QuickBooks invoice {number}; invoice number {number} is "
            f"QuickBooks invoice {numbered}: dealbooks audit invoice {realm} {numbered}"
        )
        return
    for row in rows:
        row["call"] = _call(row["detail"].get("call"))
    columns = [
        ("at", "AT"),
        ("service", "SERVICE"),
        ("subject", "SUBJECT"),
        ("action", "ACTION"),
        ("result", "RESULT"),
        ("event_type", "EVENT"),
        ("event_id", "EVENT ID"),
        ("call", "CALL"),
    ]
    none = f"no audit entries since {when.isoformat()}" if when else "no audit entries"
    typer.echo(table(rows, columns) if rows else none)
    if len(rows) < found:
        typer.echo(f"(the last {len(rows)} of {found} entries)")


@approvals.command("list")
def approvals_list(
    portal: Annotated[str | None, typer.Option("--portal", help="CRM portal id.")] = None,
    status: Annotated[
        approval_list.Status, typer.Option(help="Only approvals in this state; all: any.")
    ] = approval_list.Status.pending,
    realm: Annotated[
        str | None, typer.Option("--realm", help="Only this QuickBooks company.")
    ] = None,
    json: Json = False,
) -> None:
    """Invoice approvals, oldest request first: the company, deal, customer, amount before
    tax, how long each has waited, its approver and CRM task, and who decided and why."""
    rows = _read(
        lambda stack, client: approval_list.approvals(
            stack, client, portal, status.value, realm=realm
        )
    )
    if json:
        emit_json(rows)
        return
    for r in rows:
        r["amount"] = f"{r['subtotal']} {r['currency']}"
        r["decision"] = " ".join(
            p for p in (r["decided_by"], r["reason"] and f"({r['reason']})") if p
        )
    columns = [
        ("request_id", "REQUEST"),
        ("status", "STATUS"),
        ("portal_id", "PORTAL"),
        ("company", "COMPANY"),
        ("deal_id", "DEAL"),
        ("customer", "CUSTOMER"),
        ("amount", "AMOUNT"),
        ("waiting", "WAITING"),
        ("approver_id", "APPROVER"),
        ("crm_task_id", "TASK"),
        ("decision", "DECIDED"),
    ]
    none = "no approvals" if status == "all" else f"no {status} approvals (--status all: any)"
    typer.echo(table(rows, columns) if rows else none)


@approvals.command("show")
def approvals_show(
    request_id: Annotated[str, typer.Argument(help="The invoice request's id.")],
    json: Json = False,
) -> None:
    """One approval: the company, deal and customer, who asked and when, the invoice's lines
    (as approved, when the approver edited them) and dates, its approver and CRM task, and
    who decided, when and why. Exits 1 when the request has no approval."""
    shown = _read(lambda stack, client: approval_list.approval(stack, client, request_id))
    if json:
        emit_json(shown)
        return
    fields = [
        ("request_id", "request"), ("status", "status"), ("portal_id", "portal"),
        ("realm_id", "realm"), ("company", "company"), ("deal_id", "deal"),
        ("customer", "customer"), ("origin", "origin"), ("requested_by", "requested by"),
        ("requested_at", "requested at"), ("waiting", "waiting"), ("approver_id", "approver"),
        ("crm_task_id", "CRM task"), ("reminded_at", "reminded at"),
        ("invoice_date", "invoice date"), ("due_date", "due date"), ("terms_id", "terms"),
    ]  # fmt: skip
    for key, label in fields:
        if shown.get(key) not in (None, ""):
            typer.echo(f"{label:<13} {shown[key]}")
    edited = " (edited by the approver)" if shown["edited"] else ""
    typer.echo(f"{'amount':<13} {shown['subtotal']} {shown['currency']} before tax{edited}")
    if shown["decided_at"] or shown["decided_by"]:
        said = f" ({shown['reason']})" if shown["reason"] else ""
        who = shown["decided_by"] or "unknown"
        typer.echo(f"{'decided':<13} {shown['status']} by {who} at {shown['decided_at']}{said}")
    if shown["qbo_invoice_id"]:
        number = f" (number {shown['doc_number']})" if shown["doc_number"] else ""
        typer.echo(f"{'invoice':<13} QuickBooks invoice {shown['qbo_invoice_id']}{number}")
    columns = [
        ("qbo_item_id", "ITEM"),
        ("description", "DESCRIPTION"),
        ("quantity", "QTY"),
        ("unit_price", "UNIT PRICE"),
        ("amount", "AMOUNT"),
        ("tax_code_id", "TAX CODE"),
    ]
    typer.echo("lines" if shown["lines"] else "lines         none")
    if shown["lines"]:
        typer.echo("\n".join("  " + line for line in table(shown["lines"], columns).splitlines()))


def _call(call: Any) -> str:
    if not isinstance(call, dict):
        return ""
    parts = [call.get("system"), call.get("method"), call.get("path"), call.get("status")]
    text = " ".join(str(p) for p in parts if p)
    return f"{text} requestid={call['requestid']}" if call.get("requestid") else text


Kind = Annotated[
    SyncKind, typer.Option("--kind", help="contacts (contact-sync) or products (product-sync).")
]
BackfillPortal = Annotated[str, typer.Option("--portal", help="CRM portal id.")]
BackfillRealm = Annotated[str, typer.Option("--realm", help="QuickBooks realm id.")]
MaxQbo = Annotated[
    int | None,
    typer.Option("--max-qbo-calls", min=0, help="Most QuickBooks calls (default: the service's)."),
]
MaxCrm = Annotated[
    int | None,
    typer.Option("--max-crm-calls", min=0, help="Most CRM calls (default: the service's)."),
]
RUN_FIELDS = ("run_id", "state", "reason", "read", "created", "updated", "unchanged", "failed")


def _backfill(
    action: str,
    kind: str,
    portal: str,
    realm: str,
    max_qbo_calls: int | None = None,
    max_crm_calls: int | None = None,
) -> dict[str, Any]:
    caps = {
        k: v
        for k, v in (("max_qbo_calls", max_qbo_calls), ("max_crm_calls", max_crm_calls))
        if v is not None
    }
    return _run(lambda stack: backfills.call(stack, kind, action, portal, realm, caps))


def _latest(kind: str, portal: str, realm: str) -> dict[str, Any] | None:
    return _run(lambda stack: backfills.latest(stack, kind, portal, realm))


def _with_failures(kind: str, run: dict[str, Any]) -> dict[str, Any]:
    """The run with the records it could not sync (`failures`), when some failed; where it
    cannot read them, why (`failures_unread`)."""
    if not run.get("failed"):
        return run
    try:
        found = _run_quietly(lambda stack: backfills.failures(stack, kind, run))
    except CliError as exc:
        return {**run, "failures": None, "failures_unread": str(exc)}
    return {**run, "failures": found}


def _run_quietly(make: Callable[[Stack], Coroutine[Any, Any, T]]) -> T:
    """Run one part of a command; its CliError is the caller's to report."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(make(Stack.load()))


def _end(run: dict[str, Any] | None) -> None:
    """A run that failed, or ended (done, cancelled) with records it could not sync, exits 1;
    one still running or paused has no outcome yet."""
    if not run:
        return
    state = run.get("state")
    if state == "failed" or (state in {"done", "cancelled"} and run.get("failed")):
        raise typer.Exit(1)


def _print_run(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(run)
        return
    for key in RUN_FIELDS:
        if run.get(key) is not None:
            typer.echo(f"{key:<10} {run[key]}")
    if run.get("calls"):
        calls, caps = run["calls"], run.get("caps") or {}
        typer.echo(f"{'qbo calls':<10} {calls['qbo']} of {caps.get('qbo', '?')}")
        typer.echo(f"{'crm calls':<10} {calls['crm']} of {caps.get('crm', '?')}")
    if run.get("error"):
        typer.echo(f"{'error':<10} {run['error']}")
    if "failures" in run:
        _print_failures(run)


def _print_failures(run: dict[str, Any]) -> None:
    """Which records the run could not sync and why, and what to do about them."""
    realm = run.get("realm_id")
    found = run.get("failures")
    if found is None:
        typer.echo(f"failures   not read: {run.get('failures_unread')}")
        return
    if not found:
        typer.echo(
            "failures   none found on the sync-failed topic (past its retention?); "
            "`dealbooks accounts show` lists the errors the services keep"
        )
        return
    typer.echo("failures")
    columns = [("record", "RECORD"), ("qbo_id", "ID"), ("code", "CODE"), ("message", "WHY")]
    typer.echo("\n".join("  " + line for line in table(found, columns, width=90).splitlines()))
    first = found[0]
    typer.echo(
        f"fix the cause, then sync them again: `dealbooks replay record {first['record']} "
        f"{realm} {first['qbo_id']}` (one), or another backfill (all); each is a "
        f"{first['topic']} event"
    )


@backfill.command("plan")
def backfill_plan(
    kind: Kind,
    portal: BackfillPortal,
    realm: BackfillRealm,
    max_qbo_calls: MaxQbo = None,
    max_crm_calls: MaxCrm = None,
    json: Json = False,
) -> None:
    """What a run would read and the calls it would make, against the caps (writes nothing)."""
    plan = _backfill("plan", kind, portal, realm, max_qbo_calls, max_crm_calls)
    if json:
        emit_json(plan)
        return
    for key in ("records", "already_linked", "qbo_calls", "crm_calls", "caps", "within_caps"):
        value = plan.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        typer.echo(f"{key:<15} {'' if value is None else value}")


@backfill.command("start")
def backfill_start(
    kind: Kind,
    portal: BackfillPortal,
    realm: BackfillRealm,
    max_qbo_calls: MaxQbo = None,
    max_crm_calls: MaxCrm = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the run ends or pauses.")
    ] = False,
    json: Json = False,
) -> None:
    """Start a run (refused while the account has one planned, running or paused). With
    --wait, the run's end as `backfill status` shows it, with its exit code."""
    run = _backfill("start", kind, portal, realm, max_qbo_calls, max_crm_calls)
    if wait:
        run = _with_failures(kind, _follow(kind, portal, realm, quiet=json))
    _print_run(run, json)
    _end(run)


def _follow(kind: str, portal: str, realm: str, *, quiet: bool) -> dict[str, Any]:
    """Poll the run until it leaves `running`, with a one-line progress on stderr."""
    while True:
        run = _latest(kind, portal, realm) or {"state": "planned"}
        if not quiet:
            calls = run.get("calls") or {}
            typer.echo(
                f"\r{run.get('state')}: read {run.get('read', 0)}, created "
                f"{run.get('created', 0)}, qbo calls {calls.get('qbo', 0)}, crm calls "
                f"{calls.get('crm', 0)}",
                err=True,
                nl=False,
            )
        if run.get("state") != "running":
            if not quiet:
                typer.echo("", err=True)
            return run
        time.sleep(1)


@backfill.command("status")
def backfill_status(
    kind: Kind, portal: BackfillPortal, realm: BackfillRealm, json: Json = False
) -> None:
    """The account's latest run: state, cursor counts, calls against caps, and the records it
    could not sync, with why (read from their sync-failed events). Exits 1 when the run
    failed, or ended (done, cancelled) with records it could not sync; 0 otherwise (one
    running or paused has no outcome yet), and when the account has had no run yet (JSON:
    null)."""
    run = _latest(kind, portal, realm)
    if run is None:
        if json:
            emit_json(None)
        else:
            typer.echo(f"no {kind} backfill of {realm} in portal {portal} yet")
        return
    run = _with_failures(kind, run)
    _print_run(run, json)
    _end(run)


@backfill.command("resume")
def backfill_resume(
    kind: Kind,
    portal: BackfillPortal,
    realm: BackfillRealm,
    max_qbo_calls: MaxQbo = None,
    max_crm_calls: MaxCrm = None,
    json: Json = False,
) -> None:
    """Continue a paused run from its cursor; caps given replace the run's."""
    _print_run(_backfill("resume", kind, portal, realm, max_qbo_calls, max_crm_calls), json)


@backfill.command("cancel")
def backfill_cancel(
    kind: Kind, portal: BackfillPortal, realm: BackfillRealm, json: Json = False
) -> None:
    """Cancel the account's active run (it stops after the page it is writing)."""
    _print_run(_backfill("cancel", kind, portal, realm), json)
