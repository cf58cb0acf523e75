"""The composition of a record sync service (contact-sync, product-sync): its runtime, the
record sync and backfill of one `RecordKind`, their API clients and the backfill routes."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import Envelope, MappingChanged, PortalInstalled, QboEntityChanged
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, ApiClients, Guard, ServiceApp, ServiceRuntime

from dealbooks_sync.api import backfill_api
from dealbooks_sync.engine import (
    INDEXES,
    Backfill,
    BackfillLimits,
    MappingSets,
    RecordKind,
    RecordSync,
    SyncDeps,
)
from dealbooks_sync.healing import RECONCILE_JOB, Reconciliation
from dealbooks_sync.runs import Caps
from dealbooks_sync.settings import SyncServiceSettings, sync_clients


@dataclass
class SyncService:
    """Everything one sync service process runs."""

    runtime: ServiceRuntime
    sync: RecordSync
    backfill: Backfill
    clients: ApiClients
    reconciliation: Reconciliation

    async def aclose(self) -> None:
        await self.backfill.stop()  # hands the leases back: another replica resumes at once
        await self.clients.aclose()


def build_sync_service(
    settings: SyncServiceSettings,
    kind: RecordKind,
    *,
    changes_consumer: str,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> SyncService:
    """The service syncing `kind`: it follows `mapping.changed` and consumes the QBO changes
    under the consumer name `changes_consumer`. Tokens come from the settings (connector-auth
    for QBO); tests may inject providers instead."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    clients = sync_clients(
        settings,
        MappingSets(runtime.db).portal_of,
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
        budgets=runtime.api_budgets(settings),
    )
    deps = SyncDeps(
        kind=kind,
        db=runtime.db,
        qbo=clients.qbo,
        crm=clients.crm,
        publisher=runtime.publisher,
        source=settings.service_name,
        audit=runtime.use_audit(),
    )
    sync = RecordSync(deps)
    reconciliation = Reconciliation(deps)

    async def on_mapping_changed(event: Envelope[MappingChanged]) -> None:
        await sync.on_mapping_changed(event)
        await reconciliation.on_mapping_changed(event)

    runtime.consume("mappings", MappingChanged, on_mapping_changed)
    runtime.every(RECONCILE_JOB, settings.reconcile_interval_seconds, reconciliation.reconcile_all)
    runtime.consume(
        changes_consumer,
        QboEntityChanged,
        sync.on_entity_changed,
        on_dead_letter=sync.on_gave_up,
        accepts=lambda event: event.data.entity == kind.qbo_entity,
        selective=True,  # one entity of all QuickBooks changes
    )
    limits = BackfillLimits(
        default_caps=Caps(qbo=settings.backfill_max_qbo_calls, crm=settings.backfill_max_crm_calls),
        page_size=settings.backfill_page_size,
        lease_seconds=settings.backfill_lease_seconds,
    )
    backfill = Backfill(deps, limits, holder=runtime.leases.holder)
    # Runs whose holder died continue from their cursor, in one replica.
    runtime.every("backfill-resume", settings.backfill_check_seconds, backfill.resume_abandoned)

    async def on_portal_installed(event: Envelope[PortalInstalled]) -> None:
        clients.tokens.portal_installed(event.tenant.portal_id)
        if event.data.reinstall:
            await backfill.catch_up(event.tenant.portal_id)

    runtime.consume("portal-installs", PortalInstalled, on_portal_installed)
    return SyncService(runtime, sync, backfill, clients, reconciliation)


def sync_app(service: SyncService, title: str) -> ServiceApp:
    """The ASGI app of `service`: health, metrics and the backfill routes. In production it
    refuses to start without the operator credentials and grant keys the routes check."""
    settings = service.runtime.settings
    guard = Guard(settings, settings.service_name)
    guard.require(Access.OPERATOR, Access.PORTAL)
    api = backfill_api(service.backfill, guard, service.runtime.use_audit())
    app = service.runtime.asgi(api=api, title=title)
    app.on_shutdown(service.aclose)
    return app
