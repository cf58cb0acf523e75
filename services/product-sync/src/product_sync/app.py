"""Composition root: settings, runtime, clients, consumers and routes. Wiring only."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import MappingChanged, QboEntityChanged
from dealbooks_http import TokenProvider
from dealbooks_kit import ApiTokens, ServiceApp, ServiceRuntime, api_tokens
from dealbooks_sync.engine import Backfill, MappingSets, RecordSync, SyncDeps
from dealbooks_sync.settings import SyncServiceSettings, crm_client, qbo_client
from pydantic_settings import SettingsConfigDict

from product_sync.api import backfill_api
from product_sync.handlers import PRODUCTS
from product_sync.store import INDEXES


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCT_SYNC_", extra="ignore")

    service_name: str = "product-sync"


@dataclass
class ProductSync:
    runtime: ServiceRuntime
    sync: RecordSync
    backfill: Backfill
    tokens: ApiTokens

    async def aclose(self) -> None:
        await self.sync.deps.qbo.aclose()
        await self.sync.deps.crm.aclose()
        await self.tokens.aclose()


def build(
    settings: Settings | None = None,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> ProductSync:
    """Everything the process runs. Tokens come from the settings (connector-auth for QBO);
    tests may inject providers instead."""
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    portals = MappingSets(runtime.db)
    tokens = api_tokens(settings, portals.portal_of, qbo=qbo_tokens, crm=crm_tokens)
    deps = SyncDeps(
        kind=PRODUCTS,
        db=runtime.db,
        qbo=qbo_client(settings, tokens.qbo),
        crm=crm_client(settings, tokens.crm),
        publisher=runtime.publisher,
        source=settings.service_name,
    )
    sync = RecordSync(deps)
    runtime.consume("mappings", MappingChanged, sync.on_mapping_changed)
    runtime.consume(
        "items", QboEntityChanged, sync.on_entity_changed, on_dead_letter=sync.on_gave_up
    )
    return ProductSync(runtime, sync, Backfill(deps), tokens)


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m product_sync` serves."""
    service = build(settings)
    app = service.runtime.asgi(api=backfill_api(service.backfill), title="product-sync")
    app.on_shutdown(service.aclose)
    return app
