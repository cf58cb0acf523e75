"""Backfill of 10,000 QBO customers into CRM contacts: wall time and API calls.

Run: .venv/bin/python tests/benchmarks/bench_backfill.py [--customers 10000]

Starts a local Kafka and MongoDB-wire server, both sandboxes at real speed (the CRM's
ten-second window is not compressed) and contact-sync in-process, seeds the customers through
the QBO sandbox's control API (not counted), then runs one backfill and reports the QBO and
CRM calls the sandboxes counted, and any 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from contact_sync.app import Settings, build
from crm_sandbox.testing import running_sandbox
from dealbooks_contracts import (
    CreateUpdatePolicy,
    DeletePolicy,
    Envelope,
    MappingChanged,
    SyncObjectType,
    SyncSettings,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_infra.servers import start_kafka, start_mongo
from dealbooks_kit import configure_logging
from dealbooks_sync.domain import default_mappings
from qbo_sandbox.pytest_plugin import SandboxHandle, start_sandbox, stop_sandbox


def seed(qbo: SandboxHandle, realm: str, n: int) -> None:
    def one(i: int) -> None:
        qbo.user_creates(
            realm,
            "customers",
            {
                "DisplayName": f"Customer {i:05d}",
                "GivenName": "Bench",
                "FamilyName": f"{i:05d}",
                "PrimaryEmailAddr": {"Address": f"c{i:05d}@example.com"},
            },
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(n)))


async def bench(kafka: str, mongo: str, qbo: SandboxHandle, crm_url: str, crm, n: int) -> None:
    company = qbo.create_company("US", demo_data=False)
    portal = crm.create_portal()
    started = time.perf_counter()
    await asyncio.to_thread(seed, qbo, company.realm_id, n)
    print(f"seeded {n} customers in {time.perf_counter() - started:.1f} s (not counted)")

    settings = Settings(
        kafka_bootstrap=kafka,
        mongodb_uri=mongo,
        mongodb_database="bench_backfill",
        topic_prefix=f"bench{int(time.time())}.",
        qbo_base_url=qbo.base_url,
        crm_base_url=crm_url,
        log_level="WARNING",
    )
    # The service runs in this process: its log lines at the level a deployment would set,
    # not structlog's unconfigured default (every debug line, one per contact).
    configure_logging("bench-backfill", settings.log_level, json=False)
    service = build(
        settings,
        qbo_tokens=StaticTokenProvider({company.realm_id: company.access_token}),
        crm_tokens=StaticTokenProvider({portal.key: portal.access_token}),
    )
    tenant = Tenant(portal_id=portal.key, account_id=company.realm_id)
    mappings = MappingChanged(
        object_type=SyncObjectType.CONTACTS,
        version=1,
        settings=SyncSettings(
            enabled=True,
            create_update_policy=CreateUpdatePolicy.CREATE_AND_UPDATE,
            delete_policy=DeletePolicy.ARCHIVE,
            enabled_since=datetime.now(UTC),
        ),
        mappings=default_mappings(SyncObjectType.CONTACTS),
    )
    try:
        async with service.runtime.running():
            await service.records.on_mapping_changed(
                Envelope.build(mappings, source="bench", tenant=tenant)
            )
            dry = await service.backfill.dry_run(company.realm_id)
            print(f"dry run: {dry['records']} records to read")
            qbo_before = qbo.stats(company.realm_id)
            crm.reset_counters(portal.portal_id)
            started = time.perf_counter()
            report = await service.backfill.run(company.realm_id)
            wall = time.perf_counter() - started
    finally:
        await service.aclose()  # its QBO and CRM clients' connections
    qbo_after = qbo.stats(company.realm_id)
    counters = crm.counters(portal.portal_id)
    print(
        f"backfill {report.state}: read {report.read}, created {report.created}, "
        f"updated {report.updated}, failed {report.failed}"
    )
    print(f"wall time: {wall:.1f} s")
    print(
        f"QBO calls: {qbo_after['requests'] - qbo_before['requests']} "
        f"(429s: {qbo_after['throttled'] - qbo_before['throttled']})"
    )
    print(f"CRM calls: {counters['total']} (429s: {counters['rateLimited']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kafka = start_kafka(Path(tmp) / "kafka")
        mongo = start_mongo(Path(tmp) / "mongo")
        qbo = start_sandbox("--seed", "none")
        try:
            with running_sandbox() as crm:
                asyncio.run(
                    bench(kafka.address, mongo.address, qbo, crm.base_url, crm, args.customers)
                )
        finally:
            stop_sandbox(qbo)
            mongo.stop()
            kafka.stop()


if __name__ == "__main__":
    main()
