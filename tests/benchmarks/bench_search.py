"""The wizard's searches on a large company: latency through invoice-builder's HTTP API and the
QuickBooks calls each search costs.

Run: .venv/bin/python tests/benchmarks/bench_search.py [--customers 50000] [--invoices 100000]
     [--searches 30] [--interval 1.0]

Starts a local MongoDB-wire server (invoice-builder keeps its company facts there), both
sandboxes (the QBO sandbox with QuickBooks' own limits on: 500/min, 10/s, 10 in flight), and
invoice-builder's wizard API in this process behind a real HTTP server. One QBO company is
seeded through the sandbox's bulk control with `--customers` customers and `--invoices`
invoices (not counted), and a CRM portal gets deals whose contact or company matches a
customer by e-mail address, by company name, or not at all.

Then each kind of search runs `--searches` times, one at a time, started every `--interval`
seconds (about how often a person typing in a search box sends one), with varied text:

- customer search: `GET .../customers?q=`
- proposal: `GET .../customers?deal_id=&q=` (the wizard's first call: the first page of
  customers and the best match for the deal's contact and company)
- item search: `GET .../items?q=`
- invoice search: `GET .../invoices?q=&customer_id=&page=`

For each it prints p50, p95 and the slowest answer, and the QuickBooks calls per search the
sandbox counted (mean and most), next to what reading the whole list would take. The client
keeps each company under QuickBooks' budget (`dealbooks_qbo.default_budget`: a burst of 2, then
about 6.7 calls/s), so a search of several calls waits for it; that wait is in the figures.
A report, never a test: exit 0 whether or not anything is slow, non-zero only when the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from crm_sandbox.testing import CrmSandbox, running_sandbox
from dealbooks_contracts import Envelope, Tenant
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.records import association as _assoc
from dealbooks_infra.servers import start_mongo
from dealbooks_infra.testing import account_connected
from dealbooks_kit import Guard, configure_logging
from dealbooks_kit.auth import mint_grant
from invoice_builder.api import build_api
from invoice_builder.app import build_service
from invoice_builder.settings import InvoiceBuilderSettings
from qbo_sandbox.pytest_plugin import SandboxHandle, start_sandbox, stop_sandbox

GRANT_KEYS = "bench:bench-search-grant-key-0123456789"


@dataclass
class Kind:
    """One kind of search and what its runs measured."""

    name: str
    seconds: list[float] = field(default_factory=list)
    qbo_calls: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def crm_deals(crm: CrmSandbox, portal_id: int, customers: int) -> list[str]:
    """Deals whose contact has a customer's e-mail address, whose company has a customer's
    company name, and whose contact and company match no customer."""
    deals: list[str] = []
    for n in range(6):
        pick = 1 + (n * 7919) % customers
        if n % 3 == 0:
            contact = crm.create_as_user(
                portal_id, "contacts", {"email": f"customer{pick:05d}@example.com"}
            )
            links = [_assoc(contact["id"], 3)]
        elif n % 3 == 1:
            company = crm.create_as_user(portal_id, "companies", {"name": f"Firm {pick:05d}"})
            links = [_assoc(company["id"], 5)]
        else:
            contact = crm.create_as_user(
                portal_id,
                "contacts",
                {"email": f"nobody{n}@elsewhere.example", "firstname": "No", "lastname": f"One{n}"},
            )
            company = crm.create_as_user(portal_id, "companies", {"name": f"Nowhere {n} Ltd"})
            links = [_assoc(contact["id"], 3), _assoc(company["id"], 5)]
        deal = crm.create_as_user(
            portal_id, "deals", {"dealname": f"Bench {n}", "dealstage": "contractsent"}, links
        )
        deals.append(str(deal["id"]))
    return deals


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{port}"


async def _measure(
    kind: Kind,
    runs: int,
    interval: float,
    qbo: SandboxHandle,
    realm: str,
    search: Callable[[int], Awaitable[httpx.Response]],
) -> None:
    """`runs` searches, one at a time, the k-th started `k * interval` s after the first
    (later if the one before is still running)."""
    started = time.perf_counter()
    for k in range(runs):
        due = started + k * interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        before = (await asyncio.to_thread(qbo.stats, realm))["requests"]
        sent = time.perf_counter()
        answer = await search(k)
        kind.seconds.append(time.perf_counter() - sent)
        if answer.status_code != 200:
            raise RuntimeError(f"{kind.name}: {answer.status_code} {answer.text[:300]}")
        after = (await asyncio.to_thread(qbo.stats, realm))["requests"]
        kind.qbo_calls.append(after - before)
        body = answer.json()
        kind.rows.append(len(next(v for v in body.values() if isinstance(v, list))))


async def bench(
    mongo: str, qbo: SandboxHandle, crm: CrmSandbox, args: argparse.Namespace
) -> list[Kind]:
    company = qbo.create_company("US", demo_data=True)
    started = time.perf_counter()
    seeded = await asyncio.to_thread(
        qbo.bulk_seed,
        company.realm_id,
        {"count": args.customers, "company_name": "Firm {n:05d}"},
        {"count": args.invoices, "days": 365},
    )
    print(
        f"seeded {seeded['customers']} customers and {seeded['invoices']} invoices in "
        f"{time.perf_counter() - started:.1f} s (not counted)"
    )
    portal = crm.create_portal()
    deals = crm_deals(crm, portal.portal_id, args.customers)

    namespace = f"benchsearch{uuid.uuid4().hex[:6]}"
    settings = InvoiceBuilderSettings(
        mongodb_uri=mongo,
        mongodb_database=namespace,
        topic_prefix=f"{namespace}.",
        qbo_base_url=qbo.base_url,
        crm_base_url=crm.base_url,
        grant_keys=GRANT_KEYS,
        log_level="WARNING",
    )
    configure_logging("bench-search", settings.log_level, json=False)
    service = build_service(
        settings,
        qbo_tokens=StaticTokenProvider({company.realm_id: company.access_token}),
        crm_tokens=StaticTokenProvider({portal.key: portal.access_token}),
    )
    tenant = Tenant(portal_id=portal.key, account_id=company.realm_id)
    await service.handlers.on_account_connected(
        Envelope.build(account_connected(company_name="Large Co"), source="bench", tenant=tenant)
    )
    server, serving, base_url = await _serve(
        build_api(service, Guard(settings, settings.service_name))
    )
    grant = mint_grant(GRANT_KEYS, [portal.key], user_id="bench")
    base = f"/portals/{portal.key}/accounts/{company.realm_id}"
    n = args.customers
    names = [f"Customer {1 + (k * 7919) % n:05d}"[:-1] for k in range(7)]  # about 10 customers
    customer_texts = [
        *names[:3],
        "customer 1",
        f"Firm {1 + 4242 % n:05d}",
        f"customer{1 + 977 % n:05d}@example.com",
        "nobody at all",
    ]
    item_texts = ["kit", "serv", "o", "", "package", "nothing like it"]
    kinds: list[Kind] = []
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {grant}"}, timeout=60.0
        ) as http:
            newest = (await http.get(f"{base}/invoices")).json()["invoices"]
            numbers = [i["doc_number"] for i in newest[:5]]
            owner = newest[0]["customer_id"]

            async def customers(k: int) -> httpx.Response:
                return await http.get(
                    f"{base}/customers", params={"q": customer_texts[k % len(customer_texts)]}
                )

            async def proposal(k: int) -> httpx.Response:
                deal = deals[k % len(deals)]
                return await http.get(f"{base}/customers", params={"deal_id": deal, "q": ""})

            async def items(k: int) -> httpx.Response:
                return await http.get(
                    f"{base}/items", params={"q": item_texts[k % len(item_texts)]}
                )

            invoice_params = [
                {"q": numbers[0]},
                {"q": names[3]},
                {},
                {"page": "2"},
                {"customer_id": owner},
                {"q": numbers[1][:-1]},
                {"q": names[4], "page": "2"},
                {"q": "no such customer"},
            ]

            async def invoices(k: int) -> httpx.Response:
                params = invoice_params[k % len(invoice_params)]
                return await http.get(f"{base}/invoices", params=params)

            for name, call in (
                ("customer search", customers),
                ("proposal", proposal),
                ("item search", items),
                ("invoice search", invoices),
            ):
                kind = Kind(name)
                await _measure(kind, args.searches, args.interval, qbo, company.realm_id, call)
                kinds.append(kind)
    finally:
        server.should_exit = True
        await serving
        await service.aclose()
        await service.runtime.mongo.close()
    stats = qbo.stats(company.realm_id)
    print(
        f"QBO sandbox: {stats['throttled']} answered 429, most in flight {stats['max_in_flight']}, "
        f"most in a second {stats['max_per_second']}"
    )
    crm_counted = crm.counters(portal.portal_id)
    print(f"CRM calls (deal reads for the proposals): {crm_counted['total']}")
    return kinds


def report(kinds: list[Kind], args: argparse.Namespace) -> None:
    whole = {
        "customer search": math.ceil(args.customers / 1000),
        "proposal": math.ceil(args.customers / 1000),
        "item search": 1,
        "invoice search": math.ceil(args.invoices / 1000),
    }
    print(
        f"\n{args.searches} searches of each kind, one every {args.interval:g} s, "
        f"{args.customers} customers, {args.invoices} invoices:\n"
    )
    print(
        f"{'search':16s} {'p50':>8s} {'p95':>8s} {'max':>8s}   {'QBO calls/search':>17s}"
        f"   {'rows':>5s}   whole list"
    )
    for kind in kinds:
        ms = [s * 1000 for s in kind.seconds]
        print(
            f"{kind.name:16s} {statistics.median(ms):6.0f}ms {_percentile(ms, 0.95):6.0f}ms "
            f"{max(ms):6.0f}ms   {statistics.mean(kind.qbo_calls):8.1f} (max {max(kind.qbo_calls)})"
            f"   {statistics.mean(kind.rows):5.1f}   {whole[kind.name]} calls"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mongo = start_mongo(Path(tmp) / "mongo")
        qbo = start_sandbox("--seed", "none")
        try:
            with running_sandbox() as crm:
                kinds = asyncio.run(bench(mongo.address, qbo, crm, args))
        finally:
            stop_sandbox(qbo)
            mongo.stop()
    report(kinds, args)


if __name__ == "__main__":
    main()
