"""Wiring only: settings -> runtime, clients, store, handlers, the pass, the API."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    InvoiceDrafted,
    InvoiceLinked,
    PortalInstalled,
    ReminderTaskClosed,
    ReminderTaskOpened,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, ServiceApp, ServiceRuntime
from dealbooks_kit.composition import ServiceParts, service_app

from reminders.api import build_api
from reminders.handlers import PASS_JOB, Reminders
from reminders.settings import RemindersSettings
from reminders.store import INDEXES, REMINDERS, Store
from reminders.tasks import ReminderTasks


@dataclass
class Service(ServiceParts):
    """One reminders process: its runtime, API clients, handlers and store."""

    settings: RemindersSettings
    handlers: Reminders
    store: Store


def build_service(
    settings: RemindersSettings,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> Service:
    """Everything the process needs. Tokens come from the settings (connector-auth); tests
    may inject providers instead."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    store = Store(runtime.db, runtime.use_outbox(REMINDERS, reread=True))
    clients = runtime.api_clients(
        store.portal_of_realm, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
    )
    handlers = Reminders(
        store=store,
        qbo=clients.qbo,
        crm=clients.crm,
        tasks=ReminderTasks(store, clients.crm),
        catch_up_days=settings.catch_up_days,
        audit=runtime.use_audit(),
        installed=clients.tokens.portal_installed,
    )
    runtime.publishes(ReminderTaskOpened, ReminderTaskClosed)
    runtime.consume("accounts", AccountConnected, handlers.on_account_connected)
    runtime.consume("disconnects", AccountDisconnected, handlers.on_account_disconnected)
    runtime.consume("drafted", InvoiceDrafted, handlers.on_drafted)
    runtime.consume("linked", InvoiceLinked, handlers.on_linked)
    runtime.consume("portal-installs", PortalInstalled, handlers.on_portal_installed)
    # No webhook fires when a day passes: a timer, in one replica at a time, company by company.
    runtime.every(PASS_JOB, settings.pass_interval_seconds, handlers.pass_all)
    return Service(runtime, clients, settings, handlers, store)


def build_app(settings: RemindersSettings | None = None) -> ServiceApp:
    """The ASGI app `python -m reminders` serves; in production it refuses to start without
    the grant keys and operator credentials its routes check."""
    return service_app(
        settings or RemindersSettings(),
        build_service,
        build_api,
        title="reminders",
        requires=(Access.PORTAL, Access.OPERATOR),
    )
