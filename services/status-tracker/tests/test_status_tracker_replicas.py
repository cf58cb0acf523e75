"""Two status-tracker processes (`python -m status_tracker`, as in production) on one Kafka
broker and one MongoDB-wire server: each leased timer runs once per period across both, and
when the process holding a job's lease is SIGKILLed the other takes the job over within about
a period.

What ran where is read from each process's own `/metrics`
(`dealbooks_periodic_passes_total{job,outcome}`) and from the shared `periodic_leases`
collection, whose holder names the process (`host:pid:random`)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dealbooks_infra.process import ManagedProcess
from dealbooks_infra.stack import start_service
from dealbooks_infra.testing import eventually
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration

PERIOD = 2.0  # seconds: the overdue and reconciliation timers
SHORT_JOBS = ("overdue-clock", "reconciliation")
# The kit's own timers of status-tracker, each with a period of an hour or a day: over the
# test each must have run exactly once in the two processes together.
LONG_JOBS = ("dedupe-pruning", "audit-retention")
Passes = dict[tuple[str, str], float]


@dataclass
class Replica:
    process: ManagedProcess
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    async def passes(self, http: httpx.AsyncClient) -> Passes:
        """`dealbooks_periodic_passes_total` of this process, by (job, outcome)."""
        answer = await http.get(f"{self.url}/metrics")
        answer.raise_for_status()
        found: Passes = {}
        for family in text_string_to_metric_families(answer.text):
            if family.name != "dealbooks_periodic_passes":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(sample.labels["job"], sample.labels["outcome"])] = sample.value
        return found


def ran(passes: Passes, job: str) -> float:
    return passes.get((job, "ran"), 0.0)


@pytest.fixture
def replicas(
    kafka_bootstrap: str,
    mongo_uri: str,
    namespace: str,
    kafka_supports_idempotence: bool,
    tmp_path: Path,
) -> Iterator[list[Replica]]:
    env = {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_IDEMPOTENCE": str(kafka_supports_idempotence).lower(),
        "MONGODB_URI": mongo_uri,
        "TOPIC_PREFIX": f"{namespace}.",
        "STATUS_TRACKER_MONGODB_DATABASE": f"{namespace}_status_tracker",
        "STATUS_TRACKER_LOG_JSON": "false",
        "STATUS_TRACKER_OVERDUE_INTERVAL_SECONDS": str(PERIOD),
        "STATUS_TRACKER_RECONCILE_INTERVAL_SECONDS": str(PERIOD),
        "STATUS_TRACKER_PERIODIC_LEASE_MIN_SECONDS": str(PERIOD),
        # Nothing is connected: the passes find no portal or company, and call nobody.
        "QBO_BASE_URL": "http://127.0.0.1:9",
        "CRM_BASE_URL": "http://127.0.0.1:9",
        "CONNECTOR_AUTH_URL": "http://127.0.0.1:9",
        "CONNECTOR_AUTH_CREDENTIAL": "replicas-test-service",
        "DEALBOOKS_OPERATOR_CREDENTIALS": "replicas-test-operator",
        "DEALBOOKS_GRANT_KEYS": "g1:replicas-test-grant-key-0123456789",
    }
    started: list[Replica] = []
    try:
        for n in range(2):
            process, url = start_service("status-tracker", env, tmp_path / f"replica-{n}")
            started.append(Replica(process, url))
        yield started
    finally:
        for replica in started:
            replica.process.stop()


async def leases(mongo_uri: str, namespace: str) -> dict[str, str]:
    """Each job's lease holder, by job."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        cursor = client[f"{namespace}_status_tracker"]["periodic_leases"].find({})
        return {str(doc["job"]): str(doc["holder"]) async for doc in cursor}
    finally:
        await client.close()


def pid_of(holder: str) -> int:
    return int(holder.split(":")[-2])


async def test_each_leased_job_runs_once_per_period_across_two_processes_and_moves_on_a_kill(
    replicas: list[Replica], mongo_uri: str, namespace: str
) -> None:
    pids = {r.pid for r in replicas}
    async with httpx.AsyncClient(timeout=5.0) as http:

        async def both_polling() -> bool:
            # Each short job has a lease, and each process has asked for it: a process starts
            # its timers once its consumers have joined their groups, which for the second
            # one means a rebalance of each group in turn (seconds each).
            held = await leases(mongo_uri, namespace)
            counted = [await r.passes(http) for r in replicas]
            return all(job in held for job in SHORT_JOBS) and all(
                p.get((job, "ran"), 0) + p.get((job, "skipped"), 0) >= 1
                for p in counted
                for job in SHORT_JOBS
            )

        await eventually(both_polling, timeout=60)
        held = await leases(mongo_uri, namespace)
        assert {pid_of(h) for h in held.values()} <= pids

        # Watched until each short job has run five times in the two together, however long
        # that takes on a busy machine; then what ran is held against the time it took.
        before = [await r.passes(http) for r in replicas]
        started = asyncio.get_running_loop().time()

        def made(after: list[Passes], job: str) -> list[float]:
            return [ran(a, job) - ran(b, job) for a, b in zip(after, before, strict=True)]

        async def five_passes_each() -> bool:
            after = [await r.passes(http) for r in replicas]
            return all(sum(made(after, job)) >= 5 for job in SHORT_JOBS)

        await eventually(five_passes_each, timeout=60, interval=0.2)
        after = [await r.passes(http) for r in replicas]
        periods = (asyncio.get_running_loop().time() - started) / PERIOD
        for job in SHORT_JOBS:
            each = made(after, job)
            # Once per period in the two together, where the two on their own would make
            # twice that. A pass starts a period after the last one ended, so the time
            # watched holds at most one pass more than its periods.
            assert sum(each) <= periods + 1, (job, each, periods)
            # And the process without the lease was alive and asking, refused meanwhile (it
            # asks four times a period; how many of those a loaded machine lets through is
            # not the point: that the bound above is not met by a process that never asked).
            skipped = [
                a.get((job, "skipped"), 0) - b.get((job, "skipped"), 0)
                for a, b in zip(after, before, strict=True)
            ]
            assert sum(skipped) >= 1, (job, skipped, each)
        for job in LONG_JOBS:
            assert sum(ran(a, job) for a in after) == 1, job

        # The holder of the reconciliation job dies without a word.
        holder = pid_of((await leases(mongo_uri, namespace))["reconciliation"])
        [dead] = [r for r in replicas if r.pid == holder]
        [alive] = [r for r in replicas if r.pid != holder]
        ran_before = ran(await alive.passes(http), "reconciliation")
        os.kill(dead.pid, signal.SIGKILL)

        async def taken_over() -> bool:
            held = await leases(mongo_uri, namespace)
            return (
                pid_of(held["reconciliation"]) == alive.pid
                and ran(await alive.passes(http), "reconciliation") > ran_before
            )

        # The lease runs out a period after the dead holder's last pass ended; the other
        # process asks four times a period.
        await eventually(taken_over, timeout=2 * PERIOD + 2, interval=0.1)
        # From then on it runs every job, once per period.
        start = await alive.passes(http)
        since = asyncio.get_running_loop().time()

        async def three_passes_each() -> bool:
            now = await alive.passes(http)
            return all(ran(now, job) - ran(start, job) >= 3 for job in SHORT_JOBS)

        await eventually(three_passes_each, timeout=60, interval=0.2)
        end = await alive.passes(http)
        periods = (asyncio.get_running_loop().time() - since) / PERIOD
        for job in SHORT_JOBS:
            assert ran(end, job) - ran(start, job) <= periods + 1, (job, periods)
