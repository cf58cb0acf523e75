"""Composition root: settings, runtime, clients, consumers and routes. Wiring only."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import (
    AccountConnected,
    ContactSynced,
    ContactSyncFailed,
    ProductSynced,
    ProductSyncFailed,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import ServiceApp, ServiceRuntime
from dealbooks_sync.settings import SyncServiceSettings, crm_client, qbo_client
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette

from mapping_registry.api import build_api
from mapping_registry.clients import PortalProperties, QboSamples
from mapping_registry.handlers import Registry
from mapping_registry.store import INDEXES, MAPPING_VERSIONS, Accounts, MappingSets, MappingStatus


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MAPPING_REGISTRY_", extra="ignore")

    service_name: str = "mapping-registry"


@dataclass
class MappingRegistry:
    runtime: ServiceRuntime
    registry: Registry
    api: Starlette


def build(
    settings: Settings | None = None,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> MappingRegistry:
    """Everything the process runs; token providers may be injected (tests, connector-auth)."""
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    registry = Registry(
        accounts=Accounts(runtime.db),
        sets=MappingSets(runtime.db),
        status=MappingStatus(runtime.db),
        # The runtime relays each saved version and, periodically, whatever a relay left.
        outbox=runtime.use_outbox(MAPPING_VERSIONS),
        source=settings.service_name,
    )
    runtime.consume("accounts", AccountConnected, registry.on_account_connected)
    runtime.consume("contact-outcomes", ContactSynced, registry.on_outcome)
    runtime.consume("contact-failures", ContactSyncFailed, registry.on_outcome)
    runtime.consume("product-outcomes", ProductSynced, registry.on_outcome)
    runtime.consume("product-failures", ProductSyncFailed, registry.on_outcome)
    api = build_api(
        registry,
        PortalProperties(crm_client(settings, crm_tokens)),
        QboSamples(qbo_client(settings, qbo_tokens)),
    )
    return MappingRegistry(runtime, registry, api)


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m mapping_registry` serves."""
    service = build(settings)
    return service.runtime.asgi(api=service.api, title="mapping-registry")
