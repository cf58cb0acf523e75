"""Composition root: product-sync is the shared sync service (`dealbooks_sync.service`) over
PRODUCTS, consuming QBO changes as "items". Wiring only."""

from __future__ import annotations

from dealbooks_contracts import ProductSynced, ProductSyncFailed
from dealbooks_http import TokenProvider
from dealbooks_kit import ServiceApp
from dealbooks_sync.service import SyncService, build_sync_service, sync_app
from dealbooks_sync.settings import SyncServiceSettings
from pydantic_settings import SettingsConfigDict

from product_sync.handlers import PRODUCTS


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCT_SYNC_", extra="ignore")

    service_name: str = "product-sync"


def build(settings: Settings | None = None, **tokens: TokenProvider) -> SyncService:
    """Everything the process runs; tests may inject `qbo_tokens` and `crm_tokens`."""
    service = build_sync_service(
        settings or Settings(), PRODUCTS, changes_consumer="items", **tokens
    )
    service.runtime.publishes(ProductSynced, ProductSyncFailed)
    return service


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m product_sync` serves."""
    return sync_app(build(settings), title="product-sync")
