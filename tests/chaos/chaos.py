"""`make chaos`: crash anything, lose nothing.

Run: .venv/bin/python tests/chaos/chaos.py [--minutes 10 | --seconds N] [--rate 2] [--seed 15]
     [--kill-every 15] [--restart-after 3] [--realms 3] [--settle 240] [--report out.json]
     [--keep]

Starts the whole local stack as `make demo` does (Kafka, a MongoDB-wire server, both
sandboxes, every service as its own process), installs the app into the CRM portal through
the CRM's OAuth and connects QuickBooks companies through connector-auth (no static token),
then drives a steady mixed load (`chaos_load`) while a seeded schedule (`chaos_monkey`)
SIGKILLs random services, the Kafka broker and the MongoDB-wire server once each, and has
both sandboxes inject faults. Then it lets the system settle and checks, from the sandboxes'
own records, that nothing was lost or done twice (`chaos_checks`).

Prints the figures (events, kills, faults, each invariant) and exits 0 when every invariant
held, 1 when one broke, 2 when the run itself could not be carried out. The stack's folder
(logs, data) is kept and named unless the run passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_checks import (
    Checks,
    Invariant,
    Records,
    Settler,
    consumer_lag,
    report,
    sync_without_backfill,
)
from chaos_load import Load
from chaos_monkey import Monkey, Schedule
from chaos_world import Client, Figures, Ledger, say
from dealbooks_infra.stack import SANDBOXES, SERVICE_ORDER, LocalStack, start_sandbox

# Webhook back-off of both sandboxes, shortened so a webhook refused while the gateway (or
# Kafka behind it) restarts is sent again within seconds rather than minutes; the order and
# the retries themselves are as QuickBooks and HubSpot do them.
QBO_TIME_SCALE = "10"
CRM_WEBHOOK_TIME_SCALE = "20"
CRM_DUPLICATE_RATE = "0.03"  # HubSpot sends some events twice
CHECK_ROUNDS = 3


def crm_with_duplicates(stack: LocalStack) -> None:
    """Start the CRM sandbox again (before anything is installed: it holds only its seed)
    with duplicated webhook events and the shortened back-off."""
    spec = next(s for s in SANDBOXES if s.name == "crm-sandbox")
    stack.processes.pop(spec.name).stop()
    args = (
        "--seed",
        str(stack.workdir / "crm-seed.json"),
        "--webhook-duplicate-rate",
        CRM_DUPLICATE_RATE,
        "--webhook-time-scale",
        CRM_WEBHOOK_TIME_SCALE,
    )
    started = start_sandbox(spec, stack.logs, stack.topology.ports[spec.name], args)
    if started is None:
        raise RuntimeError("crm_sandbox is not installed (make venv)")
    stack.processes[spec.name] = started[0]


async def sandbox_figures(client: Client, ledger: Ledger) -> dict[str, int]:
    """What the sandboxes themselves counted of the faults."""
    c = client
    stats = [await c.json("GET", f"{c.qbo_ctl}/companies/{r}/stats") for r in ledger.realms]
    qbo_deliveries = await c.json("GET", f"{c.qbo_ctl}/webhooks/deliveries")
    delivered = Counter(d["body"] for d in qbo_deliveries if d.get("status") == 200)
    crm_counters = await c.json("GET", f"{c.crm_ctl}/counters")
    crm_deliveries = (await c.json("GET", f"{c.t.crm}/_sandbox/webhooks/deliveries"))["results"]
    crm_events = Counter(e for d in crm_deliveries if d.get("status") == 200 for e in d["eventIds"])
    return {
        "QBO API calls (the services', and the checks' reads)": sum(s["requests"] for s in stats),
        "CRM API calls the services made": int(crm_counters["total"]),
        "QBO calls answered 429 (injected)": sum(s["injected_throttles"] for s in stats),
        "QBO calls answered 429 (its own limits)": sum(s["throttled"] for s in stats),
        "QBO webhook batches dropped": sum(1 for d in qbo_deliveries if d.get("dropped")),
        "QBO webhook batches delivered twice": sum(n - 1 for n in delivered.values() if n > 1),
        "QBO webhook attempts refused or failed": sum(
            1 for d in qbo_deliveries if "body" in d and d.get("status") != 200
        ),
        "CRM calls answered with an injected fault": int(crm_counters["injectedFaults"]),
        "CRM calls answered 429 (its own limits)": int(crm_counters["rateLimited"]),
        "CRM webhook deliveries dropped": sum(1 for d in crm_deliveries if d["dropped"]),
        "CRM webhook attempts refused or failed": sum(
            1 for d in crm_deliveries if not d["dropped"] and d.get("status") != 200
        ),
        "CRM webhook events delivered twice or more": sum(1 for n in crm_events.values() if n > 1),
    }


def print_figures(
    args: argparse.Namespace,
    seconds: float,
    figures: Figures,
    ledger: Ledger,
    load: Load,
    extra: dict[str, Any],
) -> None:
    def listing(counts: Counter[str] | dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

    accepted = sum(1 for s in ledger.submitted.values() if s.accepted)
    answers = sorted(s.answered_in for s in ledger.submitted.values() if s.answered_in is not None)
    say()
    say(f"== chaos: {seconds:.0f} s of load at {args.rate} events/s, seed {args.seed}, "
        f"a kill every ~{args.kill_every:.0f} s")  # fmt: skip
    say(f"   events fired: {sum(figures.events.values())} ({listing(figures.events)})")
    if figures.load_errors:
        say(f"   events the driver could not complete: {listing(figures.load_errors)}")
        for text in load.errors[:5]:
            say(f"      - {text}")
    say(f"   wizard requests: {len(ledger.submitted)} sent, {accepted} accepted (202); "
        f"deals moved into the rule's stage: {len(ledger.auto_deals)}")  # fmt: skip
    if answers:
        say(f"   wizard answers (first attempt to 202): median {statistics.median(answers):.1f} s, "
            f"p99 {answers[max(0, math.ceil(0.99 * len(answers)) - 1)]:.1f} s, "
            f"slowest {answers[-1]:.1f} s")  # fmt: skip
    say(f"   outcomes: {listing(figures.outcomes)}")
    say(f"   QuickBooks payments recorded: {ledger.payments}; synced-company customers "
        f"touched: {len(ledger.customers)}, items: {len(ledger.items)}")  # fmt: skip
    say(f"   kills: {sum(figures.kills.values())} ({listing(figures.kills)})")
    say("   down (kill to healthy again): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(figures.downtime.items())))  # fmt: skip
    say(f"   fault episodes injected: {sum(figures.faults.values())} ({listing(figures.faults)})")
    say(f"   driver calls sent again (no answer, 5xx, 429): {listing(load.c.unanswered)}")
    for key, value in extra.items():
        say(f"   {key}: {value}")
    for note in figures.notes:
        say(f"   note: {note}")


async def load_under_chaos(
    stack: LocalStack, client: Client, load: Load, args: argparse.Namespace, seconds: float
) -> list[asyncio.Task[None]]:
    """The load and the chaos side by side; returns the tasks that keep running while the
    system settles (outcome polling, restarting what exits on its own)."""
    targets: tuple[str, ...] = SERVICE_ORDER
    if args.kill_replicas:
        targets = tuple(name for name in stack.processes if "#" in name)
    schedule = Schedule.plan(
        args.seed, seconds, args.kill_every, targets, infra=not args.kill_replicas
    )
    if args.no_faults:
        schedule.qbo, schedule.crm = [], []
    monkey = Monkey(
        stack, client, load.figures, schedule, args.restart_after, random.Random(args.seed + 1),
        load.stage_changes, load.stage_changes_idle,
    )  # fmt: skip
    say(f"== load for {seconds:.0f} s; {len(schedule.kills)} kills planned "
        f"({', '.join(w for _, w in schedule.kills)})")  # fmt: skip
    client.started = started = time.monotonic()
    tasks = [asyncio.create_task(load.poll_outcomes()), asyncio.create_task(monkey.watch())]
    await asyncio.gather(
        load.run(seconds),
        monkey.kills(started),
        monkey.faults(started, schedule.qbo),
        monkey.faults(started, schedule.crm),
    )
    await load.finish(args.settle)
    return tasks


async def settle_and_check(
    client: Client, load: Load, patience: float
) -> tuple[list[Invariant], dict[str, Any]]:
    """Settle, then check; a round that finds an invariant broken settles again (at most
    `CHECK_ROUNDS` rounds: effects relayed by an outbox pass may land after a quiet moment)."""
    figures, ledger = load.figures, load.ledger
    ended = time.monotonic()
    say("== settling: faults off, webhooks delivered, requests decided, sweeps, backfills")
    settler = Settler(client, load, ledger, figures, patience)
    await settler.settle()
    records = await Records.read(client, ledger)
    before = Checks(ledger, load, records).synced_match()
    for stale in (text for inv in before for text in inv.failures[:5]):
        figures.notes.append(f"stale before the settle passes and backfill: {stale}")
    deliveries = await client.json("GET", f"{client.qbo_ctl}/webhooks/deliveries")
    webhooks_carried, dropped = sync_without_backfill(
        before, records, ledger.sync_realm, deliveries
    )
    await settler.sync_passes()
    await settler.backfills()
    await settler.quiet()
    invariants: list[Invariant] = []
    rounds = 0
    while rounds < CHECK_ROUNDS:
        rounds += 1
        await load.poll_once()
        invariants = [
            *Checks(ledger, load, await Records.read(client, ledger)).all(),
            webhooks_carried,
        ]
        broken = [i.name for i in invariants if not i.ok]
        if not broken or rounds == CHECK_ROUNDS:
            break
        figures.notes.append(f"check round {rounds}: broken {broken}; settling again")
        await settler.sweeps()
        await settler.quiet()
    doubts = Counter(
        [await load.status_of(s.request_id) for s in ledger.submitted.values() if s.in_doubt]
    )
    lag, dead = await consumer_lag(client.t.infra["KAFKA_BOOTSTRAP"])
    extra: dict[str, Any] = await sandbox_figures(client, ledger)
    if doubts:
        now = ", ".join(f"{k} {v}" for k, v in sorted(doubts.items()))
        extra["submissions with no answer after 180 s, as the wizard has them now"] = (
            f"{sum(doubts.values())} ({now})"
        )
    extra["dead letters on Kafka (all .dlq topics)"] = dead
    extra["records not yet consumed at the check"] = lag
    extra["synced records stale before the settle passes and backfill"] = (
        f"{sum(len(i.failures) for i in before)} ({dropped} whose last change's webhook "
        "QuickBooks dropped)"
    )
    for key, value in sorted(figures.settle.items()):
        extra[f"settle: {key}"] = value
    extra["settle, from the end of the load to the verdict"] = (
        f"{time.monotonic() - ended:.0f} s ({rounds} check round(s))"
    )
    return invariants, extra


def write_report(
    path: Path,
    args: argparse.Namespace,
    seconds: float,
    figures: Figures,
    extra: dict[str, Any],
    invariants: list[Invariant],
) -> None:
    body = {
        "ok": all(i.ok for i in invariants),
        "seconds": seconds,
        "seed": args.seed,
        "kills": dict(figures.kills),
        "faults": dict(figures.faults),
        "events": dict(figures.events),
        "outcomes": dict(figures.outcomes),
        "sandboxes": extra,
        "invariants": [
            {"name": i.name, "ok": i.ok, "checked": i.checked, "failures": i.failures[:20]}
            for i in invariants
        ],
    }
    path.write_text(json.dumps(body, indent=2))


async def run(stack: LocalStack, args: argparse.Namespace, seconds: float) -> int:
    figures, ledger = Figures(), Ledger()
    client = Client(stack)
    load = Load(client, ledger, figures, args.seed, args.rate)
    tasks: list[asyncio.Task[None]] = []
    try:
        await load.set_up(args.realms)
        tasks = await load_under_chaos(stack, client, load, args, seconds)
        invariants, extra = await settle_and_check(client, load, args.settle)
        print_figures(args, seconds, figures, ledger, load, extra)
        say("== invariants (from QuickBooks' and the CRM's own records)")
        report(invariants)
        if args.report:
            await asyncio.to_thread(
                write_report, Path(args.report), args, seconds, figures, extra, invariants
            )
        broken = [i for i in invariants if not i.ok]
        if broken:
            say(f"chaos: FAILED: {len(broken)} invariant(s) broken")
            return 1
        say(f"chaos: ok: {sum(figures.kills.values())} kills, "
            f"{sum(figures.faults.values())} fault episodes, every invariant held")  # fmt: skip
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


def _terminated(signum: int, frame: object) -> None:
    """Stopped from outside (a test's deadline): unwind, so the stack is stopped too."""
    raise SystemExit(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2.0, help="load events per second")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--seconds", type=float, help="length of the load (instead of minutes)")
    parser.add_argument("--seed", type=int, default=15, help="seeds the load and the chaos")
    parser.add_argument(
        "--kill-every", type=float, default=15.0, help="mean seconds between two kills"
    )
    parser.add_argument(
        "--restart-after", type=float, default=3.0, help="mean pause before a restart (s)"
    )
    parser.add_argument("--realms", type=int, default=3, help="QuickBooks companies to connect")
    parser.add_argument(
        "--settle", type=float, default=240.0, help="patience of each wait while settling (s)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="processes per consumer service (default 1)"
    )
    parser.add_argument(
        "--kill-replicas",
        action="store_true",
        help="kill only extra replicas (with --replicas 2 or more), never the broker or the "
        "MongoDB-wire server: their partitions move to the replicas left",
    )
    parser.add_argument("--no-faults", action="store_true", help="inject no API faults")
    parser.add_argument("--report", help="also write the figures as JSON to this file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the stack's logs and data even if it passed"
    )
    args = parser.parse_args()
    if args.kill_replicas and args.replicas < 2:
        parser.error("--kill-replicas needs --replicas 2 or more")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminated)
    os.environ["QBO_SANDBOX_TIME_SCALE"] = QBO_TIME_SCALE
    workdir = Path(tempfile.mkdtemp(prefix="dealbooks-chaos-"))
    say("== starting Kafka, a MongoDB-wire server, both sandboxes and every service")
    stack = LocalStack(workdir, replicas=args.replicas)
    code = 2
    began = time.monotonic()
    try:
        stack.start()
        crm_with_duplicates(stack)
        code = asyncio.run(run(stack, args, seconds))
    except Exception as exc:
        say(f"chaos: could not run: {type(exc).__name__}: {exc}")
    finally:
        stack.stop()
        say(f"chaos: {time.monotonic() - began:.0f} s in all, start to stop")
    if code == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"chaos: logs and data of this run: {workdir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
