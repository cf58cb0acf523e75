"""Periodic work: once per cluster, and one tenant's failure never stops a pass.

Every replica of a service runs the same timers (`ServiceRuntime.every`). A leased job runs
its pass only in the replica that holds the job's lease: one document per job in the
service's own database, taken with one conditional update when it is free, expired or
already the caller's. The holder takes it again at each of its passes (so it keeps the job),
renews it while a pass runs, and leaves it to expire when it stops; another replica, polling
a few times per period, takes over once it has expired. The lease lasts one period (at least
`periodic_lease_min_seconds`), so a crashed holder's work moves within about one period.

Passes over tenants (realms, portals) go through `each_tenant`: a tenant that raises is
logged, counted and reported, and the pass goes on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from dealbooks_kit.logging import get_logger, redact
from dealbooks_kit.metrics import PERIODIC_FAILURES, PERIODIC_PASSES, PERIODIC_TENANT_FAILURES

log = get_logger(__name__)

LEASES = "periodic_leases"
Doc = dict[str, Any]
Job = Callable[[], Awaitable[object]]
Clock = Callable[[], datetime]


def utc_today() -> date:
    """Today's date in UTC: the default day of handlers whose rules go by dates (tests give
    them another)."""
    return datetime.now(UTC).date()


def _now() -> datetime:
    return datetime.now(UTC)


def process_holder() -> str:
    """A holder id for one process (one runtime): host and pid for people, random for
    uniqueness (pids repeat across containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class JobLeases:
    """The lease documents of one service's periodic jobs (`periodic_leases`, one per job).

    Taking a lease is one `findAndModify` whose filter admits a free, expired or own lease;
    the first lease of a job is created by the same call's upsert, and of two replicas
    creating it at once the loser gets a duplicate key, i.e. no lease.
    """

    def __init__(self, db: AsyncDatabase[Doc], service: str, holder: str) -> None:
        self._c = db[LEASES]
        self.service = service
        self.holder = holder

    def _id(self, job: str) -> str:
        return f"{self.service}:{job}"

    async def acquire(self, job: str, seconds: float, now: datetime) -> bool:
        """Take (or keep) the job's lease for `seconds` from `now`; False if another holds it."""
        free = [{"holder": self.holder}, {"expires_at": {"$lte": now}}]
        try:
            doc = await self._c.find_one_and_update(
                {"_id": self._id(job), "$or": free},
                {
                    "$set": {
                        "holder": self.holder,
                        "expires_at": now + timedelta(seconds=seconds),
                        "acquired_at": now,
                        "service": self.service,
                        "job": job,
                    }
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # held by another: the upsert tried to create it again
            return False
        return doc is not None and doc.get("holder") == self.holder

    async def renew(self, job: str, seconds: float, now: datetime) -> bool:
        """Extend a lease this holder has; False if it was lost meanwhile."""
        result = await self._c.update_one(
            {"_id": self._id(job), "holder": self.holder},
            {"$set": {"expires_at": now + timedelta(seconds=seconds)}},
        )
        return result.matched_count == 1


@dataclass(frozen=True)
class PeriodicJob:
    """A timer: `job` every `seconds`; `leased` ones run in one replica at a time."""

    name: str
    seconds: float
    job: Job
    leased: bool = True


async def run_unleased(job: PeriodicJob) -> None:
    """Every `seconds` in this replica, whatever the others do (first run at once)."""
    while True:
        await _run_pass(job)
        await asyncio.sleep(job.seconds)


async def run_leased(
    job: PeriodicJob, leases: JobLeases, min_lease_seconds: float, clock: Clock = _now
) -> None:
    """Every `seconds` in whichever replica holds the job's lease (first try at once).

    The holder keeps the lease from pass to pass (it expires a period after the holder's
    last pass ended); the others ask a few times per period, so they take over soon after
    it expires."""
    lease = max(job.seconds, min_lease_seconds)
    poll = min(job.seconds, lease) / 4
    while True:
        try:
            held = await leases.acquire(job.name, lease, clock())
        except Exception as exc:  # the database is away: no pass here, ask again soon
            PERIODIC_FAILURES.labels(job.name).inc()
            log.warning("periodic lease not reached", job=job.name, error=_error(exc))
            held = False
        if not held:
            PERIODIC_PASSES.labels(job.name, "skipped").inc()
            await asyncio.sleep(poll)
            continue
        async with _renewing(job.name, leases, lease, clock):
            await _run_pass(job)
        with contextlib.suppress(Exception):  # the lease runs a period from the pass's end
            await leases.renew(job.name, lease, clock())
        await asyncio.sleep(job.seconds)


async def _run_pass(job: PeriodicJob) -> None:
    PERIODIC_PASSES.labels(job.name, "ran").inc()
    try:
        await job.job()
    except Exception as exc:  # a failed run is logged; the next one tries again
        PERIODIC_FAILURES.labels(job.name).inc()
        log.warning("periodic job failed", job=job.name, error=_error(exc))


@contextlib.asynccontextmanager
async def renewing(every: float, renew: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Call `renew` every `every` seconds while the block runs (a lease kept alive through
    work longer than it); one that raises is called again at the next beat."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await renew()
            except Exception as exc:
                log.warning("lease not renewed", error=_error(exc))

    task = asyncio.create_task(beat(), name="renewing")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _renewing(
    name: str, leases: JobLeases, lease: float, clock: Clock
) -> contextlib.AbstractAsyncContextManager[None]:
    """Keep the lease alive while a pass runs longer than a fraction of it."""

    async def renew() -> None:
        if not await leases.renew(name, lease, clock()):
            log.warning("periodic lease lost during a pass", job=name)

    return renewing(lease / 3, renew)


@dataclass
class TenantPass:
    """What one pass over tenants did: the sum of what each tenant's work returned, and the
    tenants whose work raised, with the error (secrets redacted)."""

    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)


async def each_tenant(
    job: str,
    tenants: Iterable[str],
    work: Callable[[str], Awaitable[int]],
    *,
    kind: str = "tenant",
) -> TenantPass:
    """Run `work` for every tenant in turn; one that raises is logged (with `kind`: realm,
    portal), counted (`dealbooks_periodic_tenant_failures_total{job}`) and reported, and the
    pass goes on with the next."""
    report = TenantPass()
    for tenant in tenants:
        try:
            report.done += await work(tenant)
        except Exception as exc:
            report.failed[tenant] = _error(exc)
            PERIODIC_TENANT_FAILURES.labels(job).inc()
            log.warning(
                "periodic pass failed for one tenant; the others go on",
                job=job,
                **{kind: tenant},
                error=report.failed[tenant],
            )
    return report


def _error(exc: BaseException) -> str:
    return str(redact(f"{type(exc).__name__}: {exc}"))


__all__ = [
    "LEASES",
    "JobLeases",
    "PeriodicJob",
    "TenantPass",
    "each_tenant",
    "process_holder",
    "run_leased",
    "run_unleased",
]
