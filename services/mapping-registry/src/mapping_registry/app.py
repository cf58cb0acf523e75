"""Composition root: settings, runtime, clients, consumers and routes. Wiring only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dealbooks_contracts import (
    AccountConnected,
    ContactSynced,
    ContactSyncFailed,
    MappingChanged,
    ProductSynced,
    ProductSyncFailed,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, Guard, ServiceApp, ServiceRuntime
from dealbooks_kit.composition import ServiceParts, serving
from dealbooks_sync.settings import SyncServiceSettings, sync_clients
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette

from mapping_registry.api import build_api
from mapping_registry.clients import PortalProperties, QboSamples
from mapping_registry.handlers import Registry
from mapping_registry.store import INDEXES, MAPPING_VERSIONS, Accounts, MappingSets, MappingStatus


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MAPPING_REGISTRY_", extra="ignore")

    service_name: str = "mapping-registry"
    # The status counts each mapping's sync outcomes over this many days; older ones are
    # dropped, so the records stay the size of one window of traffic.
    status_window_days: int = Field(default=30, gt=0)


@dataclass
class MappingRegistry(ServiceParts):
    registry: Registry
    api: Starlette
    guard: Guard


def build(
    settings: Settings | None = None,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> MappingRegistry:
    """Everything the process runs. Tokens come from the settings (connector-auth for QBO);
    tests may inject providers instead."""
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    accounts = Accounts(runtime.db)
    clients = sync_clients(
        runtime, accounts.portal_of, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
    )
    registry = Registry(
        accounts=accounts,
        sets=MappingSets(runtime.db),
        status=MappingStatus(runtime.db, timedelta(days=settings.status_window_days)),
        # The runtime relays each saved version and, periodically, whatever a relay left.
        outbox=runtime.use_outbox(MAPPING_VERSIONS),
        source=settings.service_name,
    )

    async def forget_old_outcomes() -> None:
        now = datetime.now(UTC)
        await registry.status.forget_before(registry.status.counted_since(now), now)

    runtime.publishes(MappingChanged)
    runtime.every("status-window", 3600.0, forget_old_outcomes)
    runtime.consume("accounts", AccountConnected, registry.on_account_connected)
    runtime.consume("contact-outcomes", ContactSynced, registry.on_outcome)
    runtime.consume("contact-failures", ContactSyncFailed, registry.on_outcome)
    runtime.consume("product-outcomes", ProductSynced, registry.on_outcome)
    runtime.consume("product-failures", ProductSyncFailed, registry.on_outcome)
    guard = Guard(settings, settings.service_name)
    api = build_api(registry, PortalProperties(clients.crm), QboSamples(clients.qbo), guard)
    return MappingRegistry(runtime, clients, registry, api, guard)


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m mapping_registry` serves; in production it refuses to start
    without the grant keys its routes check."""
    service = build(settings)
    service.guard.require(Access.PORTAL)
    return serving(service, api=service.api, title="mapping-registry")
