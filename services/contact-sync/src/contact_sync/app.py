"""Composition root of contact-sync: its runtime over its store's indexes, the record sync parts
for CONTACTS (`dealbooks_sync.parts`), its subscribers and its routes. Wiring only."""

from __future__ import annotations

from dealbooks_http import TokenProvider
from dealbooks_kit import ServiceApp
from dealbooks_sync.parts import SyncParts, compose
from dealbooks_sync.settings import SyncServiceSettings
from pydantic_settings import SettingsConfigDict

from contact_sync import api
from contact_sync.handlers import CONTACTS, subscribe
from contact_sync.store import INDEXES


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACT_SYNC_", extra="ignore")

    service_name: str = "contact-sync"


def build(settings: Settings | None = None, **tokens: TokenProvider) -> SyncParts:
    """Everything the process runs; tests may inject `qbo_tokens` and `crm_tokens`."""
    return compose(
        settings or Settings(),
        CONTACTS,
        indexes=INDEXES,
        routes=api.routes,
        subscribe=subscribe,
        **tokens,
    )


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m contact_sync` serves."""
    return build(settings).app(title="contact-sync")
