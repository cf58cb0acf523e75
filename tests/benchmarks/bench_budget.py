"""One company's and one portal's API budgets under full wizard load, with two replicas of
every consumer service: the 429s QuickBooks and the CRM answered (the aim is none) and how much
of each allowance was used (the aim is at least 80%).

The whole local stack runs (every consumer service as two processes in its consumer groups;
see `dealbooks_infra.stack.LocalStack`), one QuickBooks company connected to one CRM portal.
The wizard submits invoice requests and QuickBooks records payments on the drafts, open-loop
at `--rate` events a second on each path, more than one company's 500 calls a minute can carry,
so every service and replica draws on the same budgets at once (`dealbooks_kit.budgets`).
Figures come from the sandboxes' own counters: QuickBooks' busiest minute and second for the
company, the CRM's calls over the load. Reported, never asserted; the 429 zero is asserted by
`libs/kit/tests/test_kit_budgets.py`.

    .venv/bin/python tests/benchmarks/bench_budget.py [--replicas 2] [--rate 8] [--seconds 90]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_invoices as bi
from dealbooks_infra.stack import LocalStack
from dealbooks_infra.topology import PORTAL_ID

QBO_PER_MINUTE, QBO_PER_SECOND, CRM_PER_10S = 500, 10, 110


async def usage(b: bi.Bench, realms: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    qbo = [await b.call("GET", f"{b.t.qbo}/_sandbox/companies/{r}/stats") for r in realms]
    crm = await b.call("GET", f"{b.t.crm_control(PORTAL_ID)}/counters")
    return qbo, crm


async def run(stack: LocalStack, args: argparse.Namespace) -> None:
    b = bi.Bench(stack, {PORTAL_ID: stack.topology.secrets.crm_portal_token}, args)
    b.listener = asyncio.create_task(b.listen())
    try:
        bi.say(f"== set-up: {args.realms} QuickBooks compan{'y' if args.realms == 1 else 'ies'}, "
               f"one CRM portal, {args.replicas} replicas")  # fmt: skip
        await b.set_up()
        realms = list(b.realm_portal)
        qbo_before, crm_before = await usage(b, realms)
        began = time.monotonic()
        drafted, drafts = await b.drafts(args.rate * args.seconds)
        paid = await b.payments(drafts)
        elapsed = time.monotonic() - began
        qbo_after, crm_after = await usage(b, realms)
        await b.settle()
    finally:
        b.listener.cancel()
        await asyncio.gather(b.listener, return_exceptions=True)
        await b.http.aclose()
        for person in b.people.values():
            await person.http.aclose()
    qbo_calls = sum(
        a["requests"] - z["requests"] for a, z in zip(qbo_after, qbo_before, strict=True)
    )
    throttled = sum(
        a["throttled"] - z["throttled"] for a, z in zip(qbo_after, qbo_before, strict=True)
    )
    busiest = max(qbo_after, key=lambda stats: stats["max_per_minute"])
    crm_calls = crm_after["total"] - crm_before["total"]
    crm_per_10s = crm_calls / elapsed * 10
    bi.say(f"== {drafted.done} drafted and {paid.done} paid of {args.rate * args.seconds} each, "
           f"in {elapsed:.0f} s of load")  # fmt: skip
    bi.say(f"   QuickBooks: 429s answered {throttled}; busiest company's busiest minute "
           f"{busiest['max_per_minute']} of {QBO_PER_MINUTE} "
           f"({busiest['max_per_minute'] / QBO_PER_MINUTE:.0%}), busiest second "
           f"{max(s['max_per_second'] for s in qbo_after)} of {QBO_PER_SECOND}, most at once "
           f"{max(s['max_in_flight'] for s in qbo_after)} of 10; {qbo_calls} calls")  # fmt: skip
    bi.say(f"   CRM: 429s answered {crm_after['rateLimited'] - crm_before['rateLimited']}; "
           f"{crm_calls} calls, {crm_per_10s:.0f} per 10 s on average of {CRM_PER_10S} "
           f"({crm_per_10s / CRM_PER_10S:.0%})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="processes per consumer service")
    parser.add_argument(
        "--realms",
        type=int,
        default=1,
        help="QuickBooks companies on the one portal (3 or more make the CRM's budget the limit)",
    )
    parser.add_argument("--rate", type=int, default=8, help="events per second on each path")
    parser.add_argument("--seconds", type=int, default=90, help="length of the load")
    parser.add_argument("--drain", type=float, default=120.0, help="patience per event (s)")
    parser.add_argument("--settle", type=float, default=240.0, help="patience for the backlog")
    args = parser.parse_args()
    args.portals, args.runs, args.warmup, args.db_detail = 1, 1, 0, False
    os.environ["QBO_SANDBOX_WEBHOOK_AGGREGATION_SECONDS"] = "0"
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="dealbooks-bench-budget-"))
    stack = LocalStack(workdir, replicas=args.replicas)
    try:
        stack.start()
        asyncio.run(run(stack, args))
    except Exception as exc:
        bi.say(f"bench_budget: FAILED: {type(exc).__name__}: {exc} (logs in {workdir / 'logs'})")
        return 1
    finally:
        stack.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
