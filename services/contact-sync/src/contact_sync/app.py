"""Composition root: contact-sync is the shared sync service (`dealbooks_sync.service`) over
CONTACTS, consuming QBO changes as "customers". Wiring only."""

from __future__ import annotations

from dealbooks_contracts import ContactSynced, ContactSyncFailed
from dealbooks_http import TokenProvider
from dealbooks_kit import ServiceApp
from dealbooks_sync.service import SyncService, build_sync_service, sync_app
from dealbooks_sync.settings import SyncServiceSettings
from pydantic_settings import SettingsConfigDict

from contact_sync.handlers import CONTACTS


class Settings(SyncServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTACT_SYNC_", extra="ignore")

    service_name: str = "contact-sync"


def build(settings: Settings | None = None, **tokens: TokenProvider) -> SyncService:
    """Everything the process runs; tests may inject `qbo_tokens` and `crm_tokens`."""
    service = build_sync_service(
        settings or Settings(), CONTACTS, changes_consumer="customers", **tokens
    )
    service.runtime.publishes(ContactSynced, ContactSyncFailed)
    return service


def build_app(settings: Settings | None = None) -> ServiceApp:
    """The ASGI app `python -m contact_sync` serves."""
    return sync_app(build(settings), title="contact-sync")
