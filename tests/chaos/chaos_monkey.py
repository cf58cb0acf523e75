"""The chaos: a seeded schedule of SIGKILLs and injected faults, and the restarts.

Kills: a random service every `kill_every` seconds or so (0.6x to 1.4x), restarted after a
short pause as `dealbooks_infra.stack.start_service` starts it; once each, the Kafka broker
and the MongoDB-wire server, started again as `LocalStack` starts them (same port, same data
folder). One kill at a time. A process that exits without being killed is counted, and
started again.

Faults, through each sandbox's fault API, in two seeded sequences (QuickBooks, CRM) spread
over the run: a share of 5xx answers, 429 bursts, latency, dropped and duplicated webhooks,
and an expired access token. The CRM drops a webhook only while no deal-stage change is on
its way (see `crm_drop_webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chaos_world import Client, Figures, say
from dealbooks_infra.process import ManagedProcess
from dealbooks_infra.servers import (
    Server,
    start_apache_kafka,
    start_ferretdb,
    start_secantus,
    start_tansu,
)
from dealbooks_infra.stack import SERVICE_ORDER, LocalStack
from dealbooks_infra.topology import PORTAL_ID

INFRA = ("kafka", "mongodb")
QBO_EPISODES = (
    "qbo-5xx",
    "qbo-429",
    "qbo-latency",
    "qbo-timeout",
    "qbo-drop-webhooks",
    "qbo-duplicate-webhooks",
    "qbo-expired-token",
)
CRM_EPISODES = (
    "crm-5xx",
    "crm-429",
    "crm-latency",
    "crm-fail-webhooks",
    "crm-drop-webhooks",
    "crm-expired-token",
)


@dataclass
class Schedule:
    """When to kill what, and when each fault episode starts (seconds from the start)."""

    kills: list[tuple[float, str]]
    qbo: list[tuple[float, str]]
    crm: list[tuple[float, str]]
    window: float  # how long a timed fault episode lasts

    @classmethod
    def plan(
        cls,
        seed: int,
        seconds: float,
        kill_every: float,
        targets: tuple[str, ...] = SERVICE_ORDER,
        infra: bool = True,
    ) -> Schedule:
        """Kills of random `targets` (process names), and of the broker and the MongoDB-wire
        server once each unless `infra` is off."""
        rng = random.Random(seed)
        times: list[float] = []
        at = kill_every * rng.uniform(0.3, 0.7)
        while at < seconds - 3:
            times.append(at)
            at += kill_every * rng.uniform(0.6, 1.4)
        kills = [(when, rng.choice(targets)) for when in times]
        # The broker and the MongoDB-wire server once each, about a third and two thirds in.
        for name, share in (("kafka", 0.35), ("mongodb", 0.65)) if infra else ():
            free = [i for i, (_, who) in enumerate(kills) if who not in INFRA]
            if free:
                i = min(free, key=lambda j: abs(kills[j][0] - share * seconds))
                kills[i] = (kills[i][0], name)
        return cls(
            kills=kills,
            qbo=_spread(rng, QBO_EPISODES, seconds),
            crm=_spread(rng, CRM_EPISODES, seconds),
            window=max(5.0, min(20.0, 0.6 * seconds / len(QBO_EPISODES))),
        )


def _spread(rng: random.Random, names: tuple[str, ...], seconds: float) -> list[tuple[float, str]]:
    """Every episode at least once, in a seeded order, at even slots over the run (more
    rounds on longer runs: one episode per 20 s at most)."""
    rounds = max(1, int(seconds // (20 * len(names))))
    order = [name for _ in range(rounds) for name in rng.sample(names, len(names))]
    slot = seconds / len(order)
    return [(slot * (i + rng.uniform(0.05, 0.5)), name) for i, name in enumerate(order)]


@dataclass
class Monkey:
    """Carries out a `Schedule` against a running `LocalStack`."""

    stack: LocalStack
    client: Client
    figures: Figures
    schedule: Schedule
    restart_after: float
    rng: random.Random
    stage_changes: asyncio.Event  # set while the load may move deals between stages
    stage_changes_idle: Callable[[], Awaitable[None]]
    killing: set[str] = field(default_factory=set)

    # --- kills ----------------------------------------------------------------------------

    async def kills(self, started: float) -> None:
        for at, target in self.schedule.kills:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await self.kill(target)

    def _process(self, target: str) -> ManagedProcess:
        if target in INFRA:
            return self.stack.servers[target].process
        return self.stack.processes[target]

    async def kill(self, target: str) -> None:
        """SIGKILL one process, wait a moment, start it again the way the stack did."""
        self.killing.add(target)
        try:
            proc = self._process(target)
            began = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.stop)  # reaps it
            self.figures.kills[target] += 1
            pause = self.restart_after * self.rng.uniform(0.5, 1.5)
            say(f"[chaos] +{self._elapsed():6.1f}s SIGKILL {target} (pid {proc.pid}), "
                f"restart in {pause:.1f} s")  # fmt: skip
            await asyncio.sleep(pause)
            await self.restart(target)
            self.figures.down(target, time.monotonic() - began)
        finally:
            self.killing.discard(target)

    def _elapsed(self) -> float:
        return time.monotonic() - self.client.started

    async def restart(self, target: str) -> None:
        for attempt in range(5):
            try:
                await asyncio.to_thread(self._start, target)
                return
            except (RuntimeError, TimeoutError, OSError) as exc:
                self.figures.notes.append(f"restart of {target} failed (try {attempt + 1}): {exc}")
                await asyncio.sleep(2)
        raise RuntimeError(f"{target} could not be started again")

    def _start(self, target: str) -> None:
        """Start `target` again and record it in the stack at once (in this thread: a run
        stopped meanwhile still stops what was started)."""
        if target in INFRA:
            server = self._start_server(target)
            self.stack.servers[target] = server
            self.stack.processes[target] = server.process
            return
        self.stack.start_process(target)

    def _start_server(self, name: str) -> Server:
        """The server `name` again, as `LocalStack` started it: same kind, port and data."""
        old = self.stack.servers[name]
        port = self.stack.topology.ports[name]
        work = self.stack.workdir
        if old.kind == "apache-kafka":
            return start_apache_kafka(work / "kafka", port, old.version)
        if old.kind == "tansu":
            return start_tansu(work / "tansu", port)
        if old.kind == "ferretdb":
            return start_ferretdb(work / "ferretdb", port)
        return start_secantus(work / "secantus", port)

    async def watch(self) -> None:
        """Start again any process that exited without being killed (and count it)."""
        while True:
            await asyncio.sleep(2)
            for name, proc in list(self.stack.processes.items()):
                if name in self.killing or proc.popen.poll() is None:
                    continue
                self.killing.add(name)
                try:
                    code = proc.popen.returncode
                    self.figures.kills[f"{name} (exited on its own, code {code})"] += 1
                    say(f"[chaos] {name} exited on its own (code {code}); starting it again")
                    await self.restart(name)
                finally:
                    self.killing.discard(name)

    # --- faults -----------------------------------------------------------------------------

    async def faults(self, started: float, episodes: list[tuple[float, str]]) -> None:
        for at, name in episodes:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            try:
                await self.episode(name)
            except Exception as exc:  # one failed injection must not stop the others
                self.figures.notes.append(f"fault {name} not injected: {exc}")

    async def episode(self, name: str) -> None:
        say(f"[chaos] +{self._elapsed():6.1f}s fault {name}")
        window = self.schedule.window
        qbo_timed = {
            "qbo-5xx": {"error_rate": 0.15, "error_status": self.rng.choice([500, 502, 503])},
            "qbo-latency": {"latency_ms": self.rng.choice([300, 800, 1500])},
            "qbo-429": {"throttle_burst": 25, "retry_after": 1},
            "qbo-timeout": {"timeout_burst": 2},
        }
        crm_counted = {
            "crm-5xx": {"kind": "status", "status": self.rng.choice([500, 502, 503])},
            "crm-429": {"kind": "rate_limit"},
            "crm-latency": {"kind": "latency", "seconds": self.rng.choice([0.5, 1.5, 3.0])},
            "crm-fail-webhooks": {"kind": "fail_webhooks"},
        }
        if name in qbo_timed:
            await self.qbo_plan(qbo_timed[name])
            self.figures.faults[name] += 1
            await asyncio.sleep(window)
            await self.qbo_plan({})
        elif name == "qbo-drop-webhooks":
            await self.qbo_plan({"drop_webhooks": 2})
            self.figures.faults[name] += 1
        elif name == "qbo-duplicate-webhooks":
            await self.qbo_plan({"duplicate_webhooks": True})
            self.figures.faults[name] += 1
            await asyncio.sleep(window)
            await self.qbo_plan({"duplicate_webhooks": False})
        elif name == "qbo-expired-token":
            await self.qbo_plan({"expire_tokens": True})
            self.figures.faults[name] += 1
        elif name in crm_counted:
            count = 3 if name == "crm-fail-webhooks" else 15
            body = {**crm_counted[name], "count": count}
            await self.client.call("POST", f"{self.client.t.crm}/_sandbox/faults", json=body)
            self.figures.faults[name] += 1
        elif name == "crm-drop-webhooks":
            await self.crm_drop_webhooks()
        elif name == "crm-expired-token":
            await self.crm_expire_token()
            self.figures.faults[name] += 1

    async def qbo_plan(self, body: dict[str, object]) -> None:
        """Replace the QBO sandbox's fault plan for every company (webhook switches kept)."""
        await self.client.call("POST", f"{self.client.qbo_ctl}/faults", json=body)

    async def crm_drop_webhooks(self) -> None:
        """Make the CRM lose one webhook delivery, while no deal-stage change is on its way.

        HubSpot does not send a lost webhook again and dealbooks has no pass that finds deals
        a lost stage change would have drafted, so a dropped stage change is a known gap,
        not something a run can check; the delivery dropped here carries deal creations."""
        crm = f"{self.client.t.crm}/_sandbox"
        self.stage_changes.clear()
        try:
            await self.stage_changes_idle()
            if not await self._crm_webhooks_idle(20.0):
                self.figures.notes.append("crm-drop-webhooks skipped: stage changes in flight")
                return
            await self.client.call(
                "POST", f"{crm}/faults", json={"kind": "drop_webhooks", "count": 1}
            )
            await self.client.crm_create("deals", {"dealname": "Chaos throwaway", "amount": "1"})
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                armed = await self.client.json("GET", f"{crm}/faults")
                if not any(f["kind"] == "drop_webhooks" for f in armed["results"]):
                    self.figures.faults["crm-drop-webhooks"] += 1
                    return
                await asyncio.sleep(0.2)
            self.figures.notes.append("crm-drop-webhooks: nothing to drop within 15 s")
        finally:
            self.stage_changes.set()

    async def _crm_webhooks_idle(self, patience: float) -> bool:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            found = await self.client.json(
                "GET", f"{self.client.t.crm}/_sandbox/webhooks/deliveries"
            )
            if found["pending"] == 0:
                return True
            await asyncio.sleep(0.3)
        return False

    async def crm_expire_token(self) -> None:
        """Expire the CRM access token the services hold now (asked of connector-auth, as a
        service would ask), so their next calls meet a 401 and must refresh."""
        t = self.client.t
        issued = await self.client.json(
            "POST",
            f"{t.url('connector-auth')}/internal/v1/portals/{PORTAL_ID}/crm/access-token",
            headers={"Authorization": f"Bearer {t.secrets.service_credential}"},
        )
        await self.client.call("POST", f"{t.crm}/_sandbox/tokens/{issued['access_token']}/expire")
