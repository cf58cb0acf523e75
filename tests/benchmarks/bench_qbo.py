"""Round trips per second through dealbooks_qbo against the local QBO sandbox.

Run: .venv/bin/python tests/benchmarks/bench_qbo.py [--runs 5] [--requests 300] [--concurrency 10]

The sandbox starts with its throttles off and the client with a budget far above QBO's, so
the figure is the cost of the client + HTTP + emulator on this machine, not QBO's 500/min.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from decimal import Decimal

from dealbooks_http import RateBudget, StaticTokenProvider
from dealbooks_qbo import Invoice, QboClient, QboCompany
from qbo_sandbox.pytest_plugin import start_sandbox, stop_sandbox

INVOICE = {
    "CustomerRef": {"value": "1"},
    "Line": [
        {
            "DetailType": "SalesItemLineDetail",
            "Amount": Decimal("100.00"),
            "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
        }
    ],
}


async def _run(requests: int, concurrency: int, call) -> float:
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def bench(base_url: str, realm_id: str, token: str, args: argparse.Namespace) -> None:
    unlimited = RateBudget(rate=1_000_000, period=1.0, concurrency=args.concurrency)
    client = QboClient(base_url, StaticTokenProvider({realm_id: token}), budget=unlimited)
    company: QboCompany = client.company(realm_id)

    async def create(i: int) -> None:
        await company.create(Invoice, INVOICE)

    async def query(i: int) -> None:
        await company.query_page("SELECT * FROM Invoice WHERE DocNumber = '1001'")

    await _run(20, args.concurrency, create)  # warm-up: connections, imports
    for name, call in (("invoice create", create), ("invoice query", query)):
        rates = [await _run(args.requests, args.concurrency, call) for _ in range(args.runs)]
        print(
            f"{name:15s} median {statistics.median(rates):8.1f} round trips/s "
            f"(runs: {', '.join(f'{r:.0f}' for r in rates)}; {args.requests} requests, "
            f"concurrency {args.concurrency})"
        )
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    handle = start_sandbox("--no-throttle", "--seed", "none")
    try:
        company = handle.create_company("US", demo_data=True)
        asyncio.run(bench(handle.base_url, company.realm_id, company.access_token, args))
    finally:
        stop_sandbox(handle)


if __name__ == "__main__":
    main()
