"""Periodic jobs across replicas, on a real MongoDB-wire server: a leased job runs once per
period across two runtimes, moves to the other when its holder stops, and a pass over
tenants goes on past one that fails."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from dealbooks_kit import ServiceRuntime
from dealbooks_kit.periodic import JobLeases, each_tenant
from prometheus_client import REGISTRY

from .conftest import MakeSettings

pytestmark = pytest.mark.integration

PERIOD = 0.5


def passes(job: str, outcome: str) -> float:
    labels = {"job": job, "outcome": outcome}
    return REGISTRY.get_sample_value("dealbooks_periodic_passes_total", labels) or 0


class Replicas:
    """Runtimes of one service on one database, each running a job that notes its passes."""

    def __init__(self, kit_settings: MakeSettings, job: str, *, leased: bool = True) -> None:
        self.job = job
        self.runs: list[tuple[float, str]] = []  # (loop time, replica)
        self.runtimes = {
            name: self._runtime(kit_settings, name, leased) for name in ("first", "second")
        }

    def _runtime(self, kit_settings: MakeSettings, name: str, leased: bool) -> ServiceRuntime:
        runtime = ServiceRuntime(kit_settings(periodic_lease_min_seconds=PERIOD))

        async def count() -> None:
            self.runs.append((asyncio.get_running_loop().time(), name))

        runtime.every(self.job, PERIOD, count, leased=leased)
        return runtime

    async def start(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.start_periodic()

    async def stop(self, name: str) -> None:
        runtime = self.runtimes.pop(name)
        await runtime.stop_periodic()
        await runtime.mongo.close()

    async def stop_all(self) -> None:
        for name in list(self.runtimes):
            await self.stop(name)


def gaps(runs: list[tuple[float, str]]) -> list[float]:
    times = sorted(t for t, _ in runs)
    return [b - a for a, b in itertools.pairwise(times)]


async def test_leased_job_runs_once_per_period_across_two_replicas(
    kit_settings: MakeSettings,
) -> None:
    job = f"count-{uuid.uuid4().hex[:8]}"
    replicas = Replicas(kit_settings, job)
    await replicas.start()
    try:
        await asyncio.sleep(8 * PERIOD)
    finally:
        await replicas.stop_all()

    between = gaps(replicas.runs)
    assert len(replicas.runs) >= 6, replicas.runs
    # Never two passes in one period, and no period without one.
    assert min(between) > 0.8 * PERIOD, replicas.runs
    assert max(between) < 2 * PERIOD, replicas.runs
    assert passes(job, "ran") == len(replicas.runs)
    assert passes(job, "skipped") > 0  # the other replica asked and stood back


async def test_other_replica_takes_the_job_over_within_a_period_after_its_holder_stops(
    kit_settings: MakeSettings,
) -> None:
    replicas = Replicas(kit_settings, f"count-{uuid.uuid4().hex[:8]}")
    await replicas.start()
    try:
        await asyncio.sleep(4 * PERIOD)
        holder = replicas.runs[-1][1]
        await replicas.stop(holder)
        stopped = asyncio.get_running_loop().time()
        await asyncio.sleep(4 * PERIOD)
    finally:
        await replicas.stop_all()

    before = [r for r in replicas.runs if r[0] <= stopped]
    after = [r for r in replicas.runs if r[0] > stopped]
    assert {name for _, name in before[1:]} == {holder}, replicas.runs  # it kept the lease
    assert after and {name for _, name in after} == {"first", "second"} - {holder}
    assert after[0][0] - stopped < 2 * PERIOD, replicas.runs
    assert min(gaps(replicas.runs)) > 0.8 * PERIOD, replicas.runs


async def test_unleased_job_runs_in_every_replica(kit_settings: MakeSettings) -> None:
    replicas = Replicas(kit_settings, f"count-{uuid.uuid4().hex[:8]}", leased=False)
    await replicas.start()
    try:
        await asyncio.sleep(2 * PERIOD)
    finally:
        await replicas.stop_all()

    assert {name for _, name in replicas.runs} == {"first", "second"}


async def test_first_lease_of_a_job_goes_to_exactly_one_of_two_replicas(
    kit_settings: MakeSettings,
) -> None:
    runtime = ServiceRuntime(kit_settings())
    try:
        leases = [JobLeases(runtime.db, "kit-test", f"replica-{i}") for i in range(4)]
        now = datetime.now(UTC)
        won = await asyncio.gather(*(lease.acquire("fresh", 60, now) for lease in leases))
        assert sum(won) == 1
        winner = leases[won.index(True)]
        assert await winner.acquire("fresh", 60, now)  # its own lease, taken again
        loser = leases[won.index(False)]
        assert not await loser.acquire("fresh", 60, now + timedelta(seconds=59))
        assert await loser.acquire("fresh", 60, now + timedelta(seconds=61))  # expired
        assert not await winner.renew("fresh", 60, now + timedelta(seconds=62))
    finally:
        await runtime.mongo.close()


async def test_a_failing_tenant_is_reported_and_the_pass_goes_on() -> None:
    job = f"sweep-{uuid.uuid4().hex[:8]}"

    async def work(realm: str) -> int:
        if realm == "realm-2":
            raise PermissionError("refresh_token=abc123 revoked")
        return 1

    report = await each_tenant(job, ["realm-1", "realm-2", "realm-3"], work, kind="realm")

    assert report.done == 2
    assert list(report.failed) == ["realm-2"]
    assert "abc123" not in report.failed["realm-2"]
    failures = REGISTRY.get_sample_value("dealbooks_periodic_tenant_failures_total", {"job": job})
    assert failures == 1
