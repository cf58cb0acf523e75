"""The operator-started backfill: a dry-run count, then paged QBO queries (1,000 per call) and
CRM batch upserts (100 per call) inside both rate limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from dealbooks_contracts import Envelope, PortalInstalled, SyncAction, Tenant
from dealbooks_infra.sync_world import (
    BACKFILL_REFUSALS,
    OPERATOR,
    backfill_client,
    grant,
    refused_backfills,
)
from dealbooks_infra.testing import eventually

pytestmark = pytest.mark.integration

SEEDED = 1_050


async def test_backfill_of_existing_customers_uses_pages_and_batches_without_429s(
    contacts, seed_customers, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = contacts
    realm = qbo_company.realm_id
    await seed_customers(realm, SEEDED, "Backfill")
    api = backfill_client(service, OPERATOR)
    backfill = f"/portals/{stack.portal_id}/accounts/{realm}/backfill"
    refused = await api.post(backfill)
    assert refused.status_code == 409  # sync is still switched off
    await stack.settings(enabled=True)

    count = (await api.post(f"{backfill}?dry_run=true")).json()
    total = count["records"]
    assert total >= SEEDED
    assert crm_sandbox.objects(crm_portal.portal_id, "contacts") == []

    qbo_before = qbo_sandbox.stats(realm)
    crm_sandbox.reset_counters(crm_portal.portal_id)
    started = await api.post(backfill)
    assert started.status_code == 202

    async def finished() -> dict[str, Any] | None:
        report = (await api.get(f"{backfill}/{started.json()['run_id']}")).json()
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


async def test_backfill_is_for_an_operator_or_the_portals_admin_and_refusals_start_nothing(
    contacts,
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)  # a backfill would run now, if it were let
    mine = f"/portals/{stack.portal_id}/accounts/{stack.realm_id}/backfill"
    runs = service.runtime.db["backfills"]
    await runs.insert_one({"_id": "run-of-another-account", "realm_id": "another-realm"})

    statuses = await refused_backfills(service, stack.portal_id, stack.realm_id)
    async with backfill_client(service, grant(stack.portal_id)) as admin:
        counted = await admin.post(f"{mine}?dry_run=true")
        foreign_run = await admin.get(f"{mine}/run-of-another-account")

    assert statuses == BACKFILL_REFUSALS
    assert counted.status_code == 200 and counted.json()["records"] >= 1
    assert foreign_run.status_code == 404
    assert await runs.count_documents({"realm_id": stack.realm_id}) == 0


async def test_a_portal_back_after_an_uninstall_has_its_customers_caught_up(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    realm = qbo_company.realm_id
    await stack.settings(enabled=True)
    # Made in QuickBooks while the app was gone from the portal: its change was settled
    # unsynced (here: never announced at all).
    qbo_sandbox.user_creates(
        realm,
        "customers",
        {"DisplayName": "While Away Ltd", "PrimaryEmailAddr": {"Address": "away@example.com"}},
    )
    back = PortalInstalled(installed_at=datetime.now(UTC), reinstall=True, scopes=["oauth"])
    await stack.sync.publisher.publish(
        Envelope.build(back, source="connector-auth", tenant=Tenant(portal_id=stack.portal_id))
    )

    async def caught_up() -> bool:
        contacts_now = crm_sandbox.objects(crm_portal.portal_id, "contacts")
        return any(c["properties"].get("email") == "away@example.com" for c in contacts_now)

    await eventually(caught_up, timeout=60)
