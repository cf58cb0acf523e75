"""One QuickBooks budget per company, shared by every process: several holders drawing on one
company at once on the real QuickBooks sandbox and MongoDB-wire server, and what a holder does
when the database does not answer."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dealbooks_crm import CrmLimits
from dealbooks_http import Limits, StaticTokenProvider, sequence_rate, windows_of
from dealbooks_kit.budgets import LEASE_FALLBACKS, SharedBudgets
from dealbooks_kit.priority import person_waiting
from dealbooks_qbo import QBO_BATCH_LIMITS, QBO_LIMITS, CompanyInfo, QboClient
from pymongo import AsyncMongoClient


@pytest.mark.parametrize(
    "limits",
    [QBO_LIMITS, QBO_BATCH_LIMITS, CrmLimits().standard(), CrmLimits().searches()],
    ids=["qbo", "qbo-batch", "crm", "crm-search"],
)
def test_the_shared_sequence_keeps_every_window_under_its_limit_and_uses_most_of_it(
    limits: Limits,
) -> None:
    rate = sequence_rate(limits)
    for window in limits.windows:
        # Send times `1 / rate` apart: at most rate * W + 1 of them in any W-second window.
        assert math.floor(rate * window.seconds) + 1 <= window.limit * limits.headroom
    longest = max(limits.windows, key=lambda w: w.seconds)
    if longest.limit >= 40:
        # Most of the allowance is used; a window of five a second cannot, as any window may
        # catch one more send time than its rate.
        assert rate * longest.seconds >= 0.8 * longest.limit


class Holder:
    """One process's view of one company: its own shared budgets, its own client."""

    def __init__(self, db: Any, base_url: str, realm: str, token: str) -> None:
        budgets = SharedBudgets(db)
        self.client = QboClient(
            base_url,
            StaticTokenProvider({realm: token}),
            budget=budgets.budget("qbo", QBO_LIMITS),
            batch_budget=budgets.budget("qbo-batch", QBO_BATCH_LIMITS),
        )
        self.company = self.client.company(realm)
        self.done = 0

    async def call(self, times: int) -> None:
        for _ in range(times):
            await self.company.read(CompanyInfo, self.company.realm_id)
            self.done += 1


@pytest.fixture
async def budget_db(mongo_uri: str, namespace: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    yield client[f"{namespace}_budgets"]
    await client.drop_database(f"{namespace}_budgets")
    await client.close()


@pytest.mark.integration
async def test_three_processes_calling_one_company_get_no_429_and_a_small_caller_is_not_queued(
    qbo_sandbox: Any, budget_db: Any
) -> None:
    company = qbo_sandbox.create_company(demo_data=False)
    realm = company.realm_id
    busy = [Holder(budget_db, qbo_sandbox.base_url, realm, company.access_token) for _ in range(3)]
    small = Holder(budget_db, qbo_sandbox.base_url, realm, company.access_token)
    before = qbo_sandbox.stats(realm)
    loop = asyncio.get_running_loop()

    started = loop.time()
    # Each busy process has eight callers, as a consumer's lanes would.
    work = [asyncio.create_task(h.call(4)) for h in busy for _ in range(8)]
    await asyncio.sleep(1.0)
    await small.call(3)
    busy_done_when_small_finished = sum(h.done for h in busy)
    await asyncio.gather(*work)
    elapsed = loop.time() - started
    after = qbo_sandbox.stats(realm)

    calls = after["requests"] - before["requests"]
    assert calls == 3 * 8 * 4 + 3
    assert after["throttled"] == before["throttled"]  # QuickBooks' own limits never hit
    assert after["max_per_second"] <= 10 and after["max_in_flight"] <= 10
    # Fair: the small caller's three calls did not wait behind the busy processes' queues.
    assert busy_done_when_small_finished < 3 * 8 * 4
    # Most of the company's allowance is used (500 a minute).
    assert calls / elapsed >= 0.8 * 500 / 60
    for holder in [*busy, small]:
        await holder.client.aclose()


class Unanswering(SharedBudgets):
    async def lease(self, scope: str, key: str, count: int, spacing: float) -> float:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_holder_whose_database_does_not_answer_paces_itself_locally(
    budget_db: Any,
) -> None:
    budgets = Unanswering(budget_db, timeout_seconds=0.05, assume_holders=4)
    budget = budgets.budget("qbo", QBO_LIMITS)
    before = LEASE_FALLBACKS.labels("qbo")._value.get()
    loop = asyncio.get_running_loop()

    started = loop.time()
    for _ in range(3):
        async with budget.slot("realm-1"):
            pass
    elapsed = loop.time() - started

    assert LEASE_FALLBACKS.labels("qbo")._value.get() == before + 3
    # A quarter of the shared rate: three calls take at least two of its intervals.
    assert elapsed >= 2 * 4 / sequence_rate(QBO_LIMITS)


@pytest.mark.integration
@pytest.mark.parametrize("marked", [True, False], ids=["a person waits", "nobody waits"])
async def test_a_call_a_person_waits_on_goes_ahead_of_the_queued_background_calls(
    budget_db: Any, marked: bool
) -> None:
    budgets = SharedBudgets(budget_db)
    budget = budgets.budget("qbo", Limits(windows_of((20, 1.0)), concurrency=10))
    done: list[str] = []

    async def call(who: str) -> None:
        async with budget.slot("realm-1"):
            done.append(who)

    jobs = [asyncio.create_task(call(f"job-{n}")) for n in range(8)]
    await asyncio.sleep(0.05)  # the jobs queue for the company's send times
    with person_waiting(marked):
        await call("rep")
    await asyncio.gather(*jobs)

    # The rep's search waits for the send time being waited for, not for the queue; unmarked,
    # the same call is served last.
    assert len(done) == 9
    if marked:
        assert done.index("rep") <= 2, done
    else:
        assert done.index("rep") == 8, done
