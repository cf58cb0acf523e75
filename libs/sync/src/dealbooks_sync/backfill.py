"""Operator-started backfills: the records that existed before sync was switched on, synced
page by page in a durable, capped, resumable run (`dealbooks_sync.runs`), each page planned and
written by `dealbooks_sync.backfill_pages`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dealbooks_kit import get_logger
from dealbooks_kit.periodic import process_holder, renewing
from dealbooks_kit.priority import background
from dealbooks_qbo import Entity

from dealbooks_sync.backfill_pages import MAX_BATCH, BackfillPages
from dealbooks_sync.mapping_sets import MappingSet
from dealbooks_sync.records import SyncDeps
from dealbooks_sync.runs import (
    CAP_REACHED,
    COUNTS,
    DONE,
    FAILED,
    PAUSED,
    PLANNED,
    RUNNING,
    BackfillBusy,
    BackfillRuns,
    Caps,
    public,
)
from dealbooks_sync.runs import now as runs_now

log = get_logger(__name__)

QBO_PAGE_SIZE = 1000


class BackfillRefused(Exception):
    """The account's settings do not allow a backfill (a sentence for the operator)."""


@dataclass
class BackfillReport:
    """Progress and result of one backfill run."""

    run_id: str
    realm_id: str
    object_type: str
    state: str = RUNNING
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, run: dict[str, Any]) -> BackfillReport:
        fields: dict[str, Any] = {k: run.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class BackfillLimits:
    """How a backfill pages, caps and leases (from the service's settings)."""

    default_caps: Caps = dataclasses.field(default_factory=lambda: Caps(qbo=10_000, crm=100_000))
    page_size: int = QBO_PAGE_SIZE
    lease_seconds: float = 60.0


class Backfill:
    """Operator-started sync of records that existed before sync was switched on.

    Reads QBO with paged queries (1,000 per call) and writes the CRM with batch upserts
    (100 per call); both clients keep inside their API's rate limits. A run is durable
    (`dealbooks_sync.runs`): its cursor is the STARTPOSITION of the next page not yet
    written, saved after each page, so a run taken over after its holder died re-reads at
    most one page, whose records the links' fingerprints make unchanged. It counts its calls
    and pauses before a page would take it over either cap.
    """

    def __init__(
        self, deps: SyncDeps, limits: BackfillLimits | None = None, holder: str | None = None
    ) -> None:
        self.deps = deps
        self.kind = deps.kind
        self.limits = limits or BackfillLimits()
        self.runs = BackfillRuns(deps.db, self.kind.object_type.value, holder or process_holder())
        self.pages = BackfillPages(deps)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def _ready_set(self, realm_id: str) -> MappingSet:
        mset = await self.deps.sets.get(realm_id, self.kind.object_type)
        if mset is None:
            raise BackfillRefused(f"account {realm_id} has no mappings yet")
        if not mset.settings.enabled:
            raise BackfillRefused("sync is switched off for this account")
        if mset.settings.create_update_policy.value != "create_and_update":
            raise BackfillRefused(
                "a backfill creates CRM records; the create-and-update policy does not allow it"
            )
        return mset

    def caps(self, max_qbo_calls: int | None = None, max_crm_calls: int | None = None) -> Caps:
        """The caps asked for, the settings' defaults for those not given."""
        default = self.limits.default_caps
        return Caps(
            qbo=default.qbo if max_qbo_calls is None else max_qbo_calls,
            crm=default.crm if max_crm_calls is None else max_crm_calls,
        )

    async def dry_run(self, realm_id: str, caps: Caps | None = None) -> dict[str, Any]:
        """The plan: how many QBO records a run would read and the calls it would make (one
        COUNT query), writing nothing."""
        mset = await self._ready_set(realm_id)
        caps = caps or self.caps()
        count = await self.deps.qbo.company(realm_id).count(self.kind.qbo_entity)
        linked = await self.deps.links.count_linked(realm_id)
        qbo_calls = -(-(count + 1) // self.limits.page_size)
        crm_calls = -(-count // MAX_BATCH)
        return {
            "state": PLANNED,
            "realm_id": realm_id,
            "object_type": self.kind.object_type.value,
            "records": count,
            "already_linked": linked,
            "qbo_calls": qbo_calls,
            "crm_calls": crm_calls,
            "caps": caps.as_doc(),
            "within_caps": qbo_calls <= caps.qbo and crm_calls <= caps.crm,
            "mapping_version": mset.version,
        }

    async def start(self, realm_id: str, caps: Caps | None = None) -> BackfillReport:
        """Start a run in the background; poll `status(realm_id)` or `report(run_id)`.
        BackfillBusy if the account has an active run."""
        mset = await self._ready_set(realm_id)
        run = await self.runs.create(
            realm_id, mset.portal_id, caps or self.caps(), self.limits.lease_seconds
        )
        self._launch(run)
        return BackfillReport.of(run)

    async def resume(self, realm_id: str, caps: Caps | None = None) -> dict[str, Any]:
        """Continue a paused run (or one whose holder died) from its cursor, with new caps
        if given. BackfillBusy if it runs elsewhere or there is nothing to resume."""
        await self._ready_set(realm_id)
        run = await self.runs.claim(realm_id, self.limits.lease_seconds, caps=caps)
        if run is None:
            raise BackfillBusy(
                "no paused backfill of this account, or it is running",
                await self.runs.current(realm_id),
            )
        self._launch(run)
        return public(run)

    async def cancel(self, realm_id: str) -> dict[str, Any] | None:
        """Cancel the account's active run; None if there is none."""
        run = await self.runs.cancel(realm_id)
        task = self._tasks.get(realm_id)
        if task is not None:
            task.cancel()
        return public(run) if run else None

    async def status(self, realm_id: str) -> dict[str, Any] | None:
        """The account's latest run."""
        run = await self.runs.current(realm_id)
        return public(run) if run else None

    async def report(self, run_id: str) -> dict[str, Any] | None:
        run = await self.runs.by_run_id(run_id)
        return public(run) if run else None

    async def resume_abandoned(self) -> int:
        """The periodic check: take over every running run whose holder's lease expired."""
        taken = 0
        for realm_id in await self.runs.abandoned():
            run = await self.runs.claim(realm_id, self.limits.lease_seconds)
            if run is not None:
                log.info("backfill taken over", realm_id=realm_id, run_id=run["run_id"])
                self._launch(run)
                taken += 1
        return taken

    async def catch_up(self, portal_id: str) -> list[BackfillReport]:
        """The app is back in a portal after an uninstall: what changed in QuickBooks
        meanwhile never reached its CRM, so every account whose sync would create and update
        records is backfilled again (in the background). Others are left as they are: their
        policy forbids what a backfill does; their next changes sync as usual."""
        started = []
        for realm_id in await self.deps.sets.realms_of_portal(portal_id, self.kind.object_type):
            try:
                started.append(await self.start(realm_id))
            except (BackfillRefused, BackfillBusy) as refused:
                log.info("not caught up after reinstall", realm_id=realm_id, reason=str(refused))
        return started

    async def run(self, realm_id: str, caps: Caps | None = None) -> BackfillReport:
        """Run a backfill until it ends or pauses (the benchmark and tests wait for it)."""
        started = await self.start(realm_id, caps)
        await self.wait(realm_id)
        run = await self.runs.by_run_id(started.run_id)
        return BackfillReport.of(run or started.as_dict())

    async def wait(self, realm_id: str) -> None:
        """Until this process's drive of the account's run ends."""
        task = self._tasks.get(realm_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def stop(self, *, release: bool = True) -> None:
        """Stop driving runs here. `release` hands their leases back (a shutdown) so the next
        check resumes them at once; without it they expire (as if this process died)."""
        driving = dict(self._tasks)
        for task in driving.values():
            task.cancel()
        await asyncio.gather(*driving.values(), return_exceptions=True)
        if release:
            for realm_id in driving:
                run = await self.runs.current(realm_id)
                if run is not None:
                    await self.runs.release(run)

    def _launch(self, run: dict[str, Any]) -> None:
        realm_id = str(run["_id"])
        task = asyncio.create_task(self._drive(run), name=f"backfill {realm_id}")
        self._tasks[realm_id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(realm_id) is t:
                del self._tasks[realm_id]

        task.add_done_callback(done)

    async def _drive(self, run: dict[str, Any]) -> None:
        background()  # started by an operator's request, it is nobody's wait from here on
        try:
            async with self._renewing(run):
                await self._pages(run)
        except asyncio.CancelledError:
            raise  # stopped or cancelled: the lease is left to expire or was released
        except Exception as exc:
            log.exception("backfill failed", run_id=run["run_id"])
            await self.runs.finish(
                run, FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=runs_now()
            )

    def _renewing(self, run: dict[str, Any]) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep the lease alive while a page takes longer than a fraction of it."""
        seconds = self.limits.lease_seconds

        async def renew() -> None:
            await self.runs.progress(run, seconds)

        return renewing(seconds / 3, renew)

    async def _pages(self, run: dict[str, Any]) -> None:
        """Page after page from the cursor until a short page, a cap, or a cancel."""
        mset = await self._ready_set(str(run["_id"]))
        await self.deps.crm_properties.ensure(self.kind, mset)
        company = self.deps.qbo.company(mset.realm_id)
        caps, calls = Caps(**run["caps"]), dict(run["calls"])
        cursor, size = dict(run["cursor"]), self.limits.page_size
        counts = {k: int(run.get(k) or 0) for k in COUNTS}
        while True:
            if calls["qbo"] + 1 > caps.qbo:
                await self.runs.finish(run, PAUSED, reason=CAP_REACHED, calls=calls)
                return
            statement = f"SELECT * FROM {self.kind.qbo_entity} STARTPOSITION {cursor['start']} MAXRESULTS {size}"  # noqa: S608,E501 (QBO query, no input)
            page = await company.query_page(statement)
            calls["qbo"] += 1
            rows = [r for r in page.rows if isinstance(r, Entity)]
            plan = await self.pages.plan(mset, rows)
            if calls["crm"] + plan.crm_calls > caps.crm:
                # Nothing of this page is written: the cursor stays before it.
                await self.runs.finish(run, PAUSED, reason=CAP_REACHED, calls=calls)
                return
            await self.pages.write(mset, plan)
            calls["crm"] += plan.crm_calls
            for key in COUNTS:
                counts[key] += plan.counts[key]
            cursor = {
                "start": cursor["start"] + len(page.rows),
                "last_id": str(rows[-1].Id) if rows else cursor["last_id"],
            }
            progress = {"cursor": cursor, "calls": calls, **counts}
            if len(page.rows) < size:
                await self.runs.finish(run, DONE, finished_at=runs_now(), **progress)
                return
            if not await self.runs.progress(run, self.limits.lease_seconds, **progress):
                log.info("backfill stopped: cancelled or taken over", run_id=run["run_id"])
                return
