"""Benchmark: batch upsert of 1,000 contacts through the CRM client against the CRM sandbox.

Run: .venv/bin/python tests/benchmarks/bench_crm.py [--runs 5] [--contacts 1000]
Starts the sandbox as a subprocess on a free loopback port, runs the upsert on a fresh portal
each time (as creates, then at once again as updates), and prints the median throughput and
the number of HTTP calls the sandbox counted. Exits non-zero unless 1,000 contacts took
exactly 10 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from crm_sandbox.testing import CrmSandbox, running_sandbox
from dealbooks_crm import CrmClient
from dealbooks_http import StaticTokenProvider


async def one_run(sandbox: CrmSandbox, contacts: int) -> tuple[float, float, int]:
    portal = sandbox.create_portal()
    tokens = StaticTokenProvider({portal.key: portal.access_token})
    rows = [(f"bench{i}@dealbooks.example", {"firstname": f"Bench {i}"}) for i in range(contacts)]
    async with CrmClient(tokens, base_url=sandbox.base_url) as client:
        crm = client.portal(portal.portal_id)
        started = time.perf_counter()
        created = await crm.upsert_contacts_by_email(rows)
        create_seconds = time.perf_counter() - started
        calls = int(sandbox.counters(portal.portal_id)["total"])
        started = time.perf_counter()
        updated = await crm.upsert_contacts_by_email(rows)
        update_seconds = time.perf_counter() - started
    if len(created.results) != contacts or created.errors or len(updated.results) != contacts:
        raise SystemExit("upsert did not return every contact")
    return create_seconds, update_seconds, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--contacts", type=int, default=1000)
    args = parser.parse_args()
    with running_sandbox() as sandbox:
        results = [asyncio.run(one_run(sandbox, args.contacts)) for _ in range(args.runs)]
    creates = statistics.median(r[0] for r in results)
    updates = statistics.median(r[1] for r in results)
    calls = {r[2] for r in results}
    expected_calls = -(-args.contacts // 100)
    print(
        f"CRM batch upsert of {args.contacts} contacts, sandbox + client, "
        f"median of {args.runs} runs"
    )
    print(f"  create: {creates * 1000:8.1f} ms  {args.contacts / creates:10.0f} contacts/s")
    print(f"  update: {updates * 1000:8.1f} ms  {args.contacts / updates:10.0f} contacts/s")
    print(f"  HTTP calls per upsert: {sorted(calls)} (expected {expected_calls})")
    print("  (the update pass is paced by the client's per-portal budget: 99 calls per 10 s)")
    return 0 if calls == {expected_calls} else 1


if __name__ == "__main__":
    sys.exit(main())
