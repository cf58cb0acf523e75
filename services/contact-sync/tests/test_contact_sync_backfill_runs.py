"""Durable backfill runs: one per account at a time, paused at the operator's call caps,
resumed from their cursor after the holder dies, writing no CRM record twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from dealbooks_infra.sync_world import OPERATOR, SyncStack, backfill_client
from dealbooks_infra.testing import eventually, qbo_faults
from dealbooks_sync.parts import SyncParts

pytestmark = pytest.mark.integration

PAGE = 100  # QBO records per query page in these tests, so a few hundred make pages


@pytest.fixture
def contacts_settings() -> dict[str, Any]:
    """Pages of PAGE records; leases and checks of a second or less."""
    return {
        "backfill_page_size": PAGE,
        "backfill_lease_seconds": 1.0,
        "backfill_check_seconds": 0.3,
        "periodic_lease_min_seconds": 0.5,
    }


@dataclass
class Account:
    """The account whose backfill a test drives, through the operator's routes at `path`."""

    stack: SyncStack
    service: SyncParts
    seed_customers: Callable[[str, int, str], Awaitable[None]]
    crm_sandbox: Any
    crm_portal: Any

    @property
    def path(self) -> str:
        return f"/portals/{self.stack.portal_id}/accounts/{self.stack.realm_id}/backfill"

    async def ready(self, n: int) -> int:
        """Seed `n` customers (the sandbox company has a few of its own), switch sync on; the
        number of customers a run reads."""
        await self.seed_customers(self.stack.realm_id, n, "Run")
        await self.stack.settings(enabled=True)  # makes the CRM properties before the reset
        self.crm_sandbox.reset_counters(self.crm_portal.portal_id)
        total = int((await self.service.backfill.dry_run(self.stack.realm_id))["records"])
        assert n <= total < n + 50  # the page arithmetic below holds
        return total

    def crm_writes(self) -> int:
        return int(self.crm_sandbox.counters(self.crm_portal.portal_id)["total"])

    def operator(self) -> httpx.AsyncClient:
        return backfill_client(self.service, OPERATOR)


@pytest.fixture
def account(contacts, seed_customers, crm_sandbox, crm_portal) -> Account:
    stack, service = contacts
    return Account(stack, service, seed_customers, crm_sandbox, crm_portal)


def _outcomes(run: dict[str, Any]) -> int:
    return int(sum(run[k] for k in ("created", "updated", "unchanged", "failed")))


async def _settled(api: httpx.AsyncClient, path: str, *states: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = (await api.get(path)).json()
        return run if run.get("state") in states else None

    result: dict[str, Any] = await eventually(reached, timeout=60)
    return result


async def test_a_run_pauses_at_its_cap_and_a_dead_holders_run_resumes_without_rewriting(
    account: Account, crm_sandbox, crm_portal
) -> None:
    total = await account.ready(250)
    path = account.path
    async with account.operator() as api:
        started = await api.post(path, json={"max_crm_calls": 1})
        assert started.status_code == 202, started.text
        first = await _settled(api, path, "paused")
        assert first["reason"] == "cap reached"
        assert first["calls"] == {"qbo": 2, "crm": 1}  # page 2 read, but not written
        assert (first["read"], _outcomes(first), first["cursor"]["start"]) == (100, 100, 101)
        assert account.crm_writes() == 1

        resumed = await api.post(f"{path}/resume", params={"max_crm_calls": 2})
        assert resumed.status_code == 202, resumed.text
        second = await _settled(api, path, "paused")
        assert (second["read"], _outcomes(second), second["cursor"]["start"]) == (200, 200, 201)
        created = second["created"]
        assert second["calls"]["crm"] == 2 == account.crm_writes()

        # A holder that wrote page 2 and died before saving its cursor: running, lease gone.
        await account.service.runtime.db["backfills"].update_one(
            {"_id": account.stack.realm_id},
            {
                "$set": {
                    "state": "running",
                    "holder": "a-replica-that-died",
                    "lease_expires_at": datetime.now(UTC) - timedelta(seconds=1),
                    "cursor": {"start": 101, "last_id": None},
                    "caps": {"qbo": 10, "crm": 10},
                }
            },
        )
        done = await _settled(api, path, "done")
    assert done["run_id"] == started.json()["run_id"]
    # Page 2 was read again and found unchanged (fingerprints): no CRM call for it.
    assert done["unchanged"] == 100 and done["created"] == created + (total - 200) - (
        done["failed"] - second["failed"]
    )
    assert account.crm_writes() == 3 == done["calls"]["crm"]
    assert len(crm_sandbox.objects(crm_portal.portal_id, "contacts")) == done["created"]


async def test_a_run_whose_process_stopped_mid_run_is_resumed_by_the_periodic_check(
    account: Account, qbo_sandbox, crm_sandbox, crm_portal
) -> None:
    total = await account.ready(450)
    path = account.path
    # Each QuickBooks read takes seconds, so the driver is stopped in the middle of the run,
    # however fast the machine pages.
    async with account.operator() as api:
        with qbo_faults(qbo_sandbox, realm_id=account.stack.realm_id, latency_ms=1500):
            started = await api.post(path)
            assert started.status_code == 202

            async def past_first_page() -> bool:
                return bool((await api.get(path)).json()["cursor"]["start"] > 1)

            await eventually(past_first_page, timeout=60)
            await account.service.backfill.stop(release=False)  # the driver dies; its lease stays
        stopped = (await api.get(path)).json()
        assert stopped["state"] == "running"
        done = await _settled(api, path, "done")
    # Counts move with the cursor, so a page cut short is counted once, when it is redone.
    assert done["read"] == total == _outcomes(done)
    contacts = crm_sandbox.objects(crm_portal.portal_id, "contacts")
    assert len(contacts) == total - done["failed"]
    # Five pages, one CRM batch each; a page cut between its CRM write and its links may be
    # written once more, no other.
    assert account.crm_writes() <= 5 + 1
    assert done["calls"]["qbo"] <= 5 + 1


async def test_two_starts_at_once_give_one_run_which_can_be_cancelled(account: Account) -> None:
    await account.ready(150)
    path = account.path
    async with account.operator() as api:
        one, two = await asyncio.gather(
            api.post(path, params={"max_crm_calls": 0}), api.post(path, params={"max_crm_calls": 0})
        )
        answers = sorted([one, two], key=lambda r: r.status_code)
        assert [r.status_code for r in answers] == [202, 409]
        assert answers[1].json()["run"]["run_id"] == answers[0].json()["run_id"]
        paused = await _settled(api, path, "paused")  # a zero CRM cap writes nothing
        assert paused["calls"] == {"qbo": 1, "crm": 0}
        again = await api.post(path)
        assert again.status_code == 409  # a paused run is still the account's run

        cancelled = await api.post(f"{path}/cancel")
        assert cancelled.json()["state"] == "cancelled"
        assert (await api.post(f"{path}/cancel")).status_code == 409
        assert (await api.post(f"{path}/resume")).status_code == 409
        assert (await api.post(path, params={"max_crm_calls": "lots"})).status_code == 400
        plan = (await api.post(path, params={"dry_run": "true", "max_qbo_calls": 1})).json()
        assert plan["state"] == "planned" and plan["records"] >= 150
        assert plan["qbo_calls"] == 2 and plan["within_caps"] is False  # 100 per page
        fresh = await api.post(path)
        assert fresh.status_code == 202
        assert fresh.json()["run_id"] != answers[0].json()["run_id"]
        await _settled(api, path, "done")
    assert account.crm_writes() == 2
