"""One budget per company and per portal, shared by every service and replica.

QuickBooks counts 500 requests a minute, 10 a second and 10 at once per company; the CRM 110
requests per ten seconds per portal. Whoever calls, they count against the same limits, so
the budget belongs to the company or portal, not to a process.

How it is shared: send times leased from MongoDB. Per scope (the API: "qbo", "qbo-batch",
"crm", "crm-search") and tenant (a realm, a portal) one document holds the next free send
time. A process that wants to call leases a few consecutive send times at once, spaced
`1 / rate` apart, by moving that time forward with one conditional update, and sends at the
times it was given. Every caller of every process draws from the same sequence, so:

- the limits hold across every service and replica, whatever their number: the sequence never
  has more than `rate * W + 1` send times in any window of `W` seconds, and `rate` is chosen
  (`dealbooks_http.sequence_rate`) to keep that under each window's limit;
- it is fair: a lease is small (one send time, up to `max_lease` when callers queue), so a
  service with a few calls waits behind at most a few leases of a busy one, never its queue;
- a send time not used soon after it came is dropped, never sent late, so a late send cannot
  crowd a window; an unused one only wastes capacity;
- MongoDB is on the path once per lease, not per request. When it is slow or away, a call
  waits no longer than `timeout_seconds` for a lease and then goes at a local pace of
  `rate / assume_holders`, logged and counted, until the database answers again.

Calls at once are held per process to the limit's concurrency (the shared pace keeps the
company's total near `rate` times a call's duration).

Within a process, a call a person waits on (`dealbooks_kit.priority`) takes the tenant's next
send time and call slot ahead of the background calls queued for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from dealbooks_http import Limits, sequence_rate
from dealbooks_http._metrics import observe_budget_wait
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from dealbooks_kit.logging import get_logger
from dealbooks_kit.priority import PriorityGate, a_person_waits

log = get_logger(__name__)

SEND_TIMES = "budget_send_times"
LEASE_FALLBACKS = Counter(
    "dealbooks_budget_local_fallbacks_total",
    "Calls paced locally because the shared budget's database did not answer in time",
    ["scope"],
)


@dataclass
class _Tenant:
    """One tenant's budget in this process: send times leased and not yet used, the calls in
    flight, and how many callers wait."""

    gate: PriorityGate
    lock: PriorityGate = field(default_factory=lambda: PriorityGate(1))
    times: list[float] = field(default_factory=list)
    waiting: int = 0
    local_next: float = 0.0


@dataclass
class SharedBudget:
    """The budget of one scope (an API's limits) for every tenant: the
    `dealbooks_http.Budget` a client takes."""

    owner: SharedBudgets
    scope: str
    limits: Limits
    tenants: dict[str, _Tenant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rate = sequence_rate(self.limits)

    @asynccontextmanager
    async def slot(self, key: str, weight: int = 1, *, host: str = "") -> AsyncIterator[None]:
        """Wait for tenant `key`'s next send time(s) and hold a call slot for the request."""
        tenant = self.tenants.get(key)
        if tenant is None:
            tenant = self.tenants[key] = _Tenant(PriorityGate(self.limits.concurrency))
        started = time.perf_counter() if host else 0.0
        person = a_person_waits()
        async with tenant.gate.held(person):
            for _ in range(max(1, weight)):
                await self._send_time(key, tenant, person)
            if host:
                observe_budget_wait(host, time.perf_counter() - started)
            yield

    async def _send_time(self, key: str, tenant: _Tenant, person: bool) -> None:
        tenant.waiting += 1
        try:
            async with tenant.lock.held(person):
                at = await self._next(key, tenant)
                delay = at - self.owner.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            tenant.waiting -= 1

    async def _next(self, key: str, tenant: _Tenant) -> float:
        now = self.owner.clock()
        # A send time gone by more than a moment is dropped: sent now, it could crowd the
        # window of the send times after it.
        late = now - self.owner.late_seconds
        tenant.times = [t for t in tenant.times if t >= late]
        if not tenant.times:
            count = max(1, min(self.owner.max_lease, tenant.waiting))
            try:
                first = await asyncio.wait_for(
                    self.owner.lease(self.scope, key, count, 1.0 / self.rate),
                    self.owner.timeout_seconds,
                )
            except Exception as exc:
                LEASE_FALLBACKS.labels(self.scope).inc()
                log.warning(
                    "shared budget unavailable; pacing locally",
                    scope=self.scope,
                    error=type(exc).__name__,
                )
                spacing = self.owner.assume_holders / self.rate
                tenant.local_next = max(tenant.local_next + spacing, now)
                return tenant.local_next
            tenant.times = [first + i / self.rate for i in range(count)]
        return tenant.times.pop(0)


class SharedBudgets:
    """The shared budgets of one process (see the module docstring); `budget(scope, limits)`
    makes the `dealbooks_http.Budget` a client takes."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        max_lease: int = 4,
        late_seconds: float = 0.05,
        timeout_seconds: float = 0.5,
        assume_holders: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._times = db[SEND_TIMES]
        self.max_lease = max_lease
        self.late_seconds = late_seconds
        self.timeout_seconds = timeout_seconds
        self.assume_holders = assume_holders
        # Wall-clock time: every process on every node reads the same sequence.
        self.clock = clock
        self._budgets: dict[tuple[str, Limits], SharedBudget] = {}

    def budget(self, scope: str, limits: Limits) -> SharedBudget:
        """The budget of `scope` under `limits`, for every tenant (one per process)."""
        budget = self._budgets.get((scope, limits))
        if budget is None:
            budget = self._budgets[(scope, limits)] = SharedBudget(self, scope, limits)
        return budget

    async def lease(self, scope: str, key: str, count: int, spacing: float) -> float:
        """Take `count` consecutive send times `spacing` apart from the tenant's sequence;
        returns the first. One read and one conditional update (again, when another
        process leased meanwhile)."""
        _id = f"{scope}|{key}"
        for _ in range(20):
            now = self.clock()
            doc = await self._times.find_one({"_id": _id})
            if doc is None:
                try:
                    await self._times.insert_one({"_id": _id, "next": now + count * spacing})
                except DuplicateKeyError:
                    continue
                return now
            first = max(float(doc["next"]), now)
            moved = await self._times.update_one(
                {"_id": _id, "next": doc["next"]}, {"$set": {"next": first + count * spacing}}
            )
            if moved.modified_count == 1:
                return first
        raise TimeoutError(f"no send time leased for {scope} after 20 tries")

    async def forget_idle(self) -> int:
        """Delete sequences whose next send time is an hour past (idle tenants)."""
        result = await self._times.delete_many({"next": {"$lt": self.clock() - 3600.0}})
        return int(result.deleted_count)
