"""Composition root of product-sync: its runtime over its store's indexes, the record sync parts
for PRODUCTS (`dealbooks_sync.parts`), its subscribers and its routes. Wiring only."""

from __future__ import annotations

from dealbooks_http import TokenProvider
from dealbooks_kit import ServiceApp
from dealbooks_sync.parts import SyncParts, compose
from dealbooks_sync.settings import SyncServiceSettings
from pydantic_settings import SettingsConfigDict

from product_sync import api
from product_sync.handlers import PRODUCTS, subscribe
from product_sync.store import INDEXES


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCT_SYNC_", extra="ignore")

    service_name: str = "product-sync"


def build(settings: Settings | None = None, **tokens: TokenProvider) -> SyncParts:
    """Everything the process runs; tests may inject `qbo_tokens` and `crm_tokens`."""
    return compose(
        settings or Settings(),
        PRODUCTS,
        indexes=INDEXES,
        routes=api.routes,
        subscribe=subscribe,
        **tokens,
    )


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m product_sync` serves."""
    return build(settings).app(title="product-sync")
