"""The operator-started backfill: a dry-run count, then paged QBO queries (1,000 per call) and
CRM batch upserts (100 per call) inside both rate limits."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from contact_sync.api import backfill_api
from dealbooks_contracts import SyncAction
from dealbooks_infra.testing import eventually

pytestmark = pytest.mark.integration

SEEDED = 1_050


def _seed(qbo_sandbox, realm: str, n: int) -> None:
    def one(i: int) -> None:
        qbo_sandbox.user_creates(
            realm,
            "customers",
            {"DisplayName": f"Backfill {i}", "PrimaryEmailAddr": {"Address": f"b{i}@example.com"}},
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(n)))


async def test_backfill_of_existing_customers_uses_pages_and_batches_without_429s(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = contacts
    realm = qbo_company.realm_id
    await asyncio.to_thread(_seed, qbo_sandbox, realm, SEEDED)
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=backfill_api(service.backfill)), base_url="http://cs"
    )
    refused = await api.post(f"/accounts/{realm}/backfill")
    assert refused.status_code == 409  # sync is still switched off
    await stack.settings(enabled=True)

    count = (await api.post(f"/accounts/{realm}/backfill?dry_run=true")).json()
    total = count["records"]
    assert total >= SEEDED
    assert crm_sandbox.objects(crm_portal.portal_id, "contacts") == []

    qbo_before = qbo_sandbox.stats(realm)
    crm_sandbox.reset_counters(crm_portal.portal_id)
    started = await api.post(f"/accounts/{realm}/backfill")
    assert started.status_code == 202

    async def finished() -> dict[str, Any] | None:
        report = (await api.get(f"/accounts/{realm}/backfill/{started.json()['run_id']}")).json()
        return report if report["state"] != "running" else None

    report = await eventually(finished, timeout=120)
    await api.aclose()
    assert report["state"] == "done", report
    assert report["read"] == total
    assert report["created"] >= SEEDED
    qbo_after = qbo_sandbox.stats(realm)
    crm = crm_sandbox.counters(crm_portal.portal_id)
    assert qbo_after["requests"] - qbo_before["requests"] <= total // 1000 + 1
    assert qbo_after["throttled"] == qbo_before["throttled"]
    assert crm["total"] <= -(-total // 100) + 1
    assert crm["rateLimited"] == 0
    contacts_now = crm_sandbox.objects(crm_portal.portal_id, "contacts")
    assert len(contacts_now) == report["created"]

    # A second run finds every linked customer unchanged and writes nothing.
    again = await service.backfill.run(realm)
    assert again.unchanged == report["created"] + report["updated"]
    assert crm_sandbox.counters(crm_portal.portal_id)["total"] == crm["total"]
    # Every created contact was announced, so the mapping status counts it.
    await eventually(lambda: _created_events_at_least(stack, report["created"]))


async def _created_events_at_least(stack, n: int) -> bool:
    created = [
        e
        for e in stack.events
        if e.type == "contact.synced"
        and e.data.trigger == "backfill"
        and e.data.action is SyncAction.CREATED
    ]
    return len(created) >= n
