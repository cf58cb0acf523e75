"""The parts a record sync service is composed of, built for one `RecordKind` from the
service's settings: the QBO and CRM clients, the record write pipeline (`records`), the CDC
reconciliation pass (`healing`) and the backfill (`backfill`), with the periodic jobs of the
last two. The service itself says what it consumes (its handlers), which collections and
indexes it keeps (its store) and which routes it serves (its API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

from dealbooks_contracts import Envelope, MappingChanged, PortalInstalled, QboEntityChanged
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, DeadLetterHook, Guard, IndexSpec, ServiceApp, ServiceRuntime
from dealbooks_kit.composition import ServiceParts, serving
from starlette.applications import Starlette

from dealbooks_sync.backfill import Backfill, BackfillLimits
from dealbooks_sync.healing import RECONCILE_JOB, Reconciliation
from dealbooks_sync.kinds import RecordKind
from dealbooks_sync.mapping_sets import MappingSets
from dealbooks_sync.records import RecordSync, SyncDeps
from dealbooks_sync.runs import Caps
from dealbooks_sync.settings import SyncServiceSettings, sync_clients


class ChangesOptions(TypedDict):
    """How a sync service consumes `qbo.entity-changed` (options of `ServiceRuntime.consume`)."""

    on_dead_letter: DeadLetterHook[QboEntityChanged]
    accepts: Callable[[Envelope[QboEntityChanged]], bool]
    selective: bool


@dataclass
class SyncParts(ServiceParts):
    """What one sync service process runs besides its runtime's consumers and routes."""

    records: RecordSync
    reconciliation: Reconciliation
    backfill: Backfill
    # The service's HTTP API over these parts, under a guard (its `api` module).
    routes: Callable[[SyncParts, Guard], Starlette]

    @classmethod
    def build(
        cls,
        runtime: ServiceRuntime,
        kind: RecordKind,
        *,
        routes: Callable[[SyncParts, Guard], Starlette],
        qbo_tokens: TokenProvider | None = None,
        crm_tokens: TokenProvider | None = None,
    ) -> SyncParts:
        """The parts syncing `kind` on `runtime` (whose settings are a sync service's), with
        the reconciliation pass and the takeover of abandoned backfills as its periodic jobs.
        Tokens come from the settings (connector-auth for QBO); tests may inject providers."""
        settings = runtime.settings
        if not isinstance(settings, SyncServiceSettings):
            raise TypeError(f"a sync service's settings, not {type(settings).__name__}")
        clients = sync_clients(
            runtime, MappingSets(runtime.db).portal_of, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
        )
        source, audit = settings.service_name, runtime.use_audit()
        deps = SyncDeps(
            kind, runtime.db, clients.qbo, clients.crm, runtime.publisher, source, audit
        )
        reconciliation = Reconciliation(deps)
        runtime.every(
            RECONCILE_JOB, settings.reconcile_interval_seconds, reconciliation.reconcile_all
        )
        backfill = Backfill(deps, backfill_limits(settings), holder=runtime.leases.holder)
        # Runs whose holder died continue from their cursor, in one replica.
        runtime.every("backfill-resume", settings.backfill_check_seconds, backfill.resume_abandoned)
        return cls(runtime, clients, RecordSync(deps), reconciliation, backfill, routes)

    async def on_mapping_changed(self, event: Envelope[MappingChanged]) -> None:
        """Keep a newer mapping version (the portal's properties made first when sync is on),
        then start or stop healing the account."""
        await self.records.on_mapping_changed(event)
        await self.reconciliation.on_mapping_changed(event)

    @property
    def entity_changes(self) -> ChangesOptions:
        """How the consumer of `qbo.entity-changed` takes the kind's changes: only its entity's,
        asked of Kafka selectively, and retries run out reported as `*.sync-failed`."""
        kind = self.records.kind
        return ChangesOptions(
            on_dead_letter=self.records.on_gave_up,
            accepts=lambda event: event.data.entity == kind.qbo_entity,
            selective=True,  # one entity of all QuickBooks changes
        )

    async def on_entity_changed(self, event: Envelope[QboEntityChanged]) -> None:
        """Decode, decide (domain), write the CRM, remember the link, publish the outcome."""
        await self.records.on_entity_changed(event)

    async def on_portal_installed(self, event: Envelope[PortalInstalled]) -> None:
        """The portal's CRM tokens may be asked for again; a reinstall is caught up by a
        backfill of each account whose policy allows one."""
        self.clients.tokens.portal_installed(event.tenant.portal_id)
        if event.data.reinstall:
            await self.backfill.catch_up(event.tenant.portal_id)

    def api(self, guard: Guard) -> Starlette:
        """The service's routes over these parts."""
        return self.routes(self, guard)

    def app(self, title: str) -> ServiceApp:
        """The ASGI app: health, metrics and the service's routes. In production it refuses to
        start without the operator credentials and grant keys the routes check."""
        settings = self.runtime.settings
        guard = Guard(settings, settings.service_name)
        guard.require(Access.OPERATOR, Access.PORTAL)
        return serving(self, api=self.api(guard), title=title)

    async def aclose(self) -> None:
        await self.backfill.stop()  # hands the leases back: another replica resumes at once
        await super().aclose()


def compose(
    settings: SyncServiceSettings,
    kind: RecordKind,
    *,
    indexes: Sequence[IndexSpec],
    routes: Callable[[SyncParts, Guard], Starlette],
    subscribe: Callable[[ServiceRuntime, SyncParts], None],
    **tokens: TokenProvider,
) -> SyncParts:
    """A sync service process: its runtime over its store's `indexes`, the parts syncing `kind`
    with the service's `routes`, and its subscriptions. Tests may inject `qbo_tokens` and
    `crm_tokens`."""
    runtime = ServiceRuntime(settings, indexes=indexes)
    sync = SyncParts.build(runtime, kind, routes=routes, **tokens)
    subscribe(runtime, sync)
    return sync


def subscribe_records(runtime: ServiceRuntime, sync: SyncParts, *, changes: str) -> None:
    """The consumers of a record sync service: `mappings` (`mapping.changed`), `changes` (the
    service's name for its kind's `qbo.entity-changed`) and `portal-installs`
    (`portal.installed`); and the kind's outcome events, which it publishes."""
    runtime.consume("mappings", MappingChanged, sync.on_mapping_changed)
    runtime.consume(changes, QboEntityChanged, sync.on_entity_changed, **sync.entity_changes)
    runtime.consume("portal-installs", PortalInstalled, sync.on_portal_installed)
    outcomes = sync.records.kind.outcomes
    runtime.publishes(outcomes.synced_event, outcomes.failed_event)


def backfill_limits(settings: SyncServiceSettings) -> BackfillLimits:
    """A backfill's default caps, page size and lease, as the service's settings give them."""
    return BackfillLimits(
        default_caps=Caps(qbo=settings.backfill_max_qbo_calls, crm=settings.backfill_max_crm_calls),
        page_size=settings.backfill_page_size,
        lease_seconds=settings.backfill_lease_seconds,
    )
